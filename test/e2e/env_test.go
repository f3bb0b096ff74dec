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

// TestEnvironmentOnly: a container with no config file, configured by
// RELAYMAIL_* variables: cron's mail to root and PHP's mail() reach the
// admin through the smarthost with STARTTLS and AUTH, the password from a
// file, sent as the relay's account.
func TestEnvironmentOnly(t *testing.T) {
	srv := smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
	dir := t.TempDir()
	ca, secret := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "smtp-password")
	must(t, srv.WriteCA(ca))
	must(t, os.WriteFile(secret, []byte(password+"\n"), 0o600))
	env := []string{
		fmt.Sprintf("RELAYMAIL_SMARTHOST=smtp://%s@127.0.0.1:%d", user, srv.Port()),
		"RELAYMAIL_PASSWORD_FILE=" + secret,
		"RELAYMAIL_CA_FILE=" + ca,
		"RELAYMAIL_HOSTNAME=app01.example.com",
		"RELAYMAIL_DEFAULT_RECIPIENT=admin@example.com",
		"RELAYMAIL_REWRITE_SENDER=app01@example.com",
		"RELAYMAIL_REWRITE_FROM=app01@example.com",
		"RELAYMAIL_QUEUE_DIR=" + filepath.Join(dir, "spool"),
	}
	const msg = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@app01> backup\n\nok\n"
	o := runBinaryEnv(t, strings.NewReader(msg), env, "-C", filepath.Join(dir, "no-such.conf"), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
	wantCode(t, o, 0, "")
	msgs, err := srv.WaitMessages(1, 10*time.Second)
	must(t, err)
	wantEnvelope(t, msgs[0], "app01@example.com", "admin@example.com")
	if got := header(msgs[0].Data, "From"); got != `"Cron Daemon" <app01@example.com>` {
		t.Errorf("From = %q, want the relay's account", got)
	}
	if msgs[0].AuthUser != user || !msgs[0].TLS {
		t.Errorf("arrived with AUTH %q, TLS %v", msgs[0].AuthUser, msgs[0].TLS)
	}

	// PHP's mail(), as www-data: sendmail -t -i, To root, From the local
	// account; it reaches the admin from the relay's account too.
	const php = "To: root\r\nSubject: order 42\r\nFrom: Shop <www-data@localhost>\r\n\r\nthanks\r\n"
	o = runBinaryEnv(t, strings.NewReader(php), env, "-C", filepath.Join(dir, "no-such.conf"), "-t", "-i")
	wantCode(t, o, 0, "")
	msgs, err = srv.WaitMessages(2, 10*time.Second)
	must(t, err)
	wantEnvelope(t, msgs[1], "app01@example.com", "admin@example.com")
	if got := header(msgs[1].Data, "From"); got != `"Shop" <app01@example.com>` {
		t.Errorf("From = %q, want the relay's account", got)
	}
	if got := header(msgs[1].Data, "Reply-To"); got != "" {
		t.Errorf("Reply-To = %q, want none for a local From", got)
	}
	waitRunners(filepath.Join(dir, "spool"))
}
