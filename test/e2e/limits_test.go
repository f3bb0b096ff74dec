package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestRateLimitBurst is issue 10's shell loop: 100 sends, one process
// each, with rate = "20/3s" against a smarthost that refuses the 21st
// MAIL in any 3 seconds. The server never refuses one (relaymail kept the
// rate), every message arrives exactly once, the sends over the rate exit
// 0 saying when their slot comes, and background runners deliver them
// without a queue run.
func TestRateLimitBurst(t *testing.T) {
	s := newSetup(t, smarthost.Options{Throttle: smarthost.Throttle{Messages: 20, Window: 3 * time.Second}}, "", "")
	appendSmarthost(t, s.conf, "rate = \"20/3s\"\n")
	start := time.Now()
	said := 0
	for i := range 100 {
		o := s.run(fmt.Sprintf("Subject: burst %d\n\nmessage %d\n", i, i), "-f", "a@example.com", "b@example.net")
		wantCode(t, o, 0, "")
		if strings.Contains(o.stderr, "rate limit 20/3s for "+s.srv.Addr()+", next slot in ") {
			said++
		} else if o.stderr != "" {
			t.Errorf("send %d said %q", i, o.stderr)
		}
	}
	t.Logf("100 sends returned in %v; %d said they wait for a slot", time.Since(start).Round(time.Millisecond), said)
	if list := s.run("", "-bp").stdout; !regexp.MustCompile(`(?m)^-- ` + regexp.QuoteMeta(s.srv.Addr()) + `: limit 20/3s; \d+ in the last 3s; the next message may leave (now|at \S+ \(in \S+\))$`).MatchString(list) {
		t.Errorf("mailq does not show the limit:\n%s", list)
	}
	if c := s.run("", "--check"); !strings.Contains(c.stdout, "  limits 20/3s\n") {
		t.Errorf("--check does not show the limit:\n%s", c.stdout)
	}
	if said < 60 {
		t.Errorf("%d sends said they wait for a rate-limit slot, want most of the 80 over the first window", said)
	}
	msgs, err := s.srv.WaitMessages(100, 90*time.Second)
	if err != nil {
		t.Fatalf("%d of 100 arrived: %v", len(msgs), err)
	}
	t.Logf("all 100 arrived %v after the first send", time.Since(start).Round(time.Millisecond))
	seen := map[string]int{}
	for _, m := range msgs {
		subject := regexp.MustCompile(`Subject: (burst \d+)`).FindSubmatch(m.Data)
		if subject == nil {
			t.Fatalf("a message without its subject:\n%s", m.Data)
		}
		seen[string(subject[1])]++
	}
	for i := range 100 {
		if n := seen[fmt.Sprintf("burst %d", i)]; n != 1 {
			t.Errorf("burst %d arrived %d times", i, n)
		}
	}
	if n := s.srv.Throttled(); n != 0 {
		t.Errorf("the server refused %d MAIL commands: relaymail went over 20 in 3 s", n)
	}
	if took := time.Since(start); took < 12*time.Second {
		t.Errorf("100 messages at 20 per 3 s arrived in %v, faster than the rate allows", took)
	}
}

// TestThrottlePause: a smarthost that says 451 4.7.0 after three messages
// is paused: the rest of the queue run sends it nothing, mailq shows the
// pause, a queue run during the pause sends nothing, and once the server
// takes mail again (its window passes) the queue drains, every message
// once, and the pause is gone.
func TestThrottlePause(t *testing.T) {
	s := newSetup(t, smarthost.Options{Throttle: smarthost.Throttle{Messages: 3, Window: 6 * time.Second}}, "", "")
	appendSmarthost(t, s.conf, "throttle_pause = \"2s\"\n")
	for i := range 6 {
		wantCode(t, s.run(fmt.Sprintf("Subject: queued %d\n\nbody\n", i), "-odq", "-f", "a@example.com", "b@example.net"), 0, "")
	}
	wantCode(t, s.run("", "-q"), 0, "")
	// The six go in one pipelined flight (MAIL, RCPT, BDAT each), so the
	// server refuses the last three of that flight; nothing after it.
	th := s.srv.Throttled()
	if got := len(s.srv.Messages()); got != 3 || th < 1 || th > 3 {
		t.Fatalf("after the first run: %d delivered, %d throttled; want 3, and 1 to 3 refused in the one flight", got, th)
	}
	list := s.run("", "-bp").stdout
	pause := regexp.MustCompile(`(?m)^-- ` + regexp.QuoteMeta(s.srv.Addr()) + `: paused until \S+ \(in \S+\): it asked us to slow down \(451 4\.7\.0 Too many messages, slow down\)$`)
	if !pause.MatchString(list) {
		t.Errorf("mailq does not show the pause:\n%s", list)
	}
	if !strings.Contains(list, "asked us to slow down") || strings.Count(list, "(next attempt in") != 3 {
		t.Errorf("mailq does not show three messages waiting:\n%s", list)
	}
	wantCode(t, s.run("", "-q"), 0, "")
	if got, th2 := len(s.srv.Messages()), s.srv.Throttled(); got != 3 || th2 != th {
		t.Fatalf("a run during the pause: %d delivered, %d throttled; want no new MAIL", got, th2)
	}
	// The pause doubles while the server keeps refusing; runs go on until
	// its window passes. The messages the server refused wait for the end
	// of the pause too (the next run holds them), not for their retry a
	// minute later.
	deadline := time.Now().Add(40 * time.Second)
	for len(s.srv.Messages()) < 6 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		wantCode(t, s.run("", "-q"), 0, "")
	}
	msgs := s.delivered(6)
	seen := map[string]bool{}
	for _, m := range msgs {
		subject := regexp.MustCompile(`Subject: (queued \d)`).FindSubmatch(m.Data)
		if subject == nil || seen[string(subject[1])] {
			t.Errorf("a message twice or without its subject:\n%s", m.Data)
			continue
		}
		seen[string(subject[1])] = true
	}
	if list := s.run("", "-bp").stdout; strings.Contains(list, "paused") || !strings.Contains(list, "Mail queue is empty") {
		t.Errorf("mailq after the queue drained:\n%s", list)
	}
	t.Logf("the server refused %d MAIL commands in all", s.srv.Throttled())
}

// TestThrottleFallback: while the primary is paused for throttling, the
// fallback host takes the mail; the primary sees nothing more.
func TestThrottleFallback(t *testing.T) {
	s := newSetup(t, smarthost.Options{Throttle: smarthost.Throttle{Messages: 1, Window: time.Hour, Code: 421, Text: "Too many messages, slow down"}}, "", "")
	second := smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
	ca := filepath.Join(s.dir, "ca.pem")
	b, err := os.ReadFile(ca)
	must(t, err)
	must(t, os.WriteFile(ca, append(b, second.CAPEM()...), 0o644))
	appendSmarthost(t, s.conf, fmt.Sprintf("fallback = [\"127.0.0.1:%d\"]\n", second.Port()))

	wantCode(t, s.run("Subject: one\n\nbody\n", "-f", "a@example.com", "b@example.net"), 0, "")
	o := s.run("Subject: two\n\nbody\n", "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "421 4.7.0 Too many messages, slow down")
	if !strings.Contains(o.stderr, "hint: the smarthost limits how fast this account may send") {
		t.Errorf("no throttle hint:\n%s", o.stderr)
	}
	wantCode(t, s.run("Subject: three\n\nbody\n", "-f", "a@example.com", "b@example.net"), 0, "")
	msgs, err := second.WaitMessages(1, 10*time.Second)
	must(t, err)
	if !strings.Contains(string(msgs[0].Data), "Subject: three") {
		t.Errorf("the fallback got:\n%s", msgs[0].Data)
	}
	waitRunners(filepath.Join(s.dir, "spool"))
	if n, th := len(s.srv.Messages()), s.srv.Throttled(); n != 1 || th != 1 {
		t.Errorf("the primary got %d messages and refused %d MAILs; want 1 and 1: nothing after the pause began", n, th)
	}
	if list := s.run("", "-bp").stdout; !strings.Contains(list, "-- "+s.srv.Addr()+": paused until") {
		t.Errorf("mailq does not show the pause:\n%s", list)
	}
}

// TestLimitReleasedWhenDown: messages that never reached the smarthost (it
// was down) do not use up its daily limit.
func TestLimitReleasedWhenDown(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	appendSmarthost(t, s.conf, "daily_limit = 3\n")
	s.pointAt(deadPort(t))
	for i := range 3 {
		wantQueued(t, s.run(fmt.Sprintf("Subject: %d\n\nbody\n", i), "-f", "a@example.com", "b@example.net"), "connection refused")
	}
	wantCode(t, s.run("", "-q"), 0, "")
	if list := s.run("", "-bp").stdout; !strings.Contains(list, ": limit 3/day; 0 in the last day; the next message may leave now") {
		t.Errorf("mailq, want the limit unused after the relay was down:\n%s", list)
	}
}
