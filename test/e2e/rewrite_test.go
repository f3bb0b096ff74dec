package e2e

import (
	"strings"
	"testing"

	"relaymail/internal/smarthost"
)

// TestRewriteUsers: [rewrite.users] gives the running user (root here)
// its address: cron's mail, sent without -f and with "From: root (Cron
// Daemon)", leaves with that address in the envelope and the From field.
func TestRewriteUsers(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	appendConfig(t, s.conf, "[rewrite.users]\nroot = \"server@example.com\"\n")
	const cronMessage = "From: root (Cron Daemon)\nTo: ops@example.net\nSubject: Cron <root@app01> backup\n\nok\n"
	o := s.run(cronMessage, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.net")
	wantCode(t, o, 0, "")
	m := s.delivered(1)[0]
	wantEnvelope(t, m, "server@example.com", "ops@example.net")
	if got := header(m.Data, "From"); got != `"Cron Daemon" <server@example.com>` {
		t.Errorf("From = %q", got)
	}
	if got := header(m.Data, "Reply-To"); got != "" {
		t.Errorf("Reply-To = %q, want none (root is no address to reply to)", got)
	}
}

// TestRewriteForced: [rewrite] sender and from put the relay's account on
// every message, whatever -f and the From field say; the writer's address
// becomes Reply-To.
func TestRewriteForced(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	appendConfig(t, s.conf, "[rewrite]\nsender = \"app@example.com\"\nfrom = \"app@example.com\"\n")
	const msg = "From: Alice Example <alice@gmail.com>\nTo: b@example.net\nSubject: hi\n\nbody\n"
	o := s.run(msg, "-f", "alice@gmail.com", "-t")
	wantCode(t, o, 0, "")
	m := s.delivered(1)[0]
	wantEnvelope(t, m, "app@example.com", "b@example.net")
	if got := header(m.Data, "From"); got != `"Alice Example" <app@example.com>` {
		t.Errorf("From = %q", got)
	}
	if got := header(m.Data, "Reply-To"); got != "Alice Example <alice@gmail.com>" {
		t.Errorf("Reply-To = %q", got)
	}
	if strings.Count(string(m.Data), "\r\nFrom:")+strings.Count(string(m.Data[:5]), "From:") != 1 {
		t.Errorf("not exactly one From field:\n%s", m.Data)
	}
}

// TestQualifyHeaders: with qualify_headers, cron's bare "To: root" and
// "From: root" leave with the domain; without it they leave as written.
func TestQualifyHeaders(t *testing.T) {
	const msg = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@app01> backup\n\nok\n"
	for _, on := range []bool{true, false} {
		s := newSetup(t, smarthost.Options{}, "", "")
		if on {
			appendConfig(t, s.conf, "[rewrite]\nqualify_headers = true\n")
		}
		wantCode(t, s.run(msg, "-i", "root"), 0, "")
		m := s.delivered(1)[0]
		from, to := header(m.Data, "From"), header(m.Data, "To")
		if on && (from != "root@example.com (Cron Daemon)" || to != "root@example.com") ||
			!on && (from != "root (Cron Daemon)" || to != "root") {
			t.Errorf("qualify_headers %v: From %q, To %q", on, from, to)
		}
	}
}
