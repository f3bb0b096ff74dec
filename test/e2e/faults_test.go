package e2e

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

const simple = "Subject: hi\n\nbody\n"

func TestNoSTARTTLSSendsNothing(t *testing.T) {
	s := newSetup(t, smarthost.Options{NoStartTLS: true}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "does not offer STARTTLS")
	wantQueued(t, o, "hint:")
	s.nothingSent()
}

func TestUntrustedCertificateSendsNothing(t *testing.T) {
	s := newSetup(t, smarthost.Options{BadCert: true}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate not trusted")
	wantQueued(t, o, "hint: if the smarthost uses a private CA, set ca_file")
	// The hint names the certificate: subject, issuer, dates.
	wantQueued(t, o, `the server's certificate is for "localhost, smarthost.test", issued by "relaymail smarthost untrusted CA"`)
	wantQueued(t, o, " until "+time.Now().Add(24*time.Hour).UTC().Format("2006-01-02"))
	s.nothingSent()
}

// TestSystemRoots sends without ca_file: the smarthost's CA is one of the
// system's roots, named by $SSL_CERT_FILE as crypto/x509 honours it, in a
// bundle where it sits among the machine's real roots. Without the
// variable the same config is refused, so the bundle is what was used.
func TestSystemRoots(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	conf, err := os.ReadFile(s.conf)
	if err != nil {
		t.Fatal(err)
	}
	noCA := regexp.MustCompile(`(?m)^ca_file = .*\n`).ReplaceAll(conf, nil)
	if bytes.Equal(noCA, conf) {
		t.Fatal("no ca_file line in the config")
	}
	if err := os.WriteFile(s.conf, noCA, 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	system, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt") // may be missing: the CA alone then
	bundle := filepath.Join(s.dir, "bundle.pem")
	if err := os.WriteFile(bundle, append(append(system, '\n'), ca...), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	o := runBinaryEnv(t, strings.NewReader(simple), []string{"SSL_CERT_FILE=" + bundle, "SSL_CERT_DIR=" + empty},
		"-C", s.conf, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	wantEnvelope(t, s.one(), "a@example.com", "b@example.net")

	o = runBinaryEnv(t, strings.NewReader(simple), []string{"SSL_CERT_DIR=" + empty},
		"-C", s.conf, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate not trusted")
}

func TestWrongCertificateNameSendsNothing(t *testing.T) {
	s := newSetup(t, smarthost.Options{WrongName: true}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate name mismatch")
	s.nothingSent()
}

func TestImplicitTLS(t *testing.T) {
	s := newSetup(t, smarthost.Options{TLS: smarthost.ImplicitTLS}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	wantEnvelope(t, s.one(), "a@example.com", "b@example.net")
}

func TestImplicitTLSUntrustedSendsNothing(t *testing.T) {
	s := newSetup(t, smarthost.Options{TLS: smarthost.ImplicitTLS, BadCert: true}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate not trusted")
	s.nothingSent()
}

func TestAuthLoginOnly(t *testing.T) {
	s := newSetup(t, smarthost.Options{Mechanisms: []string{"LOGIN"}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	if m := s.one(); m.AuthMech != "LOGIN" {
		t.Errorf("AUTH mechanism = %q, want LOGIN", m.AuthMech)
	}
}

func TestXOAUTH2TokenFromCommand(t *testing.T) {
	s := newSetup(t, smarthost.Options{Tokens: map[string]string{user: "ya29.token"}, Mechanisms: []string{"XOAUTH2"}}, "",
		`username = "relayuser"`+"\n"+`auth = "xoauth2"`+"\n"+`password_command = ["/bin/echo", "ya29.token"]`+"\n")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	if m := s.one(); m.AuthMech != "XOAUTH2" || m.AuthUser != user {
		t.Errorf("AUTH = %s as %q, want XOAUTH2 as %q", m.AuthMech, m.AuthUser, user)
	}
}

func TestOAUTHBEARERTokenFromFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("bearer-tok\n"), 0o600)
	s := newSetup(t, smarthost.Options{Tokens: map[string]string{user: "bearer-tok"}, Mechanisms: []string{"OAUTHBEARER"}}, "",
		`username = "relayuser"`+"\n"+`auth = "oauthbearer"`+"\n"+`password_file = "`+file+`"`+"\n")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	if m := s.one(); m.AuthMech != "OAUTHBEARER" {
		t.Errorf("AUTH mechanism = %q, want OAUTHBEARER", m.AuthMech)
	}
}

func TestAuthFailure(t *testing.T) {
	s := newSetup(t, smarthost.Options{Users: map[string]string{user: "another-password"}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "authentication failed: 535")
	wantQueued(t, o, "hint: check username and the password in [smarthost]")
	if strings.Contains(o.stderr, password) {
		t.Errorf("stderr shows the password: %s", o.stderr)
	}
	if msgs := s.srv.Messages(); len(msgs) != 0 {
		t.Errorf("%d messages arrived after failed AUTH", len(msgs))
	}
}

func TestOneRecipientRefused(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "nobody@example.net", Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "user unknown"},
	}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "good@example.net", "nobody@example.net")
	wantCode(t, o, 0, "refused <nobody@example.net>: 550 5.1.1 user unknown")
	wantCode(t, o, 0, "a bounce goes to the sender")
	msgs, err := s.srv.WaitMessages(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// msgs[1], when it has arrived, is the bounce of the background run.
	wantEnvelope(t, msgs[0], "a@example.com", "good@example.net")
}

func TestAllRecipientsRefused(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Rcpt, Code: 550, Text: "no relay"}}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "x@example.net", "y@example.net")
	wantCode(t, o, 67, "all 2 recipients refused")
	if msgs := s.srv.Messages(); len(msgs) != 0 {
		t.Errorf("%d messages arrived", len(msgs))
	}
}

func TestTemporaryFailures(t *testing.T) {
	tests := []struct {
		name  string
		fault smarthost.Fault
		want  string
	}{
		{"451 on RCPT", smarthost.Fault{Stage: smarthost.Rcpt, Code: 451, Text: "greylisted"}, "<b@example.net>: 451"},
		{"421 on MAIL", smarthost.Fault{Stage: smarthost.Mail, Code: 421, Text: "too busy"}, "421"},
		{"drop after DATA", smarthost.Fault{Stage: smarthost.DataEnd, Drop: true}, "connection lost"},
		{"452 after DATA", smarthost.Fault{Stage: smarthost.DataEnd, Code: 452, Text: "disk full"}, "452"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{tt.fault}}, "", "")
			o := s.run(simple, "-f", "a@example.com", "b@example.net")
			wantQueued(t, o, tt.want)
			if msgs := s.srv.Messages(); len(msgs) != 0 {
				t.Errorf("%d messages recorded", len(msgs))
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	// A port nobody listens on: take one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b, _ := os.ReadFile(s.conf)
	conf := strings.Replace(string(b), "port = ", "port = "+strconv.Itoa(port)+" # was ", 1)
	os.WriteFile(s.conf, []byte(conf), 0o600)
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "connect")
}

func TestRefusedArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"CR LF in -f", []string{"-f", "a@example.com\r\nRCPT TO:<evil@example.net>", "b@example.net"}, 64, "line break"},
		{"LF in recipient", []string{"-f", "a@example.com", "b@example.net\nRCPT TO:<evil@example.net>"}, 64, ""},
		{"CR in -F", []string{"-F", "a\rb", "b@example.net"}, 64, ""},
		{"LF in -V", []string{"-V", "id\nRCPT TO:<evil@example.net>", "b@example.net"}, 64, "line break"},
		{"LF in -N", []string{"-N", "failure\nRSET", "b@example.net"}, 64, "line break"},
		{"CR in -R", []string{"-R", "hdrs\r", "b@example.net"}, 64, "line break"},
		{"LF in -L", []string{"-L", "tag\nx", "b@example.net"}, 64, "line break"},
		{"recipient that looks like a flag", []string{"-f", "a@example.com", "b@example.net", "-oQ/tmp"}, 64, `recipient "-oQ/tmp" starts with -`},
		{"unknown flag", []string{"-Z", "b@example.net"}, 64, "usage:"},
		{"no recipients", []string{"-f", "a@example.com"}, 64, "no recipients"},
		{"no recipients with -t", []string{"-t", "-f", "a@example.com"}, 64, "no recipients"},
		{"bad recipient syntax", []string{"-f", "a@example.com", "b@@example.net"}, 64, "b@@example.net"},
		{"-t with -bs", []string{"-bs", "-t"}, 64, "-t can be used only in delivery mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{}, "", "")
			o := s.run(simple, tt.args...)
			wantCode(t, o, tt.code, tt.want)
			if n := strings.Count(strings.TrimSpace(o.stderr), "\n"); n > 2 {
				t.Errorf("stderr has %d lines, want one (plus usage/hint):\n%s", n+1, o.stderr)
			}
			if len(s.srv.Sessions()) != 0 {
				t.Errorf("sendmail connected to the smarthost")
			}
		})
	}
}

func TestBadHeaderAddressRefused(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	o := s.run("To: \"unterminated <a@example.net>\nSubject: x\n\nbody\n", "-t", "-f", "a@example.com")
	wantCode(t, o, 65, "To")
	if len(s.srv.Sessions()) != 0 {
		t.Errorf("sendmail connected to the smarthost")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	noHost := filepath.Join(dir, "nohost.conf")
	os.WriteFile(noHost, []byte("[smarthost]\nport = 587\n"), 0o600)
	typo := filepath.Join(dir, "typo.conf")
	os.WriteFile(typo, []byte("[smarthost]\nhost = \"smtp.example.com\"\nhots = \"x\"\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing host", []string{"-C", noHost}, "host"},
		{"unknown key", []string{"-C", typo}, "hots"},
		{"missing file", []string{"-C", filepath.Join(dir, "absent.conf")}, "absent.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := runBinary(t, strings.NewReader(simple), append(tt.args, "b@example.net")...)
			wantCode(t, o, 78, tt.want)
		})
	}
}

func TestVerboseHidesSecrets(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	o := s.run("Subject: secret body words\n\nthe body\n", "-v", "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	for _, want := range []string{">>> EHLO app01.example.com", ">>> STARTTLS", ">>> AUTH PLAIN <redacted>", ">>> MAIL FROM:<a@example.com>", "<<< 250", "status=sent"} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("-v output lacks %q:\n%s", want, o.stderr)
		}
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	for _, secret := range []string{password, plain, "secret body words"} {
		if strings.Contains(o.stderr, secret) {
			t.Errorf("-v output shows %q:\n%s", secret, o.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-bV"}, {"--version"}} {
		o := runBinary(t, strings.NewReader(""), args...)
		wantCode(t, o, 0, "")
		if !strings.HasPrefix(o.stdout, "relaymail ") {
			t.Errorf("%v printed %q, want the version", args, o.stdout)
		}
	}
}

// wantQueued checks that a send with temporary trouble kept the message:
// exit 0 and one stderr line saying it is queued and why.
func wantQueued(t *testing.T, o outcome, fragment string) {
	t.Helper()
	wantCode(t, o, 0, fragment)
	if !strings.Contains(o.stderr, "queued as ") {
		t.Errorf("stderr = %q, want it to say the message is queued", o.stderr)
	}
}

// TestDirectModeTempFail: without a spool ([queue] dir = ""), a relay
// failure must reach the caller as exit 75.
func TestDirectModeTempFail(t *testing.T) {
	s := newSetup(t, smarthost.Options{NoStartTLS: true}, "", "")
	b, _ := os.ReadFile(s.conf)
	conf := strings.Replace(string(b), "[queue]\ndir = ", "[queue]\ndir = \"\"\n# was ", 1)
	os.WriteFile(s.conf, []byte(conf), 0o600)
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 75, "does not offer STARTTLS")
	s.nothingSent()
}
