package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestCrashSafety kills senders with SIGKILL at random points, then runs
// the queue: every send that exited 0 is delivered, no message is
// delivered twice unless its sender was killed after the relay's final
// 250 (the documented window), and no torn file is left in the queue.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 200 processes: skipped in -short mode")
	}
	const sends = 200
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "")
	type run struct {
		exited0 bool
		killed  bool
	}
	runs := make([]run, sends)
	body := "Subject: crash\n\n" + strings.Repeat("line of the crash test message\n", 2000) // 62 KB
	rng := rand.New(rand.NewPCG(1, 2))
	delays := make([]time.Duration, sends)
	for i := range delays {
		delays[i] = time.Duration(rng.IntN(500_000)) * time.Microsecond
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	deadline := time.Now().Add(4 * time.Minute)
	for i := range sends {
		if time.Now().After(deadline) {
			t.Fatalf("crash loop ran out of time after %d sends", i)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd := exec.Command(binary, "-C", s.conf, "-i", "-f", "a@example.com", fmt.Sprintf("r%03d@example.net", i))
			cmd.Stdin = strings.NewReader(body)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
			if err := cmd.Start(); err != nil {
				t.Error(err)
				return
			}
			timer := time.AfterFunc(delays[i], func() { cmd.Process.Signal(syscall.SIGKILL) })
			err := cmd.Wait()
			timer.Stop()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			runs[i] = run{exited0: err == nil, killed: ws.Signaled()}
		}()
	}
	wg.Wait()

	if o := s.run("", "-q"); o.code != 0 {
		t.Fatalf("sendmail -q exited %d: %s", o.code, o.stderr)
	}
	// Senders that finished hand waiting messages to background runners,
	// which may still hold some (then -q skipped them as busy): wait for
	// the queue to empty, with a deadline, and run it once more.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l := s.run("", "-bp"); strings.Contains(l.stdout, "Mail queue is empty") {
			break
		}
		s.run("", "-q")
	}
	count := map[string]int{}
	for _, m := range s.srv.Messages() {
		for _, r := range m.Rcpts {
			count[r]++
		}
	}
	var exited0, killed, delivered, dups int
	for i, r := range runs {
		rcpt := fmt.Sprintf("r%03d@example.net", i)
		if r.exited0 {
			exited0++
		}
		if r.killed {
			killed++
		}
		if count[rcpt] > 0 {
			delivered++
		}
		if r.exited0 && count[rcpt] != 1 {
			t.Errorf("send %d exited 0 but %s was delivered %d times", i, rcpt, count[rcpt])
		}
		if count[rcpt] > 1 {
			dups++
			if !r.killed {
				t.Errorf("%s delivered %d times and its sender was not killed", rcpt, count[rcpt])
			}
		}
	}
	t.Logf("crash test: %d sends, %d exited 0, %d killed, %d delivered, %d delivered twice (killed inside the window)",
		sends, exited0, killed, delivered, dups)
	if killed == 0 || exited0 == 0 {
		t.Errorf("the kill delays did not cover both outcomes (%d killed, %d exited 0): the test proves nothing", killed, exited0)
	}

	// Whatever a killed sender left half-written is invisible to the queue:
	// temporary files, or message data whose envelope was never written.
	// A queue run removes them once they are a minute old (spool.Cleanup).
	entries, _ := os.ReadDir(s.dir + "/spool")
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	leftovers := 0
	for name := range names {
		switch {
		case name == "failed", name == "run":
		case strings.HasPrefix(name, "tmp-"):
			leftovers++
		case strings.HasSuffix(name, ".msg") && !names[strings.TrimSuffix(name, ".msg")+".env"]:
			leftovers++
		default:
			t.Errorf("left in the queue after -q: %s", name)
		}
	}
	t.Logf("crash test: %d invisible leftovers of killed senders (removed by a later queue run)", leftovers)
	if l := s.run("", "-bp"); !strings.Contains(l.stdout, "Mail queue is empty") {
		t.Errorf("mailq after the crash test:\n%s", l.stdout)
	}
}
