//go:build interop

package interop

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestRelayDownThenQueueRun is a new user's first outage (README, "The
// queue: nothing is lost"): the smarthost is unreachable while PHP's
// mail() and cron each hand over a message. Both must hear success (exit
// 0: the message is safe in the spool) and sendmail must say in one stderr
// line that it queued the message and why. Once the relay is back, one
// "sendmail -q" delivers each message exactly once, with the envelope and
// bytes an immediate delivery would have had; a second -q sends nothing
// and mailq says the queue is empty.
func TestRelayDownThenQueueRun(t *testing.T) {
	t.Parallel()
	php := needClient(t, "php")
	h := newHarness(t, smarthost.Options{}, "noreply@example.com", "\n[aliases]\nroot = \"ops@example.net\"\n")
	down := refusedPort(t)
	h.setPort(down)

	// PHP's mail() without a fifth parameter (<sendmail> -t -i), as in
	// TestPHP. Its sendmail's stderr reaches PHP's.
	const phpHeaders = "From: Shop <shop@example.com>\r\nCc: carol@example.net\r\nBcc: dave@example.net, erin@example.net\r\nContent-Type: text/plain; charset=UTF-8"
	const script = `$ok = mail(getenv("TO"), getenv("SUBJECT"), getenv("BODY"), getenv("HEADERS"));
exit($ok ? 0 : 1);`
	phpOut := h.run(php, h.dir, nil, []string{
		"TO=Alice Example <alice@example.net>, bob@example.net",
		"SUBJECT=Bestellung Nr. 42",
		"BODY=" + body,
		"HEADERS=" + phpHeaders,
	}, "-d", "sendmail_path="+h.wrapper+" -t -i", "-r", script)
	phpCall := h.oneCall()
	wantArgs(t, phpCall, "-t", "-i")
	phpID := wantQueuedLine(t, "php (sendmail's stderr)", phpOut, down)

	// Debian cron's exact invocation and message; the config comes from
	// $SENDMAIL_CONF, as in TestCronInvocation.
	cronArgs := []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"}
	stdout, stderr, code := h.sendmail(cronMessage, []string{"HOME=/root", "LOGNAME=root", "SHELL=/bin/sh", "SENDMAIL_CONF=" + h.conf}, cronArgs...)
	if code != 0 || stdout != "" {
		t.Fatalf("sendmail %q exited %d, want 0 (queued); stdout:\n%s\nstderr:\n%s", cronArgs, code, stdout, stderr)
	}
	cronID := wantQueuedLine(t, "cron's sendmail stderr", stderr, down)
	cronCall := call{argv: append([]string{binary}, cronArgs...), stdin: []byte(cronMessage)}
	if phpID == cronID {
		t.Errorf("both messages were queued as %s", phpID)
	}
	if n := len(h.srv.Sessions()); n != 0 {
		t.Fatalf("the smarthost had %d connections while the config named port %d", n, down)
	}

	// mailq lists both, with the reason.
	q := h.mustSendmail("-C", h.conf, "-bp")
	t.Logf("sendmail -bp while the relay is down:\n%s", q)
	for _, s := range []string{phpID, cronID, "alice@example.net", "erin@example.net", "ops@example.net", "connection refused", " in 2 Requests."} {
		if !strings.Contains(q, s) {
			t.Errorf("sendmail -bp does not show %q", s)
		}
	}

	// The relay is back: one queue run delivers both.
	h.setPort(h.srv.Port())
	start := time.Now()
	if out := h.mustSendmail("-C", h.conf, "-q"); out != "" {
		t.Errorf("sendmail -q printed %q, want nothing", out)
	}
	t.Logf("sendmail -q ran in %v", time.Since(start).Round(time.Millisecond))
	msgs, err := h.srv.WaitMessages(2, 20*time.Second)
	if err != nil {
		t.Fatalf("after sendmail -q: %v", err)
	}
	t.Logf("smarthost saw %q", mailEvents(h.srv))
	if len(msgs) != 2 {
		t.Errorf("%d messages arrived, want 2", len(msgs))
	}
	for _, tt := range []struct {
		name   string
		c      call
		marker string // in that message only
		w      want
	}{
		{"php", phpCall, "\r\nSubject: Bestellung Nr. 42\r\n", want{
			from:  "noreply@example.com",
			rcpts: []string{"alice@example.net", "bob@example.net", "carol@example.net", "dave@example.net", "erin@example.net"},
			body:  body + "\n",
			headers: map[string]string{
				"To": "Alice Example <alice@example.net>, bob@example.net", "Cc": "carol@example.net",
				"From": "Shop <shop@example.com>", "Subject": "Bestellung Nr. 42",
			},
		}},
		{"cron", cronCall, "\r\nX-Cron-Env: <MAILTO=root>\r\n", want{
			from: "noreply@example.com", rcpts: []string{"ops@example.net"}, body: body,
			headers: map[string]string{"From": "root (Cron Daemon)", "To": "root"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var found []smarthost.Message
			for _, m := range msgs {
				if bytes.Contains(m.Data, []byte(tt.marker)) {
					found = append(found, m)
				}
			}
			if len(found) != 1 {
				t.Fatalf("the %s message arrived %d times, want exactly once", tt.name, len(found))
			}
			check(t, tt.c, found[0], tt.w)
			if tt.name == "cron" && found[0].MailOpts.Body != "8BITMIME" {
				t.Errorf("MAIL FROM BODY=%q, want 8BITMIME (cron gave -B8BITMIME)", found[0].MailOpts.Body)
			}
		})
	}

	// A second run delivers nothing more; the queue is empty.
	sessions := len(h.srv.Sessions())
	if out := h.mustSendmail("-C", h.conf, "-q"); out != "" {
		t.Errorf("the second sendmail -q printed %q, want nothing", out)
	}
	if n := len(h.srv.Messages()); n != 2 {
		t.Errorf("%d messages after a second sendmail -q, want 2", n)
	}
	if n := len(h.srv.Sessions()) - sessions; n != 0 {
		t.Logf("the second sendmail -q opened %d connection(s) to the smarthost", n)
	}
	if q := h.mustSendmail("-C", h.conf, "-bp"); q != "Mail queue is empty\n" {
		t.Errorf("sendmail -bp after delivery =\n%s\nwant \"Mail queue is empty\"", q)
	}
	if left := spoolLeft(t, filepath.Join(h.dir, "spool")); len(left) > 0 {
		t.Errorf("the spool still holds %q", left)
	}
}

// queuedLine is what a send queued for a relay that is down prints: the
// queued line, then the hint for a refused connection.
var queuedLine = regexp.MustCompile(`^[^:\n]+: queued as ([0-9A-Z]+): ([^\n]+); will retry\n[^:\n]+: hint: nothing accepts connections on [^\n]+\n$`)

// wantQueuedLine fails unless out is exactly the line saying that the
// message is queued because nothing listens on port, and returns the
// queue id.
func wantQueuedLine(t *testing.T, what, out string, port int) string {
	t.Helper()
	m := queuedLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s = %q, want \"sendmail: queued as <id>: <reason>; will retry\" and the hint line", what, out)
	}
	t.Logf("%s: %s", what, strings.TrimSpace(out))
	if reason := m[2]; !strings.Contains(reason, "connection refused") || !strings.Contains(reason, ":"+strconv.Itoa(port)) {
		t.Errorf("%s gives the reason %q, want it to name port %d and say connection refused", what, reason, port)
	}
	return m[1]
}

// refusedPort returns a port on 127.0.0.1 where a connection is refused
// at once: a socket is bound to it but never listens (so the kernel
// answers a SYN with RST), and holds it until the test ends, so that no
// other test's listener can take it meanwhile.
func refusedPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// setPort rewrites the port line of the harness's config: the relay goes
// down (a port where nothing listens) or comes back.
func (h *harness) setPort(port int) {
	h.t.Helper()
	b, err := os.ReadFile(h.conf)
	if err != nil {
		h.t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^port = \d+$`)
	if n := len(re.FindAllIndex(b, -1)); n != 1 {
		h.t.Fatalf("the config has %d port lines, want 1", n)
	}
	conf := re.ReplaceAll(b, []byte("port = "+strconv.Itoa(port)))
	if err := os.WriteFile(h.conf, conf, 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// sendmail runs the binary itself, as cron or an administrator does, with
// stdin and PATH plus env, and returns what it printed and its exit code.
func (h *harness) sendmail(stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		h.t.Fatalf("sendmail %q did not finish within a minute; stderr:\n%s", args, e.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		h.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// mustSendmail runs sendmail without input and returns its stdout; it
// fails the test unless sendmail exits 0 with nothing on stderr.
func (h *harness) mustSendmail(args ...string) string {
	h.t.Helper()
	stdout, stderr, code := h.sendmail("", []string{"HOME=" + h.home}, args...)
	if code != 0 || stderr != "" {
		h.t.Fatalf("sendmail %q exited %d; stderr:\n%s", args, code, stderr)
	}
	return stdout
}

// spoolLeft lists the files left in a spool directory and its failed/,
// leaving out run/, where the runner slot locks stay between runs.
func spoolLeft(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(path, dir+"/")
		if d.IsDir() && (rel == "run" || rel == "limits") {
			// Runner slot locks, and the smarthosts' state (rate limits,
			// pauses, an outage), kept between runs.
			return filepath.SkipDir
		}
		if !d.IsDir() {
			left = append(left, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}
