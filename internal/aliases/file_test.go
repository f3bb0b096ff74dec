package aliases

import (
	"reflect"
	"strings"
	"testing"

	"relaymail/internal/address"
)

func TestParseFile(t *testing.T) {
	const good = "# /etc/aliases\n" +
		"postmaster: root\n" +
		"root: admin, ops@example.net\n" +
		"admin:\talice@example.net,\n" +
		"    bob@example.net,\n" +
		"  # a comment inside\n" +
		"\t\"Doe, John\" <john@example.net>\n" +
		"\n" +
		"\"john doe\": john@example.net\r\n" +
		"MixedCase : x@example.net\n"
	entries, errs := ParseFile("aliases", strings.NewReader("\ufeff"+good), address.ParseList)
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := []Entry{
		{Name: "postmaster", Targets: []string{"root"}, Line: 2},
		{Name: "root", Targets: []string{"admin", "ops@example.net"}, Line: 3},
		{Name: "admin", Targets: []string{"alice@example.net", "bob@example.net", "john@example.net"}, Line: 4},
		{Name: `"john doe"`, Targets: []string{"john@example.net"}, Line: 9},
		{Name: "mixedcase", Targets: []string{"x@example.net"}, Line: 10},
	}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("entries:\n%+v\nwant\n%+v", entries, want)
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name, text string
		errs       []string
		names      []string // the entries that survive
	}{
		{"program", "ok: a@x\nlogs: |/usr/bin/logger\n", []string{`aliases:2: "|/usr/bin/logger": a relay cannot deliver to a program; give an address`}, []string{"ok"}},
		{"quoted program", "logs: \"|/usr/bin/logger -t mail\"\n", []string{`aliases:1: "|/usr/bin/logger -t mail": a relay cannot deliver to a program`}, nil},
		{"file", "archive: root, /var/mail/archive\n", []string{`aliases:1: "/var/mail/archive": a relay cannot deliver to a file`}, nil},
		{"include", "staff: :include:/etc/mail/staff\n", []string{`aliases:1: ":include:/etc/mail/staff": :include: lists are not supported`}, nil},
		{"no colon", "root admin\n", []string{"aliases:1: no colon: write name: address, ..."}, nil},
		{"address as name", "root@example.com: a@x\n", []string{`aliases:1: "root@example.com" is an address`}, nil},
		{"space in name", "john doe: a@x\n", []string{`aliases:1: the name "john doe" has a space: quote it`}, nil},
		{"unclosed quote", "\"john: a@x\n", []string{"aliases:1: the quoted name has no closing quote"}, nil},
		{"empty name", ": a@x\n", []string{"aliases:1: the alias has no name"}, nil},
		{"no address", "root:\n", []string{"aliases:1: the alias has no address"}, nil},
		{"bad address", "root: a@@x\n", []string{"aliases:1: "}, nil},
		{"twice", "root: a@x\nother: b@x\nROOT: c@x\n", []string{`aliases:3: alias "ROOT" is defined twice (first on line 1)`}, []string{"root", "other"}},
		{"continuation first", "  a@x\nroot: b@x\n", []string{"aliases:1: a line that starts with white space continues the alias above, and there is none"}, []string{"root"}},
		{"error on a continuation", "root: a@x,\n  |/bin/sh\nok: b@x\n", []string{`aliases:1: "|/bin/sh": a relay cannot deliver to a program`}, []string{"ok"}},
		{"comment after a target", "www-data: web@example.net # the web team\n", []string{`aliases:1: "web@example.net # the web team" is more than one address`}, nil},
		{"sendmail's error:", "cron: error:nouser No such user here\n", []string{`aliases:1: "error:nouser No such user here" is more than one address`}, nil},
		{"long line", "root: " + strings.Repeat("a", maxLineBytes) + "\n", []string{"aliases:1: a line is longer than 65536 bytes"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, errs := ParseFile("aliases", strings.NewReader(tt.text), address.ParseList)
			if len(errs) != len(tt.errs) {
				t.Fatalf("errors %v, want %d: %q", errs, len(tt.errs), tt.errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tt.errs[i]) {
					t.Errorf("error %q, want it to start with %q", e, tt.errs[i])
				}
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
			}
			if !reflect.DeepEqual(names, tt.names) {
				t.Errorf("entries %q, want %q", names, tt.names)
			}
		})
	}
}

// FuzzParseFile: any file parses without a panic; every entry has a
// lower-case name without @ and at least one target that passes
// address.Check, and no name twice; every problem names a line of the file.
func FuzzParseFile(f *testing.F) {
	f.Add("root: admin, ops@example.net\nadmin: a@x,\n b@y\n")
	f.Add("\"a b\": c@d\n# x\n  e@f\n|x: y\n")
	f.Add("x: \"|prog\", /file, :include:/l\n")
	f.Add(": \n\n\t\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		entries, errs := ParseFile("f", strings.NewReader(text), address.ParseList)
		lines := strings.Count(text, "\n") + 2
		for _, err := range errs {
			fe, ok := err.(*FileError)
			if !ok || fe.Line < 1 || fe.Line > lines {
				t.Fatalf("ParseFile(%q) error %v: not a FileError on a line of the file", text, err)
			}
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if e.Name == "" || e.Name != strings.ToLower(e.Name) || strings.Contains(e.Name, "@") || seen[e.Name] {
				t.Fatalf("ParseFile(%q): bad or repeated name %q", text, e.Name)
			}
			seen[e.Name] = true
			if len(e.Targets) == 0 {
				t.Fatalf("ParseFile(%q): %q has no target", text, e.Name)
			}
			for _, a := range e.Targets {
				if err := address.Check(a); err != nil {
					t.Fatalf("ParseFile(%q): %q -> %q: %v", text, e.Name, a, err)
				}
			}
		}
	})
}
