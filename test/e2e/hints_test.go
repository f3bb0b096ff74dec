package e2e

import (
	"strings"
	"testing"

	"relaymail/internal/smarthost"
)

// TestHints sends through a smarthost that answers as Gmail, Microsoft 365,
// a provider that checks senders and one that throttles do, and checks
// that the send prints the error and the catalogue's hint for it, each
// one on its line, and that --check shows the same hint for a refused
// login.
func TestHints(t *testing.T) {
	for _, tt := range []struct {
		name  string
		opts  smarthost.Options
		args  []string
		stdin string
		code  int
		lines int    // stderr lines: the error (or refusals), the hint, ...
		err   string // in the first line
		hint  string // in the hint line
	}{
		{
			name: "Gmail wrong password",
			opts: smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Auth, Code: 535, Enhanced: [3]int{5, 7, 8},
				Text: "Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials"}}},
			lines: 2, err: "535 5.7.8 Username and Password not accepted",
			hint: "Gmail refused the login: use an app password",
		},
		{
			name: "Microsoft 365 SMTP AUTH disabled",
			opts: smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Auth, Code: 535, Enhanced: [3]int{5, 7, 139},
				Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."}}},
			lines: 2, err: "SmtpClientAuthentication is disabled",
			hint: "Set-CASMailbox -SmtpClientAuthenticationDisabled $false",
		},
		{
			name: "530 STARTTLS first, with tls none",
			opts: smarthost.Options{TLS: smarthost.NoTLS, Faults: []smarthost.Fault{{Stage: smarthost.Mail, Code: 530, Enhanced: [3]int{5, 7, 0},
				Text: "Must issue a STARTTLS command first"}}},
			lines: 2, err: "530 5.7.0 Must issue a STARTTLS command first",
			hint: `set tls = "starttls" (port 587) or tls = "tls" (port 465)`,
		},
		{
			name: "sender not allowed",
			opts: smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Mail, Code: 553, Enhanced: [3]int{5, 7, 1},
				Text: "<a@example.com>: Sender address rejected: not owned by user relayuser"}}},
			code: 69, lines: 3, err: "refused <b@example.net>: 553 5.7.1",
			hint: "set [rewrite] sender (and from) to an address the account owns",
		},
		{
			name:  "too large for the server's SIZE",
			opts:  smarthost.Options{MaxMessageBytes: 1000},
			stdin: "Subject: big\n\n" + strings.Repeat("0123456789abcdef\n", 100),
			code:  69, lines: 3, err: "refused <b@example.net>",
			hint: "it announced SIZE 1000",
		},
		{
			name: "throttled",
			opts: smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Mail, Code: 454, Enhanced: [3]int{4, 7, 0},
				Text: "Throttling failure: Maximum sending rate exceeded."}}},
			lines: 2, err: "454 4.7.0 Throttling failure",
			hint: "set rate (and daily_limit) in [smarthost]",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, tt.opts, "", "")
			stdin := tt.stdin
			if stdin == "" {
				stdin = simple
			}
			o := s.run(stdin, "-f", "a@example.com", "b@example.net")
			wantCode(t, o, tt.code, "")
			lines := strings.Split(strings.TrimSpace(o.stderr), "\n")
			if len(lines) != tt.lines || !strings.Contains(lines[0], tt.err) {
				t.Fatalf("stderr, want %d lines, the first with %q:\n%s", tt.lines, tt.err, o.stderr)
			}
			var hint string
			for _, l := range lines {
				if h, ok := strings.CutPrefix(l, "sendmail: hint: "); ok {
					hint = h
				}
			}
			if !strings.Contains(hint, tt.hint) {
				t.Errorf("hint %q, want it to contain %q\n%s", hint, tt.hint, o.stderr)
			}
			if tt.opts.Faults != nil && tt.opts.Faults[0].Stage == smarthost.Auth {
				c := s.run("", "--check")
				if !strings.Contains(c.stderr, "hint: "+hint) {
					t.Errorf("--check does not give the hint:\n%s", c.stderr)
				}
			}
		})
	}
}

// TestHintInBounceAndLog: a sender the smarthost refuses, with cron's
// -oem: the bounce tells the administrator what to change, and so does
// the log line (echoed by -v).
func TestHintInBounceAndLog(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Mail, Match: "a@example.com", Code: 553, Enhanced: [3]int{5, 7, 1},
		Text: "<a@example.com>: Sender address rejected: not owned by user relayuser"}}}, "", "")
	o := s.run(simple, "-oem", "-v", "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	const want = "the smarthost does not let this account send as this sender: set [rewrite] sender"
	if !strings.Contains(o.stderr, "status=bounced (553 5.7.1 <a@example.com>: Sender address rejected: not owned by user relayuser) hint: "+want) {
		t.Errorf("the log line has no hint:\n%s", o.stderr)
	}
	bounce := s.one()
	wantEnvelope(t, bounce, "", "a@example.com")
	text := strings.Join(strings.Fields(string(bounce.Data)), " ")
	if !strings.Contains(text, "For the administrator of the sending system: "+want) {
		t.Errorf("the bounce has no hint:\n%s", bounce.Data)
	}
}
