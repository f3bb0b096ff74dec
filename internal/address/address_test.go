package address

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // fragment of the error; "" when none is expected
	}{
		// Command-line words (Postfix parses each argv word as a list).
		{name: "cron MAILTO local", in: "root", want: []string{"root"}},
		{name: "cron MAILTO with commas", in: "admin@example.com,ops@example.com", want: []string{"admin@example.com", "ops@example.com"}},
		{name: "cron MAILTO comma space", in: "admin@example.com, ops@example.com", want: []string{"admin@example.com", "ops@example.com"}},
		{name: "cron MAILTO spaces only (tok822 adds the comma)", in: "admin@example.com ops@example.com", want: []string{"admin@example.com", "ops@example.com"}},
		{name: "fail2ban destemail", in: "root@localhost", want: []string{"root@localhost"}},
		{name: "git send-email argv", in: "Junio C Hamano <gitster@pobox.com>", want: []string{"gitster@pobox.com"}},
		{name: "www-data", in: "www-data", want: []string{"www-data"}},

		// Header values.
		{name: "cron From", in: "root (Cron Daemon)", want: []string{"root"}},
		{name: "logwatch From", in: "Logwatch", want: []string{"Logwatch"}},
		{name: "mdadm From", in: "mdadm monitoring <root@host.example>", want: []string{"root@host.example"}},
		{name: "fail2ban sender", in: `"Fail2Ban" <fail2ban@host.example>`, want: []string{"fail2ban@host.example"}},
		{name: "PHP mail To", in: "John Doe <john@example.com>, jane@example.com", want: []string{"john@example.com", "jane@example.com"}},
		{name: "quoted comma in display name", in: `"Doe, John" <john@example.com>, "Roe, Jane" <jane@example.com>`, want: []string{"john@example.com", "jane@example.com"}},
		{name: "escaped quote in display name", in: `"Say \"hi\", Bob" <bob@example.com>`, want: []string{"bob@example.com"}},
		{name: "mutt encoded-word", in: "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <jm@example.de>", want: []string{"jm@example.de"}},
		{name: "encoded-word with comma", in: "=?utf-8?q?Doe,_John?= <j@example.com>", want: []string{"j@example.com"}},
		{name: "encoded-word with angle", in: "=?utf-8?q?<evil@x>?= <j@example.com>", want: []string{"j@example.com"}},
		{name: "utf-8 display name", in: `"Müller, Jörg" <joerg@example.de>`, want: []string{"joerg@example.de"}},
		{name: "unquoted @ in display name", in: "root@host <root@host.example>", want: []string{"root@host.example"}},
		{name: "git send-email Cc", in: "Linus Torvalds <torvalds@linux-foundation.org>,\r\n\tgit@vger.kernel.org", want: []string{"torvalds@linux-foundation.org", "git@vger.kernel.org"}},
		{name: "mailx Bcc", in: "secret@example.com", want: []string{"secret@example.com"}},
		{name: "words after angle start a new address", in: "<a@x.example> b@y.example", want: []string{"a@x.example", "b@y.example"}},
		{name: "two angle addresses", in: "A <a@x.example> B <b@y.example>", want: []string{"a@x.example", "b@y.example"}},
		{name: "bare name words are separate addresses", in: "John Smith", want: []string{"John", "Smith"}},

		// Groups.
		{name: "undisclosed-recipients", in: "undisclosed-recipients:;", want: nil},
		{name: "undisclosed-recipients spaced", in: "undisclosed-recipients: ;", want: nil},
		{name: "group members", in: "team: a@x.example, b@y.example;", want: []string{"a@x.example", "b@y.example"}},
		{name: "group then mailbox", in: "team: a@x.example, B <b@y.example>;, c@z.example", want: []string{"a@x.example", "b@y.example", "c@z.example"}},
		{name: "group without semicolon", in: "team: a@x.example", want: []string{"a@x.example"}},
		{name: "quoted group name", in: `"Team, A": a@x.example;`, want: []string{"a@x.example"}},
		{name: "two groups", in: "a: a@x.example; b: b@x.example;", want: []string{"a@x.example", "b@x.example"}},
		{name: "semicolon as separator", in: "a@x.example; b@y.example", want: []string{"a@x.example", "b@y.example"}},

		// Comments, whitespace, obsolete syntax.
		{name: "nested comment", in: "a@x.example (work (old)), b@y.example", want: []string{"a@x.example", "b@y.example"}},
		{name: "comments inside addr-spec", in: "(c)a(d)@(e)x.example(f)", want: []string{"a@x.example"}},
		{name: "comment with escaped paren", in: `a@x.example (a \) b)`, want: []string{"a@x.example"}},
		{name: "obsolete spaces around dots", in: "john . smith @ example . com", want: []string{"john.smith@example.com"}},
		{name: "folded", in: "a@x.example,\r\n b@y.example", want: []string{"a@x.example", "b@y.example"}},
		{name: "folded with LF", in: "a@x.example,\n\tb@y.example", want: []string{"a@x.example", "b@y.example"}},
		{name: "trailing newline", in: "root\n", want: []string{"root"}},
		{name: "source route", in: "<@relay.example:a@x.example>", want: []string{"a@x.example"}},
		{name: "long source route", in: "<@r1.example,@r2.example:a@x.example>", want: []string{"a@x.example"}},
		{name: "double dot local part", in: "first..last@example.com", want: []string{"first..last@example.com"}},
		{name: "trailing dot local part", in: "trailing.@example.com", want: []string{"trailing.@example.com"}},
		{name: "quoted local part", in: `"john doe"@example.com`, want: []string{`"john doe"@example.com`}},
		{name: "quoted local part in angle", in: `John <"john doe"@example.com>`, want: []string{`"john doe"@example.com`}},
		{name: "quoted local with specials", in: `"a,b<c>"@example.com`, want: []string{`"a,b<c>"@example.com`}},
		{name: "domain literal", in: "a@[192.0.2.1]", want: []string{"a@[192.0.2.1]"}},
		{name: "ipv6 literal", in: "<postmaster@[IPv6:2001:db8::1]>", want: []string{"postmaster@[IPv6:2001:db8::1]"}},
		{name: "utf-8 address", in: "Jörg <jörg@exämple.de>, 用户@例子.广告", want: []string{"jörg@exämple.de", "用户@例子.广告"}},
		{name: "plus and percent", in: "a+tag@x.example, b%c@y.example, d!e", want: []string{"a+tag@x.example", "b%c@y.example", "d!e"}},

		// Empty.
		{name: "empty", in: "", want: nil},
		{name: "spaces", in: "  \t ", want: nil},
		{name: "commas only", in: ", ,,", want: nil},
		{name: "null address", in: "<>", want: nil},
		{name: "named null address", in: "Nobody <>, a@x.example", want: []string{"a@x.example"}},
		{name: "comment only", in: "(nobody)", want: nil},

		// Errors.
		{name: "unbalanced quote", in: `"Doe, John <j@example.com>`, wantErr: "unbalanced quote"},
		{name: "unbalanced paren", in: "a@x.example (comment", wantErr: "unbalanced parenthesis"},
		{name: "stray close paren", in: "a@x.example)", wantErr: "unbalanced parenthesis"},
		{name: "missing close angle", in: "John <j@example.com", wantErr: "unbalanced angle bracket"},
		{name: "stray close angle", in: "j@example.com>", wantErr: "unbalanced angle bracket"},
		{name: "nested angle", in: "<a <b@x.example>>", wantErr: "unbalanced angle bracket"},
		{name: "unclosed literal", in: "a@[192.0.2.1", wantErr: "unbalanced square bracket"},
		{name: "stray close bracket", in: "a@x]", wantErr: "unbalanced square bracket"},
		{name: "NUL", in: "a\x00@x.example", wantErr: "NUL"},
		{name: "control", in: "a\x1b@x.example", wantErr: "control character"},
		{name: "DEL", in: "a\x7f@x.example", wantErr: "control character"},
		{name: "smuggled command", in: "a@x.example\r\nRCPT TO:<evil@y.example>", wantErr: "line break"},
		{name: "line break in quotes", in: "\"a\r\nb\"@x.example", wantErr: "line break"},
		{name: "empty domain", in: "a@", wantErr: "empty domain"},
		{name: "empty local part", in: "@x.example", wantErr: "empty local part"},
		{name: "two at signs", in: "a@b@c.example", wantErr: "more than one unquoted @"},
		{name: "space in angle", in: "<john smith@example.com>", wantErr: `"john smith@example.com": unquoted space`},
		{name: "list in angle", in: "<a@x.example, b@y.example>", wantErr: `unexpected ","`},
		{name: "group in group", in: "a: b: c@x.example;;", wantErr: "group inside a group"},
		{name: "colon after address", in: "a@x.example: b@y.example", wantErr: `unexpected ":"`},
		{name: "bad route", in: "<relay:a@x.example>", wantErr: "bad source route"},
		{name: "route only", in: "<@relay.example:>", wantErr: "nothing after the source route"},
		{name: "bad domain", in: "a@exa$mple.com", wantErr: "'$' in domain"},
		{name: "empty label", in: "a@example..com", wantErr: "empty label"},
		{name: "invalid utf-8", in: "a\xff@x.example", wantErr: "UTF-8"},
		{name: "backslash in atom", in: `a\ b@x.example`, wantErr: "unquoted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseList(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseList(%q) = %q, %v, want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] || strings.HasSuffix(msg, ".") {
					t.Errorf("ParseList(%q) error %q: want lowercase, no final period", tt.in, msg)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseList(%q) = %q, %v, want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr string // "" when the address is valid
	}{
		{"root", ""},
		{"www-data", ""},
		{"root@localhost", ""},
		{"user@example.com", ""},
		{"first..last@example.com", ""},
		{".leading@example.com", ""},
		{"a+tag@sub.example.co.uk", ""},
		{`"john doe"@example.com`, ""},
		{`"a\"b"@example.com`, ""},
		{`"<>,;:"@example.com`, ""},
		{"a@[192.0.2.1]", ""},
		{"a@[IPv6:2001:db8::1]", ""},
		{"a@host_name.example", ""},
		{"jörg@exämple.de", ""},
		{"=?utf-8?q?a?=@example.com", ""},

		{"", `invalid address "": empty address`},
		{"a\r\nRCPT TO:<x>", `invalid address "a\r\nRCPT TO:<x>": contains a line break`},
		{"a\n@x", "contains a line break"},
		{"a\r@x", "contains a line break"},
		{"a\x00@x", "contains a NUL byte"},
		{"a\t@x", "contains a control character"},
		{"a\x7f@x", "contains a control character"},
		{"a\xc3@x", "not valid UTF-8"},
		{"john doe@example.com", "unquoted space"},
		{"a<b@x", `unquoted '<' in local part`},
		{"a>b@x", `unquoted '>' in local part`},
		{"a,b@x", `unquoted ',' in local part`},
		{"a;b@x", `unquoted ';' in local part`},
		{"a:b@x", `unquoted ':' in local part`},
		{"<a@x>", `unquoted '<' in local part`},
		{`"unterminated@x`, "unbalanced quote"},
		{"@x", "empty local part"},
		{"a@", "empty domain"},
		{"a@b@c", "more than one unquoted @"},
		{"a@example.com.", "empty label in domain"},
		{"a@.example.com", "empty label in domain"},
		{"a@exa mple.com", `' ' in domain`},
		{"a@[192.0.2.1", "bad domain literal"},
		{"a@[]", "bad domain literal"},
		{"a@[1 2]", "bad domain literal"},
		{"a@[1]x", "bad domain literal"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := Check(tt.addr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check(%q) = %v, want nil", tt.addr, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Check(%q) = %v, want error containing %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestQualify(t *testing.T) {
	tests := []struct {
		addr, domain, want string
	}{
		{"root", "host.example", "root@host.example"},
		{"www-data", "host.example", "www-data@host.example"},
		{"root@localhost", "host.example", "root@localhost"},
		{`"a@b"`, "host.example", `"a@b"@host.example`},
		{"", "host.example", ""},
		{"root", "", "root"},
	}
	for _, tt := range tests {
		if got := Qualify(tt.addr, tt.domain); got != tt.want {
			t.Errorf("Qualify(%q, %q) = %q, want %q", tt.addr, tt.domain, got, tt.want)
		}
	}
}

func TestIsLocal(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"root", true},
		{`"a@b"`, true},
		{"root@localhost", false},
		{`"a@b"@x`, false},
	}
	for _, tt := range tests {
		if got := IsLocal(tt.addr); got != tt.want {
			t.Errorf("IsLocal(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestNeedsSMTPUTF8(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"root@example.com", false},
		{"jörg@example.de", true},
		{"a@exämple.de", true},
		{"", false},
	}
	for _, tt := range tests {
		if got := NeedsSMTPUTF8(tt.addr); got != tt.want {
			t.Errorf("NeedsSMTPUTF8(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// FuzzParseList checks that ParseList and Check never panic, that every
// address ParseList returns passes Check, and that a returned address parses
// back to itself.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"root", "root (Cron Daemon)", "a@x, b@y", "a@x b@y", `"Doe, John" <j@x>`,
		"undisclosed-recipients:;", "team: a@x, b@y;", "<@relay:a@x>", `"john doe"@x`,
		"a@[192.0.2.1]", "=?utf-8?q?Doe,_John?= <j@x>", "jörg@exämple.de", "a@x,\r\n b@y",
		"(a (b) c) d", "<>", `"a\"b"@x`, "a\r\nRCPT TO:<x>", "x: y: z;;", "<a@x> junk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addrs, err := ParseList(s)
		_ = Check(s)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if err := Check(a); err != nil {
				t.Fatalf("ParseList(%q) returned %q, which Check rejects: %v", s, a, err)
			}
			again, err := ParseList(a)
			if err != nil || len(again) != 1 || again[0] != a {
				t.Fatalf("ParseList(%q) = %q, %v, want [%q] (from ParseList(%q))", a, again, err, a, s)
			}
			_ = Qualify(a, "example.com")
			_ = NeedsSMTPUTF8(a)
		}
		// QualifyList gives the same list, each bare name qualified.
		q, _ := QualifyList(s, "example.com")
		qaddrs, err := ParseList(q)
		if err != nil || len(qaddrs) != len(addrs) {
			t.Fatalf("QualifyList(%q) = %q: ParseList gives %q, %v; want %d addresses", s, q, qaddrs, err, len(addrs))
		}
		for i, a := range addrs {
			if want := Qualify(a, "example.com"); qaddrs[i] != want {
				t.Fatalf("QualifyList(%q) = %q: address %d is %q, want %q", s, q, i, qaddrs[i], want)
			}
		}
	})
}

func TestQualifyList(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"root", "root@example.com"},
		{"root, Ops <ops>", "root@example.com, Ops <ops@example.com>"},
		{"root (Cron Daemon)", "root@example.com (Cron Daemon)"},
		{`"john doe", a@x.org`, `"john doe"@example.com, a@x.org`},
		{"team: root, b@y.org;", "team: root@example.com, b@y.org;"},
		{"a@x.org", "a@x.org"},
		{"a@@x", "a@@x"},
	} {
		got, changed := QualifyList(tt.in, "example.com")
		if got != tt.want || changed != (tt.in != tt.want) {
			t.Errorf("QualifyList(%q) = %q, %v; want %q", tt.in, got, changed, tt.want)
		}
	}
}
