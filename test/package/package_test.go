//go:build interop

// Package pkgtest installs relaymail's .deb the way the README says, on a
// throwaway copy of this machine (see root_test.go: nothing on the machine
// itself changes), over whatever MTA that copy has, and sends through the
// installed /usr/sbin/sendmail with the real clients from Debian's
// packages, to Debian's Postfix as the smarthost (STARTTLS with a
// generated CA, SASL AUTH), checking what Postfix delivered: recipients,
// envelope sender, header and bytes. It also checks the package's files,
// modes and metadata, the queue commands, an unprivileged user, syslog
// through Debian's rsyslog, and what dpkg -r and dpkg -P leave behind.
//
// It runs as root (mount namespaces, overlayfs) with apt access, from make
// interop, which builds the packages first:
//
//	make package && go test -tags interop -count=1 -v ./test/package/
//
// $INTEROP_DEB names the .deb; by default the one in dist/.
package pkgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// findDeb returns the .deb to test: $INTEROP_DEB, or the only one for this
// machine's architecture in dist/.
func findDeb(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("INTEROP_DEB"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	dist := filepath.Join(filepath.Dir(file), "..", "..", "dist")
	debs, _ := filepath.Glob(filepath.Join(dist, "relaymail_*_"+runtime.GOARCH+".deb"))
	if len(debs) != 1 {
		t.Fatalf("want one relaymail .deb in %s, found %q\nhint: make package (or set INTEROP_DEB)", dist, debs)
	}
	return debs[0]
}

// needRoot skips, or under INTEROP_REQUIRE_ALL=1 fails, when the test
// cannot make its roots.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() == 0 {
		return
	}
	msg := "the package test needs root: it mounts an overlay of / in a private mount namespace"
	if os.Getenv("INTEROP_REQUIRE_ALL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// aptCache is where downloaded packages stay between runs.
func aptCache() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), ".apt")
}

// installDeb copies the .deb into r's /tmp and installs it as the README
// says (apt-get install ./file.deb), returning apt-get's output.
func installDeb(t *testing.T, r *root, deb string) string {
	t.Helper()
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	in := "/tmp/" + filepath.Base(deb)
	r.writeFile(in, b, 0o644)
	return r.aptInstall("./" + filepath.Base(deb))
}

// mtas lists the installed packages that provide mail-transport-agent.
func mtas(r *root) string {
	out, _ := r.run("", `dpkg-query -W -f '${db:Status-Abbrev} ${Package}: ${Provides}\n' | awk '/^ii/ && /mail-transport-agent/ {print $2}' | tr -d : | tr '\n' ' '`)
	return strings.TrimSpace(out)
}

// The message text every client sends: UTF-8, a line with one dot, one
// with two.
const bodyText = "Grüße from the package test — ünïcödé\n.\n..two dots\nlast line\n"

// attachment is every byte value and the sequences that end an SMTP
// message or a line.
func attachment() []byte {
	var b []byte
	for i := range 3000 {
		b = append(b, byte(i*7+i/256))
		if i%500 == 0 {
			b = append(b, "\r\n.\r\n\n.\n\r\x00"...)
		}
	}
	return b
}

const phpScript = `<?php
// mail(to, subject, text, headers[, params]) as applications call it.
$text = file_get_contents('/tmp/body.txt');
$headers = "From: Shop <shop@example.com>\r\nCc: " . $argv[3] . "\r\nBcc: " . $argv[4];
$ok = count($argv) > 5 ? mail($argv[1], $argv[2], $text, $headers, $argv[5]) : mail($argv[1], $argv[2], $text, $headers);
exit($ok ? 0 : 1);
`

// cronTab is a system crontab whose @reboot job mails its output to root
// (MAILTO is not set), which /etc/aliases sends on. No % in the command:
// cron turns it into a newline.
const cronTab = `SHELL=/bin/sh
@reboot root printf 'pkg cron job\nGrüße from the package test — ünïcödé\n.\n..two dots\nlast line\n'
`

// rsyslogConf adds, to Debian's rsyslog.conf (which writes mail.* to
// /var/log/mail.log), a file that shows each line's facility, severity
// and tag as rsyslog parsed them.
const rsyslogConf = `template(name="facility" type="string" string="%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg%\n")
mail.* action(type="omfile" file="/var/log/relaymail-facility.log" template="facility")
`

func TestPackage(t *testing.T) {
	needRoot(t)
	deb := findDeb(t)
	t.Logf("package: %s", deb)
	start := time.Now()
	mx := startPostfix(t, aptCache())

	host := newRoot(t, "host", aptCache())
	t.Logf("MTA before: %q", mtas(host))
	out := installDeb(t, host, deb)
	if i := strings.Index(out, "The following packages will be REMOVED"); i >= 0 {
		t.Logf("installing relaymail removed:%s", firstLine(out[i+len("The following packages will be REMOVED:"):]))
	}
	if got := mtas(host); got != "relaymail" {
		t.Fatalf("MTA after installing: %q, want relaymail alone", got)
	}
	// The clients, now that relaymail is the MTA their packages ask for:
	// none may bring another MTA or remove relaymail.
	clients := []string{"php-cli", "cron", "bsd-mailx", "s-nail", "mailutils", "mutt", "git-email", "libmailtools-perl", "rsyslog"}
	out = host.aptInstall(clients...)
	if strings.Contains(out, "REMOVED") || mtas(host) != "relaymail" {
		t.Fatalf("installing the clients changed the MTA (now %q):\n%s", mtas(host), out)
	}
	t.Logf("clients: %s", strings.TrimSpace(host.must("", `dpkg-query -W -f '${Package} ${Version}, ' "$@"`, clients...)))

	t.Run("files", func(t *testing.T) { checkFiles(t, host, deb) })
	t.Run("mail_alternative", func(t *testing.T) {
		// bsd-mailx, s-nail and mailutils came after relaymail: one of
		// them is /usr/bin/mail, relaymail's stays the lowest choice.
		q := host.must("", "update-alternatives --query mailx")
		if !strings.Contains(q, "Alternative: /usr/lib/relaymail/mail\nPriority: 5\n") || strings.Contains(q, "Value: /usr/lib/relaymail/mail\n") {
			t.Errorf("the mailx alternatives:\n%s", q)
		}
	})

	// Configure as the README says: edit /etc/sendmail.conf, then --check.
	host.writeFile("/etc/relaymail-test-ca.pem", mx.caPEM, 0o644)
	conf := relayConf(`aliases_file = "/etc/aliases"`, mx.port, `tls = "starttls"`)
	host.must("root: cronops@example.org\npostmaster: root\n", "cat >/etc/aliases")
	host.must(conf, "cat >/etc/sendmail.conf")
	if got := host.must("", "stat -c '%a %U:%G' /etc/sendmail.conf"); got != "640 root:relaymail\n" {
		t.Errorf("/etc/sendmail.conf after editing: %q, want 640 root:relaymail", got)
	}
	check := host.must("", "sendmail --check 2>&1")
	t.Logf("sendmail --check:\n%s", check)
	if strings.Contains(check, mxPassword) {
		t.Errorf("sendmail --check printed the password")
	}
	if out := host.must("", "newaliases 2>&1; echo rc=$?"); !strings.HasSuffix(out, "rc=0\n") {
		t.Errorf("newaliases: %s", out)
	}
	host.writeFile("/tmp/body.txt", []byte(bodyText), 0o644)
	host.writeFile("/tmp/attach.bin", attachment(), 0o644)
	host.writeFile("/tmp/mail.php", []byte(phpScript), 0o644)

	// rsyslog as Debian configures it, plus the facility file.
	host.writeFile("/etc/rsyslog.d/relaymail-test.conf", []byte(rsyslogConf), 0o644)
	host.start("exec rsyslogd -n -iNONE")
	waitFile(t, host.path("/dev/log"))

	sender := "root@app.example.test"
	t.Run("php_mail", func(t *testing.T) {
		host.must("", "php /tmp/mail.php php1@example.org 'pkg php default Grüße' php1cc@example.org php1bcc@example.net")
		c := wantDelivery(t, mx.wait(t, "pkg php default", 3), sender, "php1@example.org", "php1cc@example.org", "php1bcc@example.net")
		wantText(t, c, bodyText)
	})
	t.Run("php_mail_f", func(t *testing.T) {
		host.must("", "php /tmp/mail.php php2@example.org 'pkg php -f Grüße' php2cc@example.org php2bcc@example.net -fbounce@example.com")
		c := wantDelivery(t, mx.wait(t, "pkg php -f", 3), "bounce@example.com", "php2@example.org", "php2cc@example.org", "php2bcc@example.net")
		wantText(t, c, bodyText)
	})
	t.Run("cron", func(t *testing.T) {
		host.writeFile("/etc/cron.d/relaymail-test", []byte(cronTab), 0o644)
		host.start("exec cron -f")
		copies := mx.wait(t, "printf 'pkg cron job", 1)
		c := wantDelivery(t, copies, sender, "cronops@example.org")
		if got := c.header.Get("From"); got != "root (Cron Daemon)" {
			t.Errorf("From %q, want cron's root (Cron Daemon)", got)
		}
		wantText(t, c, "pkg cron job\n"+bodyText)
	})
	t.Run("bsd-mailx", func(t *testing.T) {
		host.must("", "bsd-mailx -s 'pkg bsd-mailx Grüße' -c mailxcc@example.org mailx1@example.org </tmp/body.txt")
		c := wantDelivery(t, mx.wait(t, "pkg bsd-mailx", 2), sender, "mailx1@example.org", "mailxcc@example.org")
		wantText(t, c, bodyText)
	})
	t.Run("s-nail", func(t *testing.T) {
		host.must("", "s-nail -s 'pkg s-nail Grüße' -a /tmp/attach.bin snail1@example.org </tmp/body.txt")
		c := wantDelivery(t, mx.wait(t, "pkg s-nail", 1), sender, "snail1@example.org")
		wantText(t, c, bodyText)
		wantAttachment(t, c)
	})
	t.Run("mailutils", func(t *testing.T) {
		// -n: GNU mail also reads /etc/mail.rc, which is bsd-mailx's,
		// and its "set dot" would end the text at the line with one dot.
		host.must("", "mail.mailutils -n -s 'pkg mailutils Grüße' -A /tmp/attach.bin mu1@example.org </tmp/body.txt")
		copies := mx.wait(t, "pkg mailutils", 1)
		// GNU mail passes -f root@<its host name> and writes that From.
		from, err := copies[0].header.AddressList("From")
		if err != nil || len(from) != 1 || !strings.HasPrefix(from[0].Address, "root@") {
			t.Fatalf("From %q: %v", copies[0].header.Get("From"), err)
		}
		c := wantDelivery(t, copies, from[0].Address, "mu1@example.org")
		wantText(t, c, bodyText)
		wantAttachment(t, c)
	})
	t.Run("mutt", func(t *testing.T) {
		host.must("", "mutt -F /dev/null -s 'pkg mutt Grüße' -a /tmp/attach.bin -- mutt1@example.org </tmp/body.txt")
		c := wantDelivery(t, mx.wait(t, "pkg mutt", 1), sender, "mutt1@example.org")
		wantText(t, c, bodyText)
		wantAttachment(t, c)
	})
	t.Run("git_send_email", func(t *testing.T) {
		host.must(bodyText, `set -e
rm -rf /tmp/repo /tmp/patches
git init -q /tmp/repo
cd /tmp/repo
cat >greeting.txt
git add greeting.txt
git -c user.name=Dev -c user.email=dev@example.com commit -q -m 'pkg git Grüße'
git format-patch -q -1 -o /tmp/patches
git -c user.name=Dev -c user.email=dev@example.com send-email --quiet --confirm=never --suppress-cc=all \
	--to=git1@example.org --cc=gitcc@example.org /tmp/patches/*.patch`)
		c := wantDelivery(t, mx.wait(t, "pkg git", 2), sender, "git1@example.org", "gitcc@example.org")
		if !bytes.Contains(c.data, []byte("+Grüße from the package test")) {
			t.Errorf("the patch did not arrive intact:\n%s", c.data)
		}
	})
	daemonMsg := "From: Daemon <daemon@example.com>\nTo: d1@example.org\nCc: d1cc@example.org\nBcc: d1bcc@example.net\nSubject: pkg sendmail -oi -t Grüße\n\n" + bodyText
	t.Run("sendmail_oi_t", func(t *testing.T) {
		host.must(daemonMsg, "sendmail -oi -t")
		c := wantDelivery(t, mx.wait(t, "pkg sendmail -oi -t", 3), sender, "d1@example.org", "d1cc@example.org", "d1bcc@example.net")
		wantText(t, c, bodyText)
	})
	t.Run("unprivileged_user", func(t *testing.T) {
		host.must("", "useradd -m lowuser")
		if out, err := host.run("", "runuser -u lowuser -- cat /etc/sendmail.conf"); err == nil || strings.Contains(out, mxPassword) {
			t.Errorf("lowuser could read /etc/sendmail.conf: %v\n%s", err, out)
		}
		host.must(strings.Replace(daemonMsg, "pkg sendmail -oi -t", "pkg lowuser", 1), "cd / && runuser -u lowuser -- sendmail -oi -t")
		c := wantDelivery(t, mx.wait(t, "pkg lowuser", 3), "lowuser@app.example.test", "d1@example.org", "d1cc@example.org", "d1bcc@example.net")
		wantText(t, c, bodyText)
		if out := host.must("", "cd / && runuser -u lowuser -- mailq"); !strings.Contains(out, "Mail queue is empty") {
			t.Errorf("mailq as lowuser: %q", out)
		}
	})
	t.Run("queue", func(t *testing.T) {
		host.must("Subject: pkg queued Grüße\n\n"+bodyText, "sendmail -odq -oi q1@example.org")
		list := host.must("", "mailq")
		t.Logf("mailq:\n%s", list)
		if !strings.Contains(list, "q1@example.org") {
			t.Errorf("mailq does not list the queued message")
		}
		if len(deliveredWith(mx.mailbox(t), "pkg queued")) > 0 {
			t.Errorf("-odq delivered at once")
		}
		host.must("", "sendmail -q")
		c := wantDelivery(t, mx.wait(t, "pkg queued", 1), sender, "q1@example.org")
		wantText(t, c, bodyText)
		if list := host.must("", "mailq"); !strings.Contains(list, "Mail queue is empty") {
			t.Errorf("mailq after sendmail -q:\n%s", list)
		}
	})
	t.Run("syslog", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			maillog, _ := os.ReadFile(host.path("/var/log/mail.log"))
			fac, _ := os.ReadFile(host.path("/var/log/relaymail-facility.log"))
			okLog := bytes.Contains(maillog, []byte("relaymail[")) && bytes.Contains(maillog, []byte("to=<q1@example.org>"))
			okFac := bytes.Contains(fac, []byte("mail.info relaymail[")) && bytes.Contains(fac, []byte("status=sent"))
			if okLog && okFac {
				t.Logf("/var/log/mail.log ends:\n%s", tail(string(maillog), 3))
				if bytes.Contains(maillog, []byte(mxPassword)) {
					t.Errorf("the password reached syslog")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no relaymail line with facility mail, tag relaymail:\nmail.log:\n%s\nfacility log:\n%s", maillog, fac)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("rate_limited_smarthost", func(t *testing.T) { checkRateLimit(t, host, mx) })
	t.Logf("install, configure, ten clients and the rate limits: %v", time.Since(start).Round(time.Second))

	t.Run("remove_and_purge", func(t *testing.T) { checkRemoval(t, deb, mx) })
}

// checkRateLimit sends through Postfix's rate-limited port (throttleRate
// messages per 10 s from one client, then "450 4.7.1 Error: too much mail
// from 127.0.0.1"): twelve messages from a shell loop with rate set to
// that limit all arrive, once, without Postfix ever refusing one; then
// eight more with no rate set meet Postfix's refusal, and relaymail
// pauses, logs it, and retries until all arrive.
func checkRateLimit(t *testing.T, host *root, mx *postfix) {
	conf := func(name, extra string) string {
		path := "/etc/relaymail-" + name + ".conf"
		host.must(relayConf("", mx.throttlePort, "throttle_pause = \"3s\"\n"+extra+"\n[queue]\ndir = \"/var/spool/relaymail-"+name+"\""),
			`cat >"$1" && chgrp relaymail "$1" && chmod 640 "$1" && install -d -m 2770 -g relaymail "$2"`,
			path, "/var/spool/relaymail-"+name)
		return path
	}
	refusals := func() int { return strings.Count(mx.log(), "Message delivery request rate limit exceeded") }

	limited := conf("limited", fmt.Sprintf("rate = \"%d/10s\"", throttleRate))
	start := time.Now()
	out := host.must("", `for i in $(seq 1 12); do printf 'Subject: pkg rate %s\n\nmessage %s\n' "$i" "$i" | sendmail -C "$1" -oi rate@example.org || exit 1; done 2>&1`, limited)
	if n := strings.Count(out, "rate limit 5/10s for 127.0.0.1:"); n < 5 {
		t.Errorf("%d of the sends said they wait for the rate limit:\n%s", n, out)
	}
	copies := mx.wait(t, "pkg rate ", 12)
	t.Logf("12 messages at %d per 10 s arrived in %v", throttleRate, time.Since(start).Round(100*time.Millisecond))
	seen := map[string]bool{}
	for _, c := range copies {
		subject, _ := c.header.Subject()
		if seen[subject] {
			t.Errorf("%q arrived twice", subject)
		}
		seen[subject] = true
	}
	if n := refusals(); n != 0 {
		t.Errorf("Postfix refused %d messages for going too fast", n)
	}

	unlimited := conf("unlimited", "")
	start = time.Now()
	host.must("", `for i in $(seq 1 8); do printf 'Subject: pkg burst %s\n\nmessage %s\n' "$i" "$i" | sendmail -C "$1" -odq -oi burst@example.org || exit 1; done`, unlimited)
	deadline := time.Now().Add(90 * time.Second)
	for len(deliveredWith(mx.mailbox(t), "pkg burst ")) < 8 && time.Now().Before(deadline) {
		host.run("", `sendmail -C "$1" -q`, unlimited)
		time.Sleep(time.Second)
	}
	mx.wait(t, "pkg burst ", 8)
	t.Logf("8 messages without a rate arrived in %v; Postfix refused %d MAIL commands", time.Since(start).Round(100*time.Millisecond), refusals())
	if refusals() == 0 {
		t.Errorf("Postfix never said too many messages: the test did not test the pause")
	}
	maillog, _ := os.ReadFile(host.path("/var/log/mail.log"))
	// Postfix says "450 4.7.1 Error: too much mail from 127.0.0.1".
	if !bytes.Contains(maillog, []byte("status=throttled")) || !bytes.Contains(maillog, []byte("asked us to slow down (450 4.7.1 Error: too much mail from")) {
		t.Errorf("mail.log does not show the pause:\n%s", tail(string(maillog), 10))
	}
}

// smtplibScript is Python's smtplib as Django and scripts use it: two
// messages on one connection, one after STARTTLS, and a client that goes
// away in the middle of DATA.
const smtplibScript = `import smtplib, ssl, sys
from email.message import EmailMessage
port, ca = int(sys.argv[1]), sys.argv[2]
def msg(subject, to):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "app@example.com", to, subject
    m.set_content("Grüße from smtplib\n")
    return m
with smtplib.SMTP("localhost", port) as s:
    s.send_message(msg("pkg smtplib one", "py1@example.org"))
    s.send_message(msg("pkg smtplib two", "py2@example.org"))
with smtplib.SMTP("localhost", port) as s:
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.send_message(msg("pkg smtplib tls", "py3@example.org"))
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo(); s.mail("app@example.com"); s.rcpt("py4@example.org")
s.putcmd("data"); print(s.getreply())
s.send(b"Subject: pkg smtplib cut\r\n\r\nhalf a mess")
s.sock.close()
`

// checkListener runs the installed sendmail -bd in r (on a free port, with
// STARTTLS) and sends to it with Python's smtplib: every message arrives
// once, the one cut in DATA never, and SIGTERM stops the listener.
func checkListener(t *testing.T, r *root, mx *postfix) {
	r.aptInstall("python3")
	ca, cert, key, err := smarthost.ServerCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	r.writeFile("/etc/relaymail-listen-ca.pem", ca, 0o644)
	r.writeFile("/etc/relaymail-listen.pem", cert, 0o640)
	r.writeFile("/etc/relaymail-listen.key", key, 0o640)
	// Port 25 with the default addresses, as the Python script
	// (smtplib.SMTP("localhost", 25)), unless this machine's MTA has it.
	port, addresses := 25, ""
	if c, err := dialTCP(25); err == nil {
		c.Close()
		port = freePort(t)
		addresses = fmt.Sprintf("addresses = [\"127.0.0.1:%d\"]\n", port)
		t.Logf("port 25 is taken here: the listener uses %d", port)
	}
	r.must(fmt.Sprintf("\n[listen]\n%stls_cert_file = \"/etc/relaymail-listen.pem\"\ntls_key_file = \"/etc/relaymail-listen.key\"\n", addresses), "cat >>/etc/sendmail.conf")
	l := r.start("exec sendmail -bd -q1m")
	waitPort(t, port, func() string { return "" })
	r.writeFile("/tmp/send_smtp.py", []byte(smtplibScript), 0o644)
	out := r.must("", "python3 /tmp/send_smtp.py \"$1\" /etc/relaymail-listen-ca.pem 2>&1", strconv.Itoa(port))
	t.Logf("smtplib: %s", strings.TrimSpace(out))
	for _, tt := range []struct{ subject, rcpt string }{
		{"pkg smtplib one", "py1@example.org"}, {"pkg smtplib two", "py2@example.org"}, {"pkg smtplib tls", "py3@example.org"},
	} {
		c := wantDelivery(t, mx.wait(t, tt.subject, 1), "app@example.com", tt.rcpt)
		wantText(t, c, "Grüße from smtplib\n")
	}
	time.Sleep(500 * time.Millisecond)
	if cut := deliveredWith(mx.mailbox(t), "pkg smtplib cut"); len(cut) != 0 {
		t.Errorf("the message cut in DATA was delivered")
	}
	if left := r.must("", "find /var/spool/relaymail -name '*.env' | wc -l"); strings.TrimSpace(left) != "0" {
		t.Errorf("%s messages left in the spool", strings.TrimSpace(left))
	}
	l.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := dialTCP(port); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sendmail -bd still listens 20 s after SIGTERM")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relayConf is a relaymail config for the Postfix smarthost on port,
// with top-level lines top and lines after the login (more [smarthost]
// keys, then other tables).
func relayConf(top string, port int, after string) string {
	return fmt.Sprintf(`# written by the package test
hostname = "app.example.test"
%s

[smarthost]
host = "127.0.0.1"
port = %d
tls_server_name = "localhost"
ca_file = "/etc/relaymail-test-ca.pem"
username = %q
password = %q
%s
`, top, port, mxUser, mxPassword, after)
}

// checkFiles checks what the package installed.
func checkFiles(t *testing.T, r *root, deb string) {
	got := r.must("", `stat -c '%n %a %U:%G %F' /usr/sbin/sendmail /etc/sendmail.conf /var/spool/relaymail /var/spool/relaymail/failed /var/spool/relaymail/run \
	/usr/share/man/man8/sendmail.8.gz /usr/share/man/man5/sendmail.conf.5.gz /lib/systemd/system/relaymail-queue.service /lib/systemd/system/relaymail-queue.timer`)
	want := `/usr/sbin/sendmail 2755 root:relaymail regular file
/etc/sendmail.conf 640 root:relaymail regular file
/var/spool/relaymail 770 root:relaymail directory
/var/spool/relaymail/failed 770 root:relaymail directory
/var/spool/relaymail/run 770 root:relaymail directory
/usr/share/man/man8/sendmail.8.gz 644 root:root regular file
/usr/share/man/man5/sendmail.conf.5.gz 644 root:root regular file
/lib/systemd/system/relaymail-queue.service 644 root:root regular file
/lib/systemd/system/relaymail-queue.timer 644 root:root regular file
`
	if got != want {
		t.Errorf("installed files:\n%s\nwant:\n%s", got, want)
	}
	links := r.must("", `for f in /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do echo "$f -> $(readlink -f $f)"; done`)
	if want := "/usr/lib/sendmail -> /usr/sbin/sendmail\n/usr/bin/mailq -> /usr/sbin/sendmail\n/usr/bin/newaliases -> /usr/sbin/sendmail\n"; links != want {
		t.Errorf("links:\n%s\nwant:\n%s", links, want)
	}
	meta := r.must("", `dpkg-query -W -f 'Provides: ${Provides}\nConflicts: ${Conflicts}\nReplaces: ${Replaces}\nConffiles:${Conffiles}\n' relaymail`)
	for _, w := range []string{"Provides: mail-transport-agent\n", "Conflicts: mail-transport-agent\n", "Replaces: mail-transport-agent\n", " /etc/sendmail.conf "} {
		if !strings.Contains(meta, w) {
			t.Errorf("package metadata lacks %q:\n%s", w, meta)
		}
	}
	ver := r.must("", "dpkg-query -W -f '${Version}' relaymail")
	if v := r.must("", "sendmail --version"); !strings.HasPrefix(v, "relaymail ") || !strings.Contains(ver, strings.TrimSuffix(strings.Fields(v)[1], "-dirty")) {
		t.Errorf("sendmail --version says %q; the package is %s", v, ver)
	}
	if out, err := r.run("", "man -w sendmail.conf && man -w 8 sendmail && systemd-analyze verify /lib/systemd/system/relaymail-queue.timer /lib/systemd/system/relaymail-queue.service /lib/systemd/system/relaymail-listen.socket /lib/systemd/system/relaymail-listen.service"); err != nil {
		t.Errorf("man pages or systemd units: %v\n%s", err, out)
	}
	t.Logf("package %s installed; deb is %d bytes", ver, fileSize(t, deb))
}

// checkRemoval installs the package over Postfix in a root of its own,
// queues a message, edits the config, reinstalls (the edit must stay),
// then removes (queue, config and group stay) and purges (all go).
func checkRemoval(t *testing.T, deb string, mx *postfix) {
	r := newRoot(t, "remove", aptCache())
	r.must("postfix postfix/main_mailer_type select No configuration\n", "debconf-set-selections")
	r.aptInstall("postfix")
	out := installDeb(t, r, deb)
	if !strings.Contains(out, "postfix") || mtas(r) != "relaymail" {
		t.Errorf("installing over Postfix: the MTA is now %q; apt-get said:\n%s", mtas(r), out)
	}
	if v := r.must("", "/usr/sbin/sendmail --version"); !strings.HasPrefix(v, "relaymail ") {
		t.Errorf("/usr/sbin/sendmail --version: %q", v)
	}

	// No other mail command here: /usr/bin/mail is relaymail's, and
	// "echo body | mail -s subject -a report.pdf root" delivers (issue 11).
	if got := r.must("", `readlink -f /usr/bin/mail; update-alternatives --query mailx | sed -n 's/^Value: //p'`); got != "/usr/sbin/sendmail\n/usr/lib/relaymail/mail\n" {
		t.Errorf("/usr/bin/mail and the mailx alternative:\n%s", got)
	}
	r.writeFile("/etc/relaymail-test-ca.pem", mx.caPEM, 0o644)
	r.must(relayConf("", mx.port, "[aliases]\nroot = \"mailroot@example.org\""), "cat >/etc/sendmail.conf")
	r.writeFile("/tmp/report.pdf", attachment(), 0o644)
	r.must("body\n", "cd /tmp && mail -s 'pkg mail command' -a report.pdf root")
	c := wantDelivery(t, mx.wait(t, "pkg mail command", 1), "root@app.example.test", "mailroot@example.org")
	wantText(t, c, "body\n")
	if _, att := parts(t, c); !bytes.Equal(att["report.pdf"], attachment()) {
		t.Errorf("report.pdf: %d bytes arrived, want its %d", len(att["report.pdf"]), len(attachment()))
	}
	t.Run("listener_smtplib", func(t *testing.T) { checkListener(t, r, mx) })

	r.must("\n# kept across upgrades\n", "cat >>/etc/sendmail.conf")
	confBefore := r.must("", "cat /etc/sendmail.conf")
	r.must("", "dpkg -i /tmp/"+filepath.Base(deb))
	if got := r.must("", "cat /etc/sendmail.conf"); got != confBefore {
		t.Errorf("reinstalling changed the edited /etc/sendmail.conf")
	}
	r.must("Subject: waiting\n\nqueued before removal\n", "sendmail -odq -oi someone@example.org")
	queued := r.must("", "find /var/spool/relaymail -type f ! -path '*/run/*' | sort")
	if queued == "" {
		t.Fatal("-odq queued nothing")
	}

	r.must("", "dpkg -r relaymail")
	state := func() string {
		return r.must("", `for f in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases /usr/bin/mail /etc/sendmail.conf /var/spool/relaymail; do
	if [ -e "$f" ] || [ -L "$f" ]; then echo "$f present"; else echo "$f absent"; fi
done
getent group relaymail >/dev/null && echo "group present" || echo "group absent"
dpkg-query -W -f '${db:Status-Abbrev}\n' relaymail 2>/dev/null || echo "not known to dpkg"`)
	}
	want := `/usr/sbin/sendmail absent
/usr/lib/sendmail absent
/usr/bin/mailq absent
/usr/bin/newaliases absent
/usr/bin/mail absent
/etc/sendmail.conf present
/var/spool/relaymail present
group present
rc 
`
	if got := state(); got != want {
		t.Errorf("after dpkg -r:\n%s\nwant:\n%s", got, want)
	}
	if got := r.must("", "find /var/spool/relaymail -type f ! -path '*/run/*' | sort"); got != queued {
		t.Errorf("dpkg -r changed the queue: was\n%s\nis\n%s", queued, got)
	}
	if got := r.must("", "cat /etc/sendmail.conf"); got != confBefore {
		t.Errorf("dpkg -r changed /etc/sendmail.conf")
	}

	r.must("", "dpkg -P relaymail")
	want = `/usr/sbin/sendmail absent
/usr/lib/sendmail absent
/usr/bin/mailq absent
/usr/bin/newaliases absent
/usr/bin/mail absent
/etc/sendmail.conf absent
/var/spool/relaymail absent
group absent
not known to dpkg
`
	if got := state(); got != want {
		t.Errorf("after dpkg -P:\n%s\nwant:\n%s", got, want)
	}
}

func wantText(t *testing.T, d delivered, want string) {
	t.Helper()
	texts, _ := parts(t, d)
	if len(texts) == 0 || strings.TrimRight(texts[0], "\n") != strings.TrimRight(want, "\n") {
		t.Errorf("text %q, want %q\nthe message:\n%s", texts, want, d.data)
	}
}

func wantAttachment(t *testing.T, d delivered) {
	t.Helper()
	_, att := parts(t, d)
	if !bytes.Equal(att["attach.bin"], attachment()) {
		t.Errorf("attachment attach.bin: %d bytes arrived, want its %d bytes intact (attachments: %d)", len(att["attach.bin"]), len(attachment()), len(att))
	}
}

func deliveredWith(ds []delivered, token string) []delivered {
	var out []delivered
	for _, d := range ds {
		if s, _ := d.header.Subject(); strings.Contains(s, token) {
			out = append(out, d)
		}
	}
	return out
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 20 s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestRPMAndAPK checks the other two packages' metadata and files: the rpm
// with Debian's rpm tool in a root, the apk (gzip streams of tar) with tar,
// as neither can be installed here.
func TestRPMAndAPK(t *testing.T) {
	needRoot(t)
	deb := findDeb(t)
	dist := filepath.Dir(deb)
	rpms, _ := filepath.Glob(filepath.Join(dist, "relaymail-*.rpm"))
	apks, _ := filepath.Glob(filepath.Join(dist, "relaymail_*.apk"))
	if len(rpms) != 1 || len(apks) != 1 {
		t.Fatalf("want one rpm and one apk in %s, found %q and %q\nhint: make package", dist, rpms, apks)
	}

	t.Run("rpm", func(t *testing.T) {
		r := newRoot(t, "rpm", aptCache())
		r.aptInstall("rpm")
		b, err := os.ReadFile(rpms[0])
		if err != nil {
			t.Fatal(err)
		}
		r.writeFile("/tmp/relaymail.rpm", b, 0o644)
		q := func(args string) string { return r.must("", "rpm -qp "+args+" /tmp/relaymail.rpm 2>/dev/null") }
		files := q(`--qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]'`)
		for _, want := range []string{
			`-rwxr-sr-x root:relaymail /usr/sbin/sendmail\n`,
			`-rw-r----- root:relaymail /etc/sendmail.conf\n`,
			`drwxrwx--- root:relaymail /var/spool/relaymail\n`,
			`l\S{9} root:root /usr/lib/sendmail\n`,
			`l\S{9} root:root /usr/bin/mailq\n`,
			`-rw-r--r-- root:root /usr/lib/systemd/system/relaymail-queue.timer\n`,
			`-rw-r--r-- root:root /usr/share/man/man8/sendmail.8.gz\n`,
		} {
			if !regexp.MustCompile(want).MatchString(files) {
				t.Errorf("rpm lacks %q; it holds:\n%s", want, files)
			}
		}
		if got := q("--configfiles"); !strings.Contains(got, "/etc/sendmail.conf\n") {
			t.Errorf("rpm config files: %q, want /etc/sendmail.conf", got)
		}
		if got := q(`--qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]'`); !strings.Contains(got, "cn /etc/sendmail.conf\n") {
			t.Errorf("/etc/sendmail.conf is not %%config(noreplace):\n%s", got)
		}
		provides := q("--provides")
		for _, want := range []string{"MTA", "smtpdaemon", "/usr/sbin/sendmail"} {
			if !strings.Contains(provides, want) {
				t.Errorf("rpm does not provide %s: %q", want, provides)
			}
		}
		if scripts := q("--scripts"); !strings.Contains(scripts, "groupadd --system relaymail") {
			t.Errorf("rpm scripts do not create the group:\n%s", scripts)
		}
	})

	t.Run("apk", func(t *testing.T) {
		list, err := exec.Command("tar", "-tvzf", apks[0], "--ignore-zeros").Output()
		if err != nil {
			t.Fatalf("tar -t %s: %v", apks[0], err)
		}
		for _, want := range []string{
			`-rwxr-sr-x root/relaymail +\d+ .* usr/sbin/sendmail\n`,
			`-rw-r----- root/relaymail +\d+ .* etc/sendmail.conf\n`,
			`drwxrwx--- root/relaymail +0 .* var/spool/relaymail/\n`,
			`-rwxr-xr-x root/root +\d+ .* etc/periodic/15min/relaymail\n`,
			`usr/lib/sendmail -> /usr/sbin/sendmail\n`,
		} {
			if !regexp.MustCompile(want).Match(list) {
				t.Errorf("apk lacks %s; it holds:\n%s", want, list)
			}
		}
		info, err := exec.Command("tar", "-xOzf", apks[0], "--ignore-zeros", ".PKGINFO").Output()
		if err != nil {
			t.Fatalf("tar -x .PKGINFO: %v", err)
		}
		// Every .PKGINFO line is "key = value"; the version is apk's.
		for _, line := range strings.Split(strings.TrimSpace(string(info)), "\n") {
			if !regexp.MustCompile(`^[a-z_]+ = \S`).MatchString(line) {
				t.Errorf(".PKGINFO line %q is not key = value", line)
			}
		}
		if !regexp.MustCompile(`(?m)^pkgver = [0-9]+(\.[0-9]+)*(_(git|p)[0-9]+)?(-r[0-9]+)?$`).Match(info) {
			t.Errorf(".PKGINFO version is not apk's form:\n%s", info)
		}
		if !strings.Contains(string(info), "provides = cmd:sendmail\n") {
			t.Errorf(".PKGINFO does not provide cmd:sendmail:\n%s", info)
		}
	})
}
