package recipient

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"relaymail/internal/address"
	"relaymail/internal/aliases"
)

func TestAdd(t *testing.T) {
	table, err := aliases.New(map[string]string{
		"root":  "admin",
		"admin": "ops@example.net, Webmaster",
		"loop":  "loop2",
		"loop2": "loop",
	}, address.ParseList)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Hostname: "app01.example.com", Domain: "example.com", Aliases: table}
	tests := []struct {
		name    string
		words   []string
		want    []string
		wantErr any
	}{
		{name: "cron's root", words: []string{"root"}, want: []string{"ops@example.net", "Webmaster@example.com"}},
		{name: "fail2ban's root@localhost", words: []string{"root@localhost"}, want: []string{"ops@example.net", "Webmaster@example.com"}},
		{name: "at the host name", words: []string{"www-data@APP01.example.com"}, want: []string{"www-data@example.com"}},
		{name: "remote untouched", words: []string{"a@example.org"}, want: []string{"a@example.org"}},
		{name: "MAILTO list in one word", words: []string{"a@x.example, b@y.example"}, want: []string{"a@x.example", "b@y.example"}},
		{name: "duplicates by domain case", words: []string{"a@X.example", "a@x.example", "A@x.example"}, want: []string{"a@X.example", "A@x.example"}},
		{name: "display name", words: []string{"Jane <jane@example.org>"}, want: []string{"jane@example.org"}},
		{name: "syntax", words: []string{"a@@b"}, wantErr: &SyntaxError{}},
		{name: "line break", words: []string{"a@b\r\nRCPT TO:<x@y>"}, wantErr: &SyntaxError{}},
		{name: "alias loop", words: []string{"loop"}, wantErr: &AliasError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(o)
			var err error
			for _, w := range tt.words {
				if err = l.Add(w); err != nil {
					break
				}
			}
			switch want := tt.wantErr.(type) {
			case *SyntaxError:
				if !errors.As(err, &want) {
					t.Fatalf("Add(%q) error = %v, want a SyntaxError", tt.words, err)
				}
				return
			case *AliasError:
				if !errors.As(err, &want) {
					t.Fatalf("Add(%q) error = %v, want an AliasError", tt.words, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(l.Addrs(), tt.want) {
				t.Errorf("Add(%q) = %q, %v, want %q", tt.words, l.Addrs(), err, tt.want)
			}
		})
	}
}

// TestLocalDomainsAndDefault: addresses at a local domain are local; local
// names no alias takes go to the default recipient, aliased ones do not.
func TestLocalDomainsAndDefault(t *testing.T) {
	l := New(Options{Hostname: "app01.example.com", LocalDomains: []string{"app01.internal"}, Domain: "example.com",
		Aliases: aliases.Table{"root": {"ops@example.net"}}, DefaultRecipient: "admin@example.net"})
	for _, w := range []string{"root@APP01.internal", "cron", "jobs@app01.internal", "a@example.org", "b@example.com"} {
		if err := l.Add(w); err != nil {
			t.Fatalf("Add(%q): %v", w, err)
		}
	}
	want := []string{"ops@example.net", "admin@example.net", "a@example.org", "b@example.com"}
	if got := l.Addrs(); !slices.Equal(got, want) {
		t.Errorf("Addrs() = %q, want %q", got, want)
	}
}
