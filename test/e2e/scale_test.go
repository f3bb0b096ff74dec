package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
	"relaymail/internal/spool"
)

// Issue 12: a queue of thousands, listed and flushed. The queue is filled
// through internal/spool, the code the binary queues with (3,000 sends
// through the binary would take a minute of the suite); everything after
// that is the real binary against the real smarthost.

// scaleMessages is the size of the queues below.
const scaleMessages = 3000

// fillQueue commits n small messages, each to its own recipient and with
// its own text, straight into the setup's spool, and returns the SHA-256 of
// each as it must arrive, by recipient.
func (s *setup) fillQueue(n int) map[string][32]byte {
	s.t.Helper()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(s.dir, "spool")})
	if err != nil {
		s.t.Fatal(err)
	}
	want := map[string][32]byte{}
	for i := range n {
		rcpt := fmt.Sprintf("r%05d@example.net", i)
		body := crlf(fmt.Sprintf("From: a@example.com\nTo: %s\nSubject: queued %d\nDate: Fri, 27 Nov 2026 10:00:00 +0000\nMessage-ID: <q%d@example.com>\n\nmessage %d of the queue\n", rcpt, i, i, i))
		w, err := sp.Create()
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			s.t.Fatal(err)
		}
		env := &spool.Envelope{From: "a@example.com", UID: os.Getuid(), User: "root",
			Recipients: []spool.Recipient{{Addr: rcpt, State: spool.Pending}}}
		if err := w.Commit(env); err != nil {
			s.t.Fatal(err)
		}
		want[rcpt] = sha256.Sum256([]byte(body))
	}
	return want
}

// arrivals counts the smarthost's messages by recipient, checking each
// one's envelope and bytes against want.
func (s *setup) arrivals(want map[string][32]byte) map[string]int {
	s.t.Helper()
	got := map[string]int{}
	for _, m := range s.srv.Messages() {
		if len(m.Rcpts) != 1 || m.From != "a@example.com" {
			s.t.Errorf("a message arrived from <%s> to %q", m.From, m.Rcpts)
			continue
		}
		sum, ok := want[m.Rcpts[0]]
		switch {
		case !ok:
			s.t.Errorf("a message arrived for %s, which nothing was sent to", m.Rcpts[0])
		case m.SHA256 != sum:
			s.t.Errorf("the message for %s arrived with other bytes (%d bytes)", m.Rcpts[0], m.Size)
		}
		got[m.Rcpts[0]]++
	}
	return got
}

// TestLargeQueueListedAndFlushed: mailq and mailq --json list every one of
// a few thousand messages, and one queue run delivers each exactly once,
// many per session, over at most max_connections connections.
func TestLargeQueueListedAndFlushed(t *testing.T) {
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "max_connections = 2\n")
	want := s.fillQueue(scaleMessages)

	o := s.run("", "-bp")
	if o.code != 0 || !strings.HasSuffix(strings.TrimSpace(o.stdout), fmt.Sprintf("in %d Requests.", scaleMessages)) {
		t.Fatalf("mailq exited %d, ending %q", o.code, lastLine(o.stdout))
	}
	if n := strings.Count(o.stdout, "@example.net\n"); n != scaleMessages {
		t.Errorf("mailq lists %d recipients, want %d", n, scaleMessages)
	}
	o = s.run("", "-bp", "--json")
	if lines := strings.Count(o.stdout, "\n"); o.code != 0 || lines != scaleMessages {
		t.Fatalf("mailq --json exited %d with %d lines, want %d", o.code, lines, scaleMessages)
	}

	o = s.run("", "-q", "-v")
	if o.code != 0 {
		t.Fatalf("sendmail -q exited %d: %s", o.code, o.stderr)
	}
	if !strings.Contains(o.stderr, fmt.Sprintf("queue run: %d attempted, %d delivered", scaleMessages, scaleMessages)) {
		t.Errorf("sendmail -q -v said %q", lastLine(o.stderr))
	}
	got := s.arrivals(want)
	for rcpt := range want {
		if got[rcpt] != 1 {
			t.Errorf("%s received %d copies, want 1", rcpt, got[rcpt])
		}
	}
	sessions, most := len(s.srv.Sessions()), s.srv.MaxConcurrent()
	if most > 2 {
		t.Errorf("the smarthost saw %d connections at once, want at most max_connections = 2", most)
	}
	if sessions > 2 {
		t.Errorf("one queue run opened %d sessions for %d messages, want them to share one (or a second after a break)", sessions, scaleMessages)
	}
	if left := s.spoolFiles(); len(left) > 0 {
		t.Errorf("the spool still holds %d files: %q...", len(left), left[:min(3, len(left))])
	}
	t.Logf("%d messages: one queue run, %d sessions, at most %d at once", scaleMessages, sessions, most)
}

// TestKilledFlushResumes kills a queue run with SIGKILL in the middle of a
// large flush; the next run delivers the rest. Nothing is lost, and what is
// delivered twice is only what the documented window allows: messages the
// smarthost had taken (its final 250) before the kill, at most one batch
// (the pipelined group of up to 50 whose outcomes were not yet recorded).
func TestKilledFlushResumes(t *testing.T) {
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "")
	want := s.fillQueue(scaleMessages)

	cmd := exec.Command(binary, "-C", s.conf, "-q")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once a third has arrived, or when it ends first (then the
	// test proves less and says so).
	third := scaleMessages / 3
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	deadline := time.Now().Add(2 * time.Minute)
wait:
	for time.Now().Before(deadline) {
		select {
		case <-done:
			break wait
		case <-time.After(time.Millisecond):
		}
		if len(s.srv.Messages()) >= third {
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			killed = true
			break
		}
	}
	if !killed {
		t.Fatalf("the queue run ended (or timed out) before %d of %d messages arrived: %d did", third, scaleMessages, len(s.srv.Messages()))
	}
	// The smarthost finishes what was on the wire: the killed client's
	// connection closes, and no message completes after that.
	time.Sleep(200 * time.Millisecond)
	before := len(s.srv.Messages())
	firstCopies := s.arrivals(want)
	left := 0
	for _, name := range s.spoolFiles() {
		if strings.HasSuffix(name, ".env") {
			left++
		}
	}
	t.Logf("killed after %d of %d messages arrived; %d stayed queued", before, scaleMessages, left)
	if left+before < scaleMessages {
		t.Errorf("%d arrived and %d stayed queued: %d of %d messages are lost", before, left, scaleMessages-before-left, scaleMessages)
	}

	o := s.run("", "-q")
	if o.code != 0 {
		t.Fatalf("the second queue run exited %d: %s", o.code, o.stderr)
	}
	got := s.arrivals(want)
	dups := 0
	for rcpt := range want {
		switch n := got[rcpt]; {
		case n == 0:
			t.Errorf("%s never received its message", rcpt)
		case n == 2 && firstCopies[rcpt] == 1:
			dups++ // its first copy arrived before the kill: the window
		case n > 1:
			t.Errorf("%s received %d copies (%d before the kill)", rcpt, n, firstCopies[rcpt])
		}
	}
	if dups > 50 {
		t.Errorf("%d messages were delivered twice; the window is at most one batch of 50", dups)
	}
	// Left behind may be what the killed run was removing when it died:
	// a data file whose envelope it had removed, or a temporary file,
	// which Cleanup reaps a minute later. No envelope may stay.
	var orphans []string
	for _, name := range s.spoolFiles() {
		if strings.HasSuffix(name, ".env") {
			t.Errorf("%s is still queued after the second run", name)
		}
		orphans = append(orphans, name)
	}
	if len(orphans) > 1 {
		t.Errorf("the killed run left %d files, more than the one it can have been removing: %q", len(orphans), orphans)
	}
	t.Logf("the second run delivered %d more; %d delivered twice (taken before the kill, outcome not yet recorded)", len(s.srv.Messages())-before, dups)
}

func lastLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	last := ""
	for sc.Scan() {
		if sc.Text() != "" {
			last = sc.Text()
		}
	}
	return last
}

// TestRelayDownLeavesQueueUntouched: with the relay down, a queue run makes
// one connection attempt, records it on one message and leaves the others'
// envelopes as they were; mailq says why they wait (the footer, and
// waiting_for in --json); when the relay is back every message is due and
// goes once, and mailq forgets the outage.
func TestRelayDownLeavesQueueUntouched(t *testing.T) {
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "")
	want := s.fillQueue(5)
	before := map[string]os.FileInfo{}
	for _, name := range s.spoolFiles() {
		if strings.HasSuffix(name, ".env") {
			fi, err := os.Stat(filepath.Join(s.dir, "spool", name))
			must(t, err)
			before[name] = fi
		}
	}
	s.pointAt(deadPort(t))
	o := s.run("", "-q", "-v")
	wantCode(t, o, 0, "")
	if !strings.Contains(o.stderr, "queue run: 1 attempted, 0 delivered, 1 deferred") || !strings.Contains(o.stderr, "4 left waiting for the relay") {
		t.Errorf("sendmail -q -v said %q", lastLine(o.stderr))
	}
	unchanged := 0
	for name, fi := range before {
		now, err := os.Stat(filepath.Join(s.dir, "spool", name))
		if err == nil && os.SameFile(fi, now) {
			unchanged++
		}
	}
	if unchanged != 4 {
		t.Errorf("%d of 5 envelopes unchanged, want 4 (one records the attempt)", unchanged)
	}
	l := s.run("", "-bp")
	if !regexp.MustCompile(`(?m)^-- 127\.0\.0\.1:\d+: no session since .* \(1 failed attempt in a row, the last: cannot connect: connection refused\); its messages wait for the next queue run$`).MatchString(l.stdout) {
		t.Errorf("mailq does not say why the queue waits:\n%s", l.stdout)
	}
	j := s.run("", "-bp", "--json")
	if n := strings.Count(j.stdout, `"waiting_for":"127.0.0.1:`); n != 4 {
		t.Errorf("mailq --json: %d entries say what they wait for, want the 4 due ones:\n%s", n, j.stdout)
	}

	s.pointAt(s.srv.Port())
	wantCode(t, s.run("", "-q"), 0, "")
	got := s.arrivals(want)
	for rcpt := range want {
		if got[rcpt] != 1 {
			t.Errorf("%s received %d copies, want 1", rcpt, got[rcpt])
		}
	}
	if l := s.run("", "-bp"); strings.TrimSpace(l.stdout) != "Mail queue is empty" {
		t.Errorf("mailq after the relay came back =\n%s", l.stdout)
	}
}
