package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestRoutes: [[route]] sends mail from example.org senders to a second
// smarthost, with that route's own login; everything else goes to
// [smarthost]. Interactive sends and a queue run both route, a queue run
// with one session per smarthost, and --check logs in to each.
func TestRoutes(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	org := smarthost.New(t, smarthost.Options{Users: map[string]string{"org-user": "org-password"}, AuthRequired: true})
	orgCA := filepath.Join(s.dir, "org-ca.pem")
	must(t, org.WriteCA(orgCA))
	b, err := os.ReadFile(s.conf)
	must(t, err)
	route := fmt.Sprintf(`
[[route]]
senders = ["example.org"]
host = "127.0.0.1"
port = %d
ca_file = %q
username = "org-user"
password = "org-password"
`, org.Port(), orgCA)
	must(t, os.WriteFile(s.conf, []byte(strings.Replace(string(b), "\n[queue]\n", route+"\n[queue]\n", 1)), 0o600))

	// Interactive: each message to its route's smarthost.
	wantCode(t, s.run(simple, "-odi", "-f", "a@example.org", "x@example.net"), 0, "")
	wantCode(t, s.run(simple, "-odi", "-f", "b@example.com", "y@example.net"), 0, "")
	m, err := org.WaitMessages(1, 10*time.Second)
	must(t, err)
	if m[0].From != "a@example.org" || strings.Join(m[0].Rcpts, " ") != "x@example.net" || !m[0].TLS || m[0].AuthUser != "org-user" {
		t.Errorf("the route's smarthost got from <%s> to %q, TLS %v, AUTH %q; want a@example.org, x@example.net, TLS, org-user",
			m[0].From, m[0].Rcpts, m[0].TLS, m[0].AuthUser)
	}
	d := s.delivered(1)
	wantEnvelope(t, d[0], "b@example.com", "y@example.net")

	// Queued, then one run: one session on each smarthost.
	for _, f := range []string{"c@example.org", "d@example.com", "e@example.org", "f@example.com"} {
		wantCode(t, s.run(simple, "-odq", "-f", f, "z@example.net"), 0, "")
	}
	orgSessions, defSessions := len(org.Sessions()), len(s.srv.Sessions())
	wantCode(t, s.run("", "-q"), 0, "")
	if got := len(org.Messages()); got != 3 {
		t.Errorf("the route's smarthost has %d messages, want 3", got)
	}
	if got := len(s.srv.Messages()); got != 3 {
		t.Errorf("[smarthost] has %d messages, want 3", got)
	}
	for _, m := range org.Messages() {
		if !strings.HasSuffix(m.From, "@example.org") {
			t.Errorf("the route's smarthost got mail from %s", m.From)
		}
	}
	if n, k := len(org.Sessions())-orgSessions, len(s.srv.Sessions())-defSessions; n != 1 || k != 1 {
		t.Errorf("the queue run opened %d sessions to the route and %d to [smarthost], want 1 each", n, k)
	}

	o := s.run("", "--check")
	wantCode(t, o, 0, "")
	if !strings.Contains(o.stdout, "route 1, for senders *@example.org") || strings.Count(o.stdout, "logged in as") != 2 {
		t.Errorf("--check:\n%s", o.stdout)
	}
}

// TestRouteDespiteBrokenDefault: a [smarthost] whose ca_file is missing
// holds back its own mail only: a route's message is sent at once and by a
// queue run, which then exits 78 for the default's settings.
func TestRouteDespiteBrokenDefault(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	org := smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
	orgCA := filepath.Join(s.dir, "org-ca.pem")
	must(t, org.WriteCA(orgCA))
	b, err := os.ReadFile(s.conf)
	must(t, err)
	conf := strings.Replace(string(b), filepath.Join(s.dir, "ca.pem"), filepath.Join(s.dir, "missing.pem"), 1)
	conf = strings.Replace(conf, "\n[queue]\n", fmt.Sprintf("\n[[route]]\nsenders = [\"example.org\"]\nhost = \"127.0.0.1\"\nport = %d\nca_file = %q\nusername = %q\npassword = %q\n\n[queue]\n", org.Port(), orgCA, user, password), 1)
	must(t, os.WriteFile(s.conf, []byte(conf), 0o600))

	wantCode(t, s.run(simple, "-odi", "-f", "a@example.org", "x@example.net"), 0, "")
	wantCode(t, s.run(simple, "-odq", "-f", "b@example.org", "y@example.net"), 0, "")
	o := s.run(simple, "-odi", "-f", "c@example.com", "z@example.net")
	wantQueued(t, o, "ca_file")
	o = s.run("", "-q")
	wantCode(t, o, 78, "missing.pem")
	if _, err := org.WaitMessages(2, 10*time.Second); err != nil {
		t.Errorf("the route's two messages did not arrive: %v", err)
	}
	if n := len(s.srv.Messages()); n != 0 {
		t.Errorf("[smarthost] got %d messages with its ca_file missing", n)
	}
}
