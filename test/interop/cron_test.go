//go:build interop

package interop

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// cronMessage is what Debian's cron 3.0pl1-162 wrote to sendmail for a
// job of root with MAILTO=root, as TestCronDaemon recorded it.
const cronMessage = "From: root (Cron Daemon)\n" +
	"To: root\n" +
	"Subject: Cron <root@app01> /usr/local/bin/backup --quiet\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=UTF-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"X-Cron-Env: <MAILTO=root>\n" +
	"X-Cron-Env: <SHELL=/bin/sh>\n" +
	"X-Cron-Env: <HOME=/root>\n" +
	"X-Cron-Env: <PATH=/usr/bin:/bin>\n" +
	"X-Cron-Env: <LOGNAME=root>\n" +
	"\n" + body

// TestCronInvocation runs relaymail with exactly the argv of Debian's cron
// (the config comes from $SENDMAIL_CONF, since cron passes no -C) and the
// message cron writes: unqualified From and To, 8-bit body, no Date or
// Message-ID.
func TestCronInvocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, smarthost.Options{}, "cron@example.com", "\n[aliases]\nroot = \"ops@example.net\"\n")
	args := []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"}
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(cronMessage)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root", "LOGNAME=root", "SHELL=/bin/sh", "SENDMAIL_CONF=" + h.conf}
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("sendmail %q: %v; output:\n%s", args, err, out)
	}
	m := h.one()
	t.Logf("smarthost saw %q", mailEvents(h.srv))
	check(t, call{argv: append([]string{binary}, args...), stdin: []byte(cronMessage)}, m, want{
		from: "cron@example.com", rcpts: []string{"ops@example.net"}, body: body,
		headers: map[string]string{"From": "root (Cron Daemon)", "To": "root"},
	})
	if m.MailOpts.Body != "8BITMIME" {
		t.Errorf("MAIL FROM BODY=%q, want 8BITMIME (cron gave -B8BITMIME)", m.MailOpts.Body)
	}
}

// sbinWrapper is the start of a script run as sh -c inside "unshare -m
// --propagation private", so every mount it makes vanishes with the
// namespace and the machine's /usr/sbin/sendmail is never touched. It
// expects $W, a private directory, and $WRAP, the wrapper to serve as
// /usr/sbin/sendmail. /usr/sbin becomes a tmpfs holding links to the real
// entries (reached through a bind mount of the original) and the wrapper
// as sendmail: Debian's cron and the mail libraries' defaults name
// /usr/sbin/sendmail, and bind-mounting over it needs a file there, which
// a machine without an MTA lacks.
const sbinWrapper = `O=$(mktemp -d "$W/sbin.orig.XXXXXX")
mount --bind /usr/sbin "$O"
mount -t tmpfs -o mode=0755 tmpfs /usr/sbin
for f in "$O"/*; do
	n=${f##*/}
	[ "$n" = sendmail ] || ln -s "$f" "/usr/sbin/$n"
done
cp "$WRAP" /usr/sbin/sendmail
chmod 0755 /usr/sbin/sendmail
`

// cronNamespace runs cron with sbinWrapper's /usr/sbin. Arguments: a
// private directory, the cron binary, the wrapper to serve as
// /usr/sbin/sendmail, the crontab.
//
//   - /var/spool gets a tmpfs with root's crontab in cron/crontabs; /etc/cron.d
//     and /etc/crontab are hidden, so no system job mails during the test.
//   - /run gets a tmpfs: the pid file goes there, and without
//     /run/crond.reboot cron runs @reboot jobs at once.
const cronNamespace = `set -eu
W=$1 CRON=$2 WRAP=$3 CRONTAB=$4
` + sbinWrapper + `mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/spool
mkdir -p /var/spool/cron/crontabs
chmod 1730 /var/spool/cron/crontabs
cp "$CRONTAB" /var/spool/cron/crontabs/root
chmod 0600 /var/spool/cron/crontabs/root
if [ -d /etc/cron.d ]; then mount -t tmpfs -o mode=0755 tmpfs /etc/cron.d; fi
if [ -e /etc/crontab ]; then mount --bind /dev/null /etc/crontab; fi
exec "$CRON" -f -L 15
`

// TestCronDaemon runs Debian's cron 3.0pl1 for real (cron -f -L 15) with a
// crontab for root holding an @reboot job and an every-minute job, both
// with output, and MAILTO=root. It takes up to a minute (30 s on average):
// the every-minute job waits for the next minute boundary. cron calls
//
//	/usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root
//
// once per job with output, and writes From: root (Cron Daemon), To: root,
// Subject: Cron <root@host> <command>, MIME headers (charset UTF-8, 8bit)
// and one X-Cron-Env per variable; no Date or Message-ID.
func TestCronDaemon(t *testing.T) {
	t.Parallel()
	cron := needClient(t, "cron-daemon")
	h := newHarness(t, smarthost.Options{}, "cron@example.com", "\n[aliases]\nroot = \"ops@example.net\"\n")
	crontab := filepath.Join(h.dir, "crontab")
	// No % in the commands: cron turns it into a newline.
	const tab = "MAILTO=root\n" +
		"@reboot printf 'reboot job: Grüße — ünïcödé\\n.\\n..two dots\\nlast line\\n'\n" +
		"* * * * * printf 'minute job: Grüße\\n.\\nlast line\\n'\n"
	if err := os.WriteFile(crontab, []byte(tab), 0o600); err != nil {
		t.Fatal(err)
	}
	sendmailBefore := systemSendmail()

	cmd := exec.Command("unshare", "-m", "--propagation", "private", "/bin/sh", "-c", cronNamespace, "sh",
		h.dir, cron.bin, h.wrapper, crontab)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	defer stop()

	// The @reboot mail comes at once, the other at the next minute
	// boundary: up to 61 s on an idle machine, a few more under load.
	deadline := 90 * time.Second
	wait := make(chan error, 1)
	var first time.Duration // when the first mail arrived; read after wait
	go func() {
		if _, err := h.srv.WaitMessages(1, deadline); err != nil {
			wait <- err
			return
		}
		first = time.Since(start)
		_, err := h.srv.WaitMessages(2, deadline-time.Since(start))
		wait <- err
	}()
	select {
	case err := <-wait:
		if err != nil {
			t.Fatalf("cron's mails did not arrive within %v (%d arrived): %v; cron printed:\n%s",
				deadline, len(h.srv.Messages()), err, out.String())
		}
	case <-done:
		t.Fatalf("cron exited after %v: %v; it printed:\n%s", time.Since(start).Round(time.Millisecond), waitErr, out.String())
	}
	t.Logf("cron started at %s; its first mail arrived %v later, the second %v later",
		start.Format("15:04:05.000"), first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	stop()
	if after := systemSendmail(); after != sendmailBefore {
		t.Errorf("the machine's /usr/sbin/sendmail changed: was %s, is %s", sendmailBefore, after)
	}

	calls := h.recordedCalls()
	msgs := h.srv.Messages()
	for _, job := range []struct{ name, body string }{
		{"reboot job", "reboot job: " + body},
		{"minute job", "minute job: Grüße\n.\nlast line\n"},
	} {
		t.Run(strings.ReplaceAll(job.name, " ", "_"), func(t *testing.T) {
			var c *call
			for i := range calls {
				if bytes.Contains(calls[i].stdin, []byte("\n\n"+job.name+":")) {
					c = &calls[i]
					break
				}
			}
			var m *smarthost.Message
			for i := range msgs {
				if bytes.Contains(msgs[i].Data, []byte("\r\n\r\n"+job.name+":")) {
					m = &msgs[i]
					break
				}
			}
			if c == nil || m == nil {
				t.Fatalf("no call (%v) or no message (%v) for the %s", c != nil, m != nil, job.name)
			}
			h.logCall(*c)
			t.Logf("cron called sendmail %v after it started", c.at.Sub(start).Round(time.Millisecond))
			if c.argv[0] != "/usr/sbin/sendmail" {
				t.Errorf("cron ran %q, want /usr/sbin/sendmail", c.argv[0])
			}
			wantArgs(t, *c, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
			check(t, *c, *m, want{
				from: "cron@example.com", rcpts: []string{"ops@example.net"}, body: job.body,
				headers: map[string]string{"From": "root (Cron Daemon)", "To": "root"},
			})
			if m.MailOpts.Body != "8BITMIME" {
				t.Errorf("MAIL FROM BODY=%q, want 8BITMIME (cron gave -B8BITMIME)", m.MailOpts.Body)
			}
			if !bytes.Equal(crlf(c.stdin), crlf([]byte(cronMessageFor(c.stdin)))) {
				t.Errorf("cron no longer writes the message cronMessage is modelled on:\n%s", c.stdin)
			}
		})
	}
}

// cronMessageFor returns cronMessage with the Subject and body of the
// recorded message in, so that the comparison covers every other header.
func cronMessageFor(recorded []byte) string {
	head, gotBody, _ := strings.Cut(string(recorded), "\n\n")
	var subject string
	for _, line := range strings.Split(head, "\n") {
		if strings.HasPrefix(line, "Subject: ") {
			subject = line
		}
	}
	want, _, _ := strings.Cut(cronMessage, "\n\n")
	lines := strings.Split(want, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "Subject: ") {
			lines[i] = subject
		}
	}
	return strings.Join(lines, "\n") + "\n\n" + gotBody
}

// systemSendmail describes the machine's /usr/sbin/sendmail (as this
// process, outside any namespace, sees it).
func systemSendmail() string {
	fi, err := os.Lstat("/usr/sbin/sendmail")
	if err != nil {
		return "absent"
	}
	return fi.Mode().String() + " " + fi.ModTime().String()
}
