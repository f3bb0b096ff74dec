package e2e

import (
	"os"
	"strings"
	"testing"

	"relaymail/internal/smarthost"
	"relaymail/internal/trust"
)

// TestCheck: --check shows the config without the password, logs in to
// the smarthost over STARTTLS and reports what it found, and sends
// nothing.
func TestCheck(t *testing.T) {
	s := newSetup(t, smarthost.Options{AuthRequired: true}, "", "")
	o := s.run("", "--check")
	wantCode(t, o, 0, "")
	cert, _ := trust.Fingerprints(s.srv.Certificate())
	for _, want := range []string{
		"config " + s.conf + "\n",
		"  smarthost 127.0.0.1:",
		"trusting the system's CAs and " + s.dir + "/ca.pem",
		`  login "relayuser", auth auto, password in the config (not shown)`,
		"  TLS 1.3, TLS_",
		"  certificate CN=smarthost.test, issued by CN=relaymail smarthost test CA, valid until ",
		"  certificate SHA-256 " + trust.Hex(cert) + "\n",
		"  offers SIZE",
		`  logged in as "relayuser" with PLAIN`,
		"ok: mail can be relayed through 127.0.0.1:",
	} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("--check output lacks %q:\n%s", want, o.stdout)
		}
	}
	if strings.Contains(o.stdout+o.stderr, password) {
		t.Errorf("--check showed the password:\n%s%s", o.stdout, o.stderr)
	}
	if n := len(s.srv.Sessions()); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	for _, ev := range s.srv.Sessions()[0].Events {
		if strings.HasPrefix(ev, "MAIL") || strings.HasPrefix(ev, "RCPT") || strings.HasPrefix(ev, "DATA") {
			t.Errorf("--check sent %q", ev)
		}
	}
}

// TestCheckFailures: a wrong password and an untrusted certificate are one
// line each, with the hint, and exit 75.
func TestCheckFailures(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{AuthRequired: true}, "", "")
		b, err := os.ReadFile(s.conf)
		must(t, err)
		must(t, os.WriteFile(s.conf, []byte(strings.Replace(string(b), password, "wrong-password", 1)), 0o600))
		o := s.run("", "--check")
		wantCode(t, o, 75, "authentication failed: 535")
		wantCode(t, o, 75, "hint: check username and the password in [smarthost]")
		if strings.Contains(o.stderr, "wrong-password") {
			t.Errorf("the password is in the error:\n%s", o.stderr)
		}
		if n := len(s.srv.Messages()); n != 0 {
			t.Errorf("%d messages arrived", n)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{BadCert: true}, "", "")
		o := s.run("", "--check")
		wantCode(t, o, 75, "certificate not trusted")
		wantCode(t, o, 75, "hint: if the smarthost uses a private CA")
		if lines := strings.Count(o.stderr, "\n"); lines != 2 {
			t.Errorf("stderr has %d lines, want the error and its hint:\n%s", lines, o.stderr)
		}
		s.nothingSent()
	})
}
