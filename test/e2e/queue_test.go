package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// pointAt rewrites the config's port: the relay "moves" to another server,
// or to a port where nothing listens (relay down).
func (s *setup) pointAt(port int) {
	s.t.Helper()
	b, err := os.ReadFile(s.conf)
	if err != nil {
		s.t.Fatal(err)
	}
	conf := regexp.MustCompile(`(?m)^port = \d+$`).ReplaceAllString(string(b), "port = "+strconv.Itoa(port))
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func deadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// spoolFiles lists the files left in the spool directory (not failed/).
func (s *setup) spoolFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(s.dir, "spool"))
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestRelayDownThenQueueRun(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	s.pointAt(deadPort(t))
	msg := "From: app@example.com\nTo: a@example.net\nSubject: reset\n\nyour code is 1234\n"
	o := s.run(msg, "-t", "-i", "-f", "app@example.com")
	wantQueued(t, o, "connection refused")
	// One line says what happened, one what to check.
	lines := strings.Split(strings.TrimSpace(o.stderr), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "sendmail: hint: nothing accepts connections on 127.0.0.1:") {
		t.Errorf("stderr, want the queued line and the hint:\n%s", o.stderr)
	}
	if len(s.spoolFiles()) != 2 {
		t.Errorf("spool holds %q, want one message (2 files)", s.spoolFiles())
	}
	l := s.run("", "-bp")
	wantCode(t, l, 0, "")
	if !strings.Contains(l.stdout, "a@example.net") || !strings.Contains(l.stdout, "connection refused") {
		t.Errorf("mailq =\n%s\nwant the recipient and the reason", l.stdout)
	}

	s.pointAt(s.srv.Port())
	wantCode(t, s.run("", "-q"), 0, "")
	m := s.one()
	wantEnvelope(t, m, "app@example.com", "a@example.net")
	if !bytes.Contains(m.Data, []byte("your code is 1234")) {
		t.Errorf("body lost:\n%s", m.Data)
	}
	// A second run sends nothing again and the queue is empty.
	wantCode(t, s.run("", "-q"), 0, "")
	if n := len(s.srv.Messages()); n != 1 {
		t.Errorf("%d messages after a second -q, want 1", n)
	}
	if f := s.spoolFiles(); len(f) != 0 {
		t.Errorf("spool still holds %q", f)
	}
	if l := s.run("", "-bp"); !strings.Contains(l.stdout, "Mail queue is empty") {
		t.Errorf("mailq = %q, want empty", l.stdout)
	}
}

func TestRetryAfterTransientFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault smarthost.Fault
	}{
		{"drop in the middle of DATA", smarthost.Fault{Stage: smarthost.Data, Drop: true, Times: 1}},
		{"drop after the final dot", smarthost.Fault{Stage: smarthost.DataEnd, Drop: true, Times: 1}},
		{"421 at connect", smarthost.Fault{Stage: smarthost.Connect, Code: 421, Text: "too busy", Times: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{tt.fault}}, "", "")
			o := s.run(simple, "-f", "a@example.com", "b@example.net", "c@example.net")
			wantQueued(t, o, "")
			if n := len(s.srv.Messages()); n != 0 {
				t.Fatalf("%d messages after the fault, want 0", n)
			}
			wantCode(t, s.run("", "-q"), 0, "")
			wantEnvelope(t, s.one(), "a@example.com", "b@example.net", "c@example.net")
			wantCode(t, s.run("", "-q"), 0, "")
			if n := len(s.srv.Messages()); n != 1 {
				t.Errorf("%d deliveries, want exactly 1", n)
			}
		})
	}
}

func TestOneRecipientDeferred(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "c@example.net", Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "greylisted", Times: 1},
	}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "a@example.net", "b@example.net", "c@example.net")
	wantQueued(t, o, "<c@example.net>: 451 4.7.1 greylisted")
	first := s.one()
	wantEnvelope(t, first, "a@example.com", "a@example.net", "b@example.net")

	wantCode(t, s.run("", "-q"), 0, "")
	msgs, _ := s.srv.WaitMessages(2, 10*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	wantEnvelope(t, msgs[1], "a@example.com", "c@example.net")
	if !bytes.Equal(msgs[0].Data, msgs[1].Data) {
		t.Errorf("the retried message differs from the first")
	}
	wantCode(t, s.run("", "-q"), 0, "")
	if n := len(s.srv.Messages()); n != 2 {
		t.Errorf("%d messages after another run, want 2: a recipient was sent twice", n)
	}
}

func TestBounceForRefusedRecipient(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "nobody@example.net", Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "user unknown"},
	}}, "", "")
	// cron's error mode: mail the error back.
	o := s.run(simple, "-oem", "-f", "sender@example.com", "good@example.net", "nobody@example.net")
	wantCode(t, o, 0, "")
	// The send starts a background queue run for its bounce; -q would do
	// it too.
	wantCode(t, s.run("", "-q"), 0, "")
	msgs, err := s.srv.WaitMessages(2, 10*time.Second)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("bounce did not arrive: %d messages, %v", len(msgs), err)
	}
	if len(s.srv.Messages()) != 2 {
		t.Errorf("%d messages, want the message and one bounce", len(s.srv.Messages()))
	}
	wantEnvelope(t, msgs[0], "sender@example.com", "good@example.net")
	b := msgs[1]
	if b.From != "" || len(b.Rcpts) != 1 || b.Rcpts[0] != "sender@example.com" {
		t.Errorf("bounce envelope = <%s> -> %q, want <> -> sender@example.com", b.From, b.Rcpts)
	}
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "Final-Recipient: rfc822;nobody@example.net", "Status: 5.1.1", "Action: failed", "user unknown"} {
		if !bytes.Contains(bytes.ReplaceAll(b.Data, []byte("rfc822; "), []byte("rfc822;")), []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, b.Data)
		}
	}
}

func TestNoBounceForNullSender(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "nobody@example.net", Code: 550, Text: "user unknown"},
	}}, "", "")
	o := s.run(simple, "-oem", "-f", "<>", "good@example.net", "nobody@example.net")
	wantCode(t, o, 0, "")
	s.one()
	wantCode(t, s.run("", "-q"), 0, "")
	if n := len(s.srv.Messages()); n != 1 {
		t.Errorf("%d messages, want 1: a bounce was sent for a null-sender message", n)
	}
	failed, _ := os.ReadDir(filepath.Join(s.dir, "spool", "failed"))
	if len(failed) == 0 {
		t.Errorf("the undeliverable null-sender message was not kept in failed/")
	}
}

func TestExpiryBounces(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "slow@example.net", Code: 451, Text: "try later"},
	}}, "", "")
	appendQueueKey(t, s.conf, `max_age = "1s"`)
	o := s.run(simple, "-f", "sender@example.com", "slow@example.net")
	wantQueued(t, o, "try later")
	time.Sleep(1100 * time.Millisecond) // let the message grow older than max_age
	wantCode(t, s.run("", "-q"), 0, "")
	msgs, err := s.srv.WaitMessages(1, 10*time.Second)
	if err != nil {
		t.Fatalf("no bounce after expiry: %v", err)
	}
	b := msgs[0]
	if b.From != "" || !bytes.Contains(b.Data, []byte("slow@example.net")) || !bytes.Contains(b.Data, []byte("expired")) {
		t.Errorf("expiry bounce = <%s> %q\n%s", b.From, b.Rcpts, b.Data)
	}
	if f := s.spoolFiles(); len(f) != 0 {
		t.Errorf("spool still holds %q after expiry and bounce", f)
	}
}

func appendQueueKey(t *testing.T, path, line string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	conf := strings.Replace(string(b), "[queue]\n", "[queue]\n"+line+"\n", 1)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveryModes(t *testing.T) {
	t.Run("-odq only queues", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, "", "")
		wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "b@example.net"), 0, "")
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("-odq connected to the smarthost")
		}
		l := s.run("", "-bp", "--json")
		var e struct {
			ID         string `json:"queue_id"`
			Sender     string `json:"sender"`
			Recipients []struct {
				Address string `json:"address"`
			} `json:"recipients"`
		}
		if err := json.Unmarshal([]byte(l.stdout), &e); err != nil || e.Sender != "a@example.com" || len(e.Recipients) != 1 {
			t.Errorf("mailq --json = %q (%v)", l.stdout, err)
		}
		wantCode(t, s.run("", "-q"), 0, "")
		wantEnvelope(t, s.one(), "a@example.com", "b@example.net")
	})
	t.Run("delivery = queue in the config", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, `delivery = "queue"`, "")
		wantCode(t, s.run(simple, "-f", "a@example.com", "b@example.net"), 0, "")
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("delivery = queue connected to the smarthost")
		}
	})
	t.Run("-odb delivers in the background", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{DataDelay: 300 * time.Millisecond}, "", "")
		o := s.run(simple, "-odb", "-f", "a@example.com", "b@example.net")
		wantCode(t, o, 0, "")
		wantEnvelope(t, s.one(), "a@example.com", "b@example.net")
		deadline := time.Now().Add(10 * time.Second)
		for len(s.spoolFiles()) != 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if f := s.spoolFiles(); len(f) != 0 {
			t.Errorf("spool still holds %q", f)
		}
	})
}

func TestDeleteAndRequeue(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "b@example.net"), 0, "")
	wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "c@example.net"), 0, "")
	l := s.run("", "-bp", "--json")
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(l.stdout), "\n") {
		var e struct {
			ID string `json:"queue_id"`
		}
		json.Unmarshal([]byte(line), &e)
		ids = append(ids, e.ID)
	}
	if len(ids) != 2 {
		t.Fatalf("mailq --json = %q, want 2 entries", l.stdout)
	}
	wantCode(t, s.run("", "--delete", ids[0]), 0, "")
	wantCode(t, s.run("", "--requeue", ids[1]), 0, "")
	wantCode(t, s.run("", "-q"), 0, "")
	wantEnvelope(t, s.one(), "a@example.com", "c@example.net")
	wantCode(t, s.run("", "--delete", "NOSUCHID0000000"), 75, "NOSUCHID0000000")
}

// TestConcurrentSendersAndRunners: 20 senders and 2 queue runners against
// a slow relay; every message arrives exactly once.
func TestConcurrentSendersAndRunners(t *testing.T) {
	s := newSetup(t, smarthost.Options{DataDelay: 50 * time.Millisecond, HashOnly: true}, "", "")
	const senders = 20
	var wg sync.WaitGroup
	codes := make([]int, senders)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := s.run(fmt.Sprintf("Subject: n%d\n\nmessage %d\n", i, i), "-f", "a@example.com", fmt.Sprintf("r%02d@example.net", i))
			codes[i] = o.code
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				s.run("", "-q")
			}
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("sender %d exited %d", i, c)
		}
	}
	s.run("", "-q")
	msgs := s.srv.Messages()
	seen := map[string]int{}
	for _, m := range msgs {
		for _, r := range m.Rcpts {
			seen[r]++
		}
	}
	for i := range senders {
		r := fmt.Sprintf("r%02d@example.net", i)
		if seen[r] != 1 {
			t.Errorf("%s received %d times, want 1", r, seen[r])
		}
	}
	if f := s.spoolFiles(); len(f) != 0 {
		t.Errorf("spool still holds %q", f)
	}
}

func TestSpoolErrors(t *testing.T) {
	t.Run("spool directory cannot be created", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, "", "")
		blocker := filepath.Join(s.dir, "file")
		os.WriteFile(blocker, nil, 0o600)
		s.setQueueDir(filepath.Join(blocker, "spool"))
		o := s.run(simple, "-f", "a@example.com", "b@example.net")
		if o.code != 73 && o.code != 75 {
			t.Errorf("exit code = %d, want 73 or 75; stderr %q", o.code, o.stderr)
		}
		if !strings.Contains(o.stderr, "spool") {
			t.Errorf("stderr = %q, want it to name the spool", o.stderr)
		}
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("sendmail relayed a message it could not spool")
		}
	})
	t.Run("read-only spool", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, "", "")
		s.setQueueDir(s.mountTmpfs("ro", "ro,size=64k"))
		o := s.run(simple, "-f", "a@example.com", "b@example.net")
		wantCode(t, o, 73, "read-only file system")
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("sendmail relayed a message it could not spool")
		}
	})
	t.Run("full filesystem", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, "", "")
		small := s.mountTmpfs("small", "size=64k")
		s.setQueueDir(filepath.Join(small, "spool"))
		big := "Subject: big\n\n" + strings.Repeat("x", 200<<10) + "\n"
		o := s.run(big, "-f", "a@example.com", "b@example.net")
		wantCode(t, o, 75, "no space left")
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("sendmail relayed a message it could not spool")
		}
		entries, _ := os.ReadDir(filepath.Join(small, "spool"))
		for _, e := range entries {
			if !e.IsDir() {
				t.Errorf("left behind in the full spool: %s", e.Name())
			}
		}
	})
}

// TestQueueDaemon: sendmail -q1h runs the queue at start, again on SIGHUP,
// and stops cleanly on SIGTERM.
func TestQueueDaemon(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "first@example.net"), 0, "")
	cmd := exec.Command(binary, "-C", s.conf, "-q1h")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	if _, err := s.srv.WaitMessages(1, 10*time.Second); err != nil {
		t.Fatalf("-q1h did not deliver the queued message at start: %v", err)
	}
	wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "second@example.net"), 0, "")
	// SIGHUP may race with the daemon's setup of its handler only before
	// the first run, which is over.
	cmd.Process.Signal(syscall.SIGHUP)
	msgs, err := s.srv.WaitMessages(2, 10*time.Second)
	if err != nil {
		t.Fatalf("SIGHUP did not start a queue run: %v", err)
	}
	wantEnvelope(t, msgs[1], "a@example.com", "second@example.net")

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("-q1h after SIGTERM: %v; stderr %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("-q1h did not stop on SIGTERM")
	}
}

// TestOddReplyRecordedOnce: a reply with a NUL byte must not keep the
// envelope from being updated, or the accepted recipient would be sent
// the message again on every run.
func TestOddReplyRecordedOnce(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "b@example.net", Code: 450, Enhanced: [3]int{4, 2, 0}, Text: "mailbox busy\x00try later", Times: 1},
	}}, "", "")
	o := s.run(simple, "-f", "a@example.com", "a@example.net", "b@example.net")
	wantQueued(t, o, "mailbox busy try later")
	for range 2 {
		wantCode(t, s.run("", "-q"), 0, "")
	}
	count := map[string]int{}
	for _, m := range s.srv.Messages() {
		for _, r := range m.Rcpts {
			count[r]++
		}
	}
	if count["a@example.net"] != 1 || count["b@example.net"] != 1 {
		t.Errorf("deliveries = %v, want each recipient once", count)
	}
}

// TestAuthRequiredIsNotBounced: a smarthost that wants a login answers
// MAIL with 530; that is the config's fault, so the message waits.
func TestAuthRequiredIsNotBounced(t *testing.T) {
	s := newSetup(t, smarthost.Options{AuthRequired: true}, "", "auth = \"none\"\n")
	o := s.run(simple, "-oem", "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "530")
	wantCode(t, o, 0, "hint: the smarthost wants a login")
	if len(s.srv.Messages()) != 0 {
		t.Errorf("a message arrived without AUTH")
	}
	if l := s.run("", "-bp"); !strings.Contains(l.stdout, "b@example.net") {
		t.Errorf("mailq = %q, want the message still queued", l.stdout)
	}
}

// TestDamagedMessageIsReported: a queued message whose data no longer
// matches its envelope is never sent and never silently skipped.
func TestDamagedMessageIsReported(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	wantCode(t, s.run(simple, "-odq", "-f", "a@example.com", "b@example.net"), 0, "")
	var data string
	for _, f := range s.spoolFiles() {
		if strings.HasSuffix(f, ".msg") {
			data = filepath.Join(s.dir, "spool", f)
		}
	}
	f, err := os.OpenFile(data, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("tampered\r\n")
	f.Close()
	o := s.run("", "-q")
	wantCode(t, o, 0, "cannot deliver")
	if len(s.srv.Messages()) != 0 {
		t.Errorf("a damaged message was sent")
	}
}

func TestQuietErrorMode(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Rcpt, Code: 550, Text: "no"}}}, "", "")
	o := s.run(simple, "-oeq", "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 67, "")
	if o.stderr != "" {
		t.Errorf("-oeq printed %q, want nothing", o.stderr)
	}
}

// TestBackgroundBurstSharesConnections: a burst of -odb sends travels over
// at most max_connections connections, each message exactly once.
func TestBackgroundBurstSharesConnections(t *testing.T) {
	s := newSetup(t, smarthost.Options{DataDelay: 20 * time.Millisecond, HashOnly: true}, "", "max_connections = 2\n")
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := s.run(fmt.Sprintf("Subject: burst %d\n\nbody\n", i), "-odb", "-f", "a@example.com", fmt.Sprintf("b%02d@example.net", i))
			if o.code != 0 {
				t.Errorf("send %d exited %d: %s", i, o.code, o.stderr)
			}
		}()
	}
	wg.Wait()
	msgs, err := s.srv.WaitMessages(n, 60*time.Second)
	if err != nil {
		t.Fatalf("%d of %d messages arrived: %v", len(s.srv.Messages()), n, err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.Rcpts[0]]++
	}
	for i := range n {
		if r := fmt.Sprintf("b%02d@example.net", i); seen[r] != 1 {
			t.Errorf("%s received %d times, want 1", r, seen[r])
		}
	}
	if got := s.srv.MaxConcurrent(); got > 2 {
		t.Errorf("the smarthost saw %d connections at once, want at most max_connections = 2", got)
	}
	t.Logf("burst of %d -odb sends: %d sessions in all, at most %d at once", n, len(s.srv.Sessions()), s.srv.MaxConcurrent())
}
