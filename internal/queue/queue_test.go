package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"relaymail/internal/spool"
)

// fakeSession answers from a table: reply code per recipient address; a
// missing address gets 250. It records every message it was handed.
type fakeSession struct {
	mu      sync.Mutex
	codes   map[string]int
	err     error // message-wide failure
	sent    []string
	bodies  []string
	broken  bool
	dialErr error
}

func (f *fakeSession) Send(env *spool.Envelope, rcpts []string, body io.Reader) ([]Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := io.ReadAll(body)
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = Result{Rcpt: r}
		if f.err != nil {
			out[i].Reply = f.err.Error()
			continue
		}
		code, ok := f.codes[r]
		if !ok {
			code = 250
		}
		out[i].Code = code
		out[i].Reply = fmt.Sprintf("%d reply for %s", code, r)
		if code/100 == 2 {
			f.sent = append(f.sent, r)
			f.bodies = append(f.bodies, string(b))
		}
	}
	return out, f.err
}
func (f *fakeSession) Broken() bool { return f.broken }
func (f *fakeSession) Close()       {}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRunner(t *testing.T, fs *fakeSession, c *clock, bounces *[]string) (*Runner, *spool.Spool) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{
		Spool: sp,
		Dial: func(context.Context, string) (Session, error) {
			if fs.dialErr != nil {
				return nil, fs.dialErr
			}
			return fs, nil
		},
		Now:    c.now,
		MaxAge: time.Hour,
		Bounce: func(env *spool.Envelope, failed []spool.Recipient, original io.Reader) error {
			for _, f := range failed {
				*bounces = append(*bounces, env.From+" "+f.Addr)
			}
			return nil
		},
	})
	return r, sp
}

func enqueue(t *testing.T, sp *spool.Spool, c *clock, from string, rcpts ...string) string {
	t.Helper()
	w, err := sp.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: test\r\n\r\nbody of "+strings.Join(rcpts, ",")+"\r\n")
	env := &spool.Envelope{From: from, NextAttempt: c.now()}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r, State: spool.Pending})
	}
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

func TestRunOutcomes(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{codes: map[string]int{"temp@x": 451, "perm@x": 550}}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	id := enqueue(t, sp, c, "s@x", "ok@x", "temp@x", "perm@x")

	st, err := r.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Attempted != 1 || st.Bounced != 1 {
		t.Errorf("stats = %+v, want 1 attempted, 1 bounced", st)
	}
	if strings.Join(fs.sent, " ") != "ok@x" {
		t.Errorf("sent = %q, want ok@x", fs.sent)
	}
	if strings.Join(bounces, ";") != "s@x perm@x" {
		t.Errorf("bounces = %q, want one for perm@x", bounces)
	}
	env, err := sp.Find(id)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]spool.State{}
	for _, rc := range env.Recipients {
		states[rc.Addr] = rc.State
	}
	if states["ok@x"] != spool.Sent || states["temp@x"] != spool.Pending || states["perm@x"] != spool.Failed {
		t.Errorf("states = %v", states)
	}
	if want := c.t.Add(time.Minute); !env.NextAttempt.Equal(want) {
		t.Errorf("next attempt = %v, want %v (1m backoff)", env.NextAttempt, want)
	}

	// Not due yet: nothing happens.
	r.Run(context.Background(), false)
	if len(fs.sent) != 1 {
		t.Errorf("a run before the next attempt sent %q", fs.sent)
	}
	// Due, and the relay now accepts: only temp@x is sent, and the
	// message leaves the queue.
	c.t = c.t.Add(2 * time.Minute)
	delete(fs.codes, "temp@x")
	r.Run(context.Background(), false)
	if strings.Join(fs.sent, " ") != "ok@x temp@x" {
		t.Errorf("sent = %q, want ok@x then temp@x only", fs.sent)
	}
	if _, err := sp.Find(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("Find after delivery: %v, want ErrNotFound", err)
	}
}

func TestDialFailureDefersAndExpires(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{dialErr: errors.New("connection refused")}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	id := enqueue(t, sp, c, "s@x", "a@x")
	enqueue(t, sp, c, "", "b@x") // null sender: expires without a bounce

	r.Run(context.Background(), true)
	env, _ := sp.Find(id)
	if env.Attempts != 1 || env.LastError != "connection refused" || env.Recipients[0].State != spool.Pending {
		t.Errorf("after a failed dial: %+v", env)
	}
	for n, want := range []time.Duration{2 * time.Minute, 4 * time.Minute} {
		r.Run(context.Background(), true)
		env, _ = sp.Find(id)
		if got := env.NextAttempt.Sub(c.t); got != want {
			t.Errorf("backoff after attempt %d = %v, want %v", n+2, got, want)
		}
	}

	c.t = c.t.Add(2 * time.Hour) // past MaxAge
	r.Run(context.Background(), true)
	if strings.Join(bounces, ";") != "s@x a@x" {
		t.Errorf("bounces = %q, want one for a@x", bounces)
	}
	if _, err := sp.Find(id); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("expired and bounced message still queued: %v", err)
	}
	envs, _ := sp.List()
	if len(envs) != 0 {
		t.Errorf("queue holds %d messages, want 0 (the null-sender one moves to failed/)", len(envs))
	}
}

func TestBounceFailureKeepsRecipientPending(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{codes: map[string]int{"perm@x": 550}}
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Spool: sp, Now: c.now,
		Dial:   func(context.Context, string) (Session, error) { return fs, nil },
		Bounce: func(*spool.Envelope, []spool.Recipient, io.Reader) error { return errors.New("disk full") },
	})
	id := enqueue(t, sp, c, "s@x", "perm@x")
	r.Run(context.Background(), true)
	env, err := sp.Find(id)
	if err != nil {
		t.Fatalf("message gone although its bounce could not be queued: %v", err)
	}
	if env.Recipients[0].State != spool.Pending {
		t.Errorf("state = %s, want pending until the bounce is queued", env.Recipients[0].State)
	}
}

func TestCallerToldSkipsBounce(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{codes: map[string]int{"a@x": 550, "b@x": 550}}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	id := enqueue(t, sp, c, "s@x", "a@x", "b@x")
	out, err := r.DeliverID(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Told || out.Bounced || len(bounces) != 0 || len(out.Failed) != 2 {
		t.Errorf("outcome = %+v, bounces %q; want told, no bounce", out, bounces)
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := DefaultBackoff(i + 1); got != w {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestSplitReply(t *testing.T) {
	tests := []struct {
		code                int
		reply, status, text string
	}{
		{550, "550 5.1.1 user unknown", "5.1.1", "user unknown"},
		{550, "550 no such user", "", "no such user"},
		{554, "554 4.1.1 odd class", "", "4.1.1 odd class"},
		{550, "user unknown", "", "user unknown"},
	}
	for _, tt := range tests {
		status, text := splitReply(tt.code, tt.reply)
		if status != tt.status || text != tt.text {
			t.Errorf("splitReply(%d, %q) = %q, %q, want %q, %q", tt.code, tt.reply, status, text, tt.status, tt.text)
		}
	}
}

func TestAcquireSlot(t *testing.T) {
	dir := t.TempDir()
	a, err := AcquireSlot(dir, 2)
	if err != nil || a == nil {
		t.Fatalf("first slot: %v, %v", a, err)
	}
	b, err := AcquireSlot(dir, 2)
	if err != nil || b == nil {
		t.Fatalf("second slot: %v, %v", b, err)
	}
	if c, err := AcquireSlot(dir, 2); c != nil || err != nil {
		t.Fatalf("third of two slots = %v, %v, want none", c, err)
	}
	if SlotFree(dir, 2) {
		t.Error("SlotFree with both slots held = true")
	}
	if RunnersIdle(dir) {
		t.Error("RunnersIdle with both slots held = true")
	}
	if !SlotFree(dir, 3) {
		t.Error("SlotFree with one of three free = false")
	}
	a.Release()
	if !SlotFree(dir, 2) {
		t.Error("SlotFree after a release = false")
	}
	c, err := AcquireSlot(dir, 2)
	if err != nil || c == nil {
		t.Fatalf("slot after a release: %v, %v", c, err)
	}
	b.Release()
	if RunnersIdle(dir) {
		t.Error("RunnersIdle with one slot held = true")
	}
	c.Release()
	if !RunnersIdle(dir) {
		t.Error("RunnersIdle with every slot free = false")
	}
	if !RunnersIdle(filepath.Join(dir, "missing")) {
		t.Error("RunnersIdle without a spool = false")
	}
}

// TestSlotModes: the slots take the spool's sharing, whatever the umask.
func TestSlotModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, tt := range []struct {
		spool, run, slot os.FileMode
	}{{0o700, 0o700, 0o600}, {0o770, 0o770, 0o660}} {
		dir := t.TempDir()
		if err := os.Chmod(dir, tt.spool); err != nil {
			t.Fatal(err)
		}
		s, err := AcquireSlot(dir, 1)
		if err != nil || s == nil {
			t.Fatalf("AcquireSlot: %v, %v", s, err)
		}
		s.Release()
		for path, want := range map[string]os.FileMode{"run": os.ModeDir | tt.run, "run/slot.0": tt.slot} {
			fi, err := os.Lstat(filepath.Join(dir, path))
			if err != nil {
				t.Error(err)
			} else if fi.Mode() != want {
				t.Errorf("spool %v: %s: mode %v, want %v", tt.spool, path, fi.Mode(), want)
			}
		}
	}
}

func TestDrainDeliversArrivals(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	for i := range 5 {
		enqueue(t, sp, c, "s@x", fmt.Sprintf("r%d@x", i))
	}
	st, err := r.Drain(context.Background(), 1, 0)
	if err != nil || st.Delivered != 5 || len(fs.sent) != 5 {
		t.Errorf("Drain = %+v, %v; sent %q, want all 5 delivered", st, err, fs.sent)
	}
	// With the only slot held elsewhere, Drain leaves the work to it.
	slot, _ := AcquireSlot(sp.Dir(), 1)
	defer slot.Release()
	enqueue(t, sp, c, "s@x", "late@x")
	if st, err := r.Drain(context.Background(), 1, 0); err != nil || st.Attempted != 0 {
		t.Errorf("Drain with the slot taken = %+v, %v, want nothing attempted", st, err)
	}
}

// batchSession is a fakeSession that can send batches; it records the
// size of each.
type batchSession struct {
	*fakeSession
	batches []int
}

func (b *batchSession) SendBatch(jobs []Job) []Sent {
	b.batches = append(b.batches, len(jobs))
	out := make([]Sent, len(jobs))
	for i, j := range jobs {
		out[i].Results, out[i].Err = b.Send(j.Env, j.Rcpts, j.Body)
	}
	return out
}

// TestRunBatches: a queue run hands due messages to a Batcher in batches
// of at most batchMessages, and records every outcome as Send's would be.
func TestRunBatches(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{codes: map[string]int{"bad@x": 550, "later@x": 451}}
	bs := &batchSession{fakeSession: fs}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	r.o.Dial = func(context.Context, string) (Session, error) { return bs, nil }
	n := batchMessages + 7
	for i := range n - 2 {
		enqueue(t, sp, c, "s@x", fmt.Sprintf("r%d@x", i))
	}
	enqueue(t, sp, c, "s@x", "bad@x")
	enqueue(t, sp, c, "s@x", "later@x", "ok@x")
	st, err := r.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bs.batches, []int{batchMessages, 7}) {
		t.Errorf("batches = %v, want [%d 7]", bs.batches, batchMessages)
	}
	if st.Attempted != n || st.Delivered != n-2 || st.Bounced != 1 || st.Deferred != 1 {
		t.Errorf("stats = %+v", st)
	}
	if !slices.Equal(bounces, []string{"s@x bad@x"}) {
		t.Errorf("bounces = %q", bounces)
	}
	envs, _ := sp.List()
	if len(envs) != 1 || envs[0].Recipients[0].State != spool.Pending || envs[0].Recipients[1].State != spool.Sent {
		t.Errorf("left in the queue: %+v, want the message to later@x with ok@x sent", envs)
	}
}

// TestDrainLingers: a Drain with linger keeps its slot and its session
// after the queue empties, and delivers a message committed meanwhile
// over the same session; once nothing arrives for linger it returns.
func TestDrainLingers(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	dials := 0
	r.o.Dial = func(context.Context, string) (Session, error) {
		dials++
		return fs, nil
	}
	enqueue(t, sp, c, "s@x", "first@x")
	done := make(chan Stats, 1)
	start := time.Now()
	go func() {
		st, err := r.Drain(context.Background(), 1, 500*time.Millisecond)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	// Wait until the first message is out, then commit another.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		fs.mu.Lock()
		n := len(fs.sent)
		fs.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first message was not delivered")
		}
	}
	if SlotFree(sp.Dir(), 1) {
		t.Error("the lingering Drain let go of its slot")
	}
	enqueue(t, sp, c, "s@x", "second@x")
	var st Stats
	select {
	case st = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return")
	}
	if st.Delivered != 2 || !slices.Equal(fs.sent, []string{"first@x", "second@x"}) {
		t.Errorf("Drain = %+v, sent %q; want both delivered", st, fs.sent)
	}
	if dials != 1 {
		t.Errorf("%d sessions dialled, want 1: the second message must use the lingering one", dials)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("Drain returned after %v, before its linger", d)
	}
}

func TestEnvelopeCreated(t *testing.T) {
	event := func(mask uint32, name string) []byte {
		padded := len(name) + 1
		for padded%16 != 0 {
			padded++
		}
		b := make([]byte, 16+padded)
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		ev.Mask, ev.Len = mask, uint32(padded)
		copy(b[16:], name)
		return b
	}
	tests := []struct {
		events [][]byte
		want   bool
	}{
		{[][]byte{event(syscall.IN_CREATE, "06H1PW3SNXM4JGTR.env")}, true},
		{[][]byte{event(syscall.IN_CREATE, "tmp-06H1PW3SNXM4JGTR-WG3RNBR0"), event(syscall.IN_CREATE, "06H1PW3SNXM4JGTR.msg")}, false},
		{[][]byte{event(syscall.IN_CREATE, "06H1PW3SNXM4JGTR.msg"), event(syscall.IN_CREATE, "06H1PW3SNXM4JGTR.env")}, true},
		{[][]byte{event(syscall.IN_MOVED_TO, "06H1PW3SNXM4JGTR.env")}, false},
		{nil, false},
	}
	for i, tt := range tests {
		var b []byte
		for _, e := range tt.events {
			b = append(b, e...)
		}
		if got := envelopeCreated(b); got != tt.want {
			t.Errorf("case %d: envelopeCreated = %v, want %v", i, got, tt.want)
		}
		if len(b) > 3 && envelopeCreated(b[:len(b)-3]) && !tt.want {
			t.Errorf("case %d: a truncated buffer reads as an arrival", i)
		}
	}
}

// TestDrainRetriesBusy: a message whose lock someone else holds when the
// lingering Drain looks (a sender finishing its commit) is delivered soon
// after it is let go, not after the linger or never.
func TestDrainRetriesBusy(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{}
	var bounces []string
	r, sp := newRunner(t, fs, c, &bounces)
	id := enqueue(t, sp, c, "s@x", "held@x")
	held, err := sp.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		held.Unlock()
		released <- time.Now()
	}()
	ts := &timedSession{fakeSession: fs}
	r.o.Dial = func(context.Context, string) (Session, error) { return ts, nil }
	st, err := r.Drain(context.Background(), 1, 3*time.Second)
	if err != nil || st.Delivered != 1 || !slices.Equal(fs.sent, []string{"held@x"}) {
		t.Fatalf("Drain = %+v, %v; sent %q", st, err, fs.sent)
	}
	// Without a second look the message would wait for the linger (3s)
	// to run out; the margin is wide for a busy machine.
	if d := ts.at.Sub(<-released); d > 2*time.Second {
		t.Errorf("delivered %v after the lock was released, want about 20ms", d)
	}
}

// timedSession records when it last sent.
type timedSession struct {
	*fakeSession
	at time.Time
}

func (t *timedSession) Send(env *spool.Envelope, rcpts []string, body io.Reader) ([]Result, error) {
	t.at = time.Now()
	return t.fakeSession.Send(env, rcpts, body)
}

// TestBounceBelongsToSender: the bounce is queued from the null sender to
// the original sender, under the original sender's uid (so its mailq, not
// the queue runner's, shows it).
func TestBounceBelongsToSender(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	bounce := NewBouncer(BounceOptions{Spool: sp, ReportingMTA: "app01.example.com", Domain: "example.com", Now: time.Now})
	env := &spool.Envelope{From: "web@example.com", UID: 33, User: "www-data", Created: time.Now()}
	failed := []spool.Recipient{{Addr: "b@example.net", State: spool.Failed, Code: 550, Reply: "550 5.1.1 no such user"}}
	if err := bounce(env, failed, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	envs, errs := sp.List()
	if len(errs) != 0 || len(envs) != 1 {
		t.Fatalf("spool holds %d envelopes (%v), want the bounce", len(envs), errs)
	}
	b := envs[0]
	if b.UID != 33 || b.From != "" || len(b.Recipients) != 1 || b.Recipients[0].Addr != "web@example.com" {
		t.Errorf("bounce envelope uid %d, from %q, to %v; want uid 33 from <> to web@example.com", b.UID, b.From, b.Recipients)
	}
}

// TestRunRoutes: messages go over their own route's session, one dial per
// route however many messages, and a route that cannot connect defers its
// messages only.
func TestRunRoutes(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	var bounces []string
	r, sp := newRunner(t, &fakeSession{}, c, &bounces)
	sessions := map[string]*fakeSession{"": {}, "org": {}, "down": {}}
	dials := map[string]int{}
	r.o.Route = func(env *spool.Envelope) string {
		switch {
		case strings.HasSuffix(env.From, "@example.org"):
			return "org"
		case strings.HasSuffix(env.From, "@down.example"):
			return "down"
		}
		return ""
	}
	r.o.Dial = func(_ context.Context, route string) (Session, error) {
		dials[route]++
		if route == "down" {
			return nil, errors.New("connection refused")
		}
		return sessions[route], nil
	}
	enqueue(t, sp, c, "a@example.com", "r1@x")
	enqueue(t, sp, c, "b@example.org", "r2@x")
	enqueue(t, sp, c, "c@example.com", "r3@x")
	enqueue(t, sp, c, "d@example.org", "r4@x")
	enqueue(t, sp, c, "e@down.example", "r5@x")
	st, err := r.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sessions[""].sent, []string{"r1@x", "r3@x"}) || !slices.Equal(sessions["org"].sent, []string{"r2@x", "r4@x"}) {
		t.Errorf("default route sent %q, org route %q", sessions[""].sent, sessions["org"].sent)
	}
	if dials[""] != 1 || dials["org"] != 1 || dials["down"] != 1 {
		t.Errorf("dials %v, want one per route", dials)
	}
	if st.Delivered != 4 || st.Deferred != 1 {
		t.Errorf("stats %+v, want 4 delivered and the unreachable route's one deferred", st)
	}
}

// TestRunKeepsRouteSessions: a Run that keeps its sessions (a lingering
// Drain) keeps every route's, and the next Run uses them: one dial per
// route over both.
func TestRunKeepsRouteSessions(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	var bounces []string
	r, sp := newRunner(t, &fakeSession{}, c, &bounces)
	dials := map[string]int{}
	r.o.Route = func(env *spool.Envelope) string {
		if strings.HasSuffix(env.From, "@example.org") {
			return "org"
		}
		return ""
	}
	r.o.Dial = func(_ context.Context, route string) (Session, error) {
		dials[route]++
		return &fakeSession{}, nil
	}
	r.keep = true
	for range 2 {
		enqueue(t, sp, c, "a@example.com", "r1@x")
		enqueue(t, sp, c, "b@example.org", "r2@x")
		if st, err := r.Run(context.Background(), false); err != nil || st.Delivered != 2 {
			t.Fatalf("Run: %+v, %v", st, err)
		}
	}
	if dials[""] != 1 || dials["org"] != 1 || len(r.kept) != 2 {
		t.Errorf("dials %v and %d sessions kept, want one dial per route and both kept", dials, len(r.kept))
	}
}

// blockedSetup queues n messages for the tests of blocked routes, and
// returns a runner whose dials are counted and answered by dial.
func blockedSetup(t *testing.T, n int, c *clock, dial func() (Session, error), limit func(string, int) (int, *Hold, func(int))) (*Runner, *spool.Spool, []string, *int, *[]string) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	dials := new(int)
	bounces := new([]string)
	r := New(Options{
		Spool: sp,
		Dial: func(context.Context, string) (Session, error) {
			*dials++
			return dial()
		},
		Limit:  limit,
		Now:    c.now,
		MaxAge: time.Hour,
		Bounce: func(env *spool.Envelope, failed []spool.Recipient, original io.Reader) error {
			*bounces = append(*bounces, failed[0].Addr)
			return nil
		},
	})
	var ids []string
	for i := range n {
		ids = append(ids, enqueue(t, sp, c, "s@x", fmt.Sprintf("r%02d@x", i)))
	}
	return r, sp, ids, dials, bounces
}

// unwritten reports which of ids still have the envelope file they were
// committed with (not rewritten: same inode), given their files before.
func unwritten(t *testing.T, sp *spool.Spool, before map[string]os.FileInfo) int {
	t.Helper()
	n := 0
	for id, fi := range before {
		now, err := os.Stat(filepath.Join(sp.Dir(), id+".env"))
		if err == nil && os.SameFile(fi, now) {
			n++
		}
	}
	return n
}

func envFiles(t *testing.T, sp *spool.Spool, ids []string) map[string]os.FileInfo {
	t.Helper()
	out := map[string]os.FileInfo{}
	for _, id := range ids {
		fi, err := os.Stat(filepath.Join(sp.Dir(), id+".env"))
		if err != nil {
			t.Fatal(err)
		}
		out[id] = fi
	}
	return out
}

// TestDownRelayLeavesQueueUntouched: a relay that cannot be reached costs a
// queue run one dial and one envelope write, not one per message; the
// runner does not dial it again before the backoff ends (unless forced);
// expired messages still fail; and when it is back, everything is due.
func TestDownRelayLeavesQueueUntouched(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{}
	down := errors.New("connection refused")
	dialErr := down
	r, sp, ids, dials, _ := blockedSetup(t, 20, c, func() (Session, error) {
		if dialErr != nil {
			return nil, dialErr
		}
		return fs, nil
	}, nil)
	before := envFiles(t, sp, ids)

	st, err := r.Run(context.Background(), true)
	if err != nil || *dials != 1 || st.Attempted != 1 || st.Waiting != 19 {
		t.Fatalf("Run with the relay down: %+v, %v, %d dials; want 1 dial, 1 attempted, 19 waiting", st, err, *dials)
	}
	if n := unwritten(t, sp, before); n != 19 {
		t.Errorf("%d of 20 envelopes are unwritten, want 19", n)
	}
	if env, _ := sp.Find(ids[0]); env.Attempts != 1 || env.LastError != "connection refused" {
		t.Errorf("the first message records %d attempts, %q", env.Attempts, env.LastError)
	}
	st, _ = r.Run(context.Background(), false)
	if *dials != 1 || st.Attempted != 0 {
		t.Errorf("a run during the backoff dialled (%d dials) or attempted %d", *dials, st.Attempted)
	}
	if r.anyDue() {
		t.Errorf("anyDue says yes while the only route waits for its relay")
	}
	// Its block ends: a run that is not forced dials again.
	c.t = c.t.Add(maxDownWait)
	if r.Run(context.Background(), false); *dials != 2 {
		t.Errorf("after the block a run made %d dials in all, want 2", *dials)
	}

	// Back: a forced run delivers all of them, over one dial.
	dialErr = nil
	st, _ = r.Run(context.Background(), true)
	if *dials != 3 || st.Delivered != 20 || len(fs.sent) != 20 {
		t.Errorf("the relay is back: %+v, %d dials, %d sent; want 20 delivered over one more dial", st, *dials, len(fs.sent))
	}
}

// TestDownRelayExpires: past max_age, messages of a relay that is down fail
// and bounce, each one, though the others are left untouched.
func TestDownRelayExpires(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	const n = 2*batchMessages + 20 // past the first batch
	r, sp, _, dials, bounces := blockedSetup(t, n, c, func() (Session, error) { return nil, errors.New("connection refused") }, nil)
	c.t = c.t.Add(2 * time.Hour)
	st, _ := r.Run(context.Background(), false)
	if *dials != 1 || len(*bounces) != n || st.Bounced != n {
		t.Errorf("expired with the relay down: %+v, %d dials, %d bounces; want %d bounced over 1 dial", st, *dials, len(*bounces), n)
	}
	if envs, _ := sp.List(); len(envs) != 0 {
		t.Errorf("%d messages stay queued", len(envs))
	}
}

// TestRateLimitLeavesQueueUntouched: over the rate limit, a run sends what
// it was granted and leaves the rest unwritten; the drain waits for the
// slot the limit named, and the next run sends the next ones.
func TestRateLimitLeavesQueueUntouched(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fs := &fakeSession{}
	slots := 3
	until := c.t.Add(10 * time.Second)
	r, sp, ids, _, _ := blockedSetup(t, 20, c, func() (Session, error) { return fs, nil },
		func(route string, n int) (int, *Hold, func(int)) {
			g := min(n, slots)
			slots -= g
			if g < n {
				return g, &Hold{Until: until, Reason: "rate limit 3/10s"}, nil
			}
			return g, nil, nil
		})
	before := envFiles(t, sp, ids)
	st, _ := r.Run(context.Background(), false)
	if st.Delivered != 3 || st.Held != 17 {
		t.Errorf("over the limit: %+v, want 3 delivered, 17 held", st)
	}
	if n := unwritten(t, sp, before); n != 17 {
		t.Errorf("%d envelopes unwritten, want the 17 held", n)
	}
	if got := r.nextHeld(); !got.Equal(until) {
		t.Errorf("nextHeld = %v, want the slot %v", got, until)
	}
	st, _ = r.Run(context.Background(), false)
	if st.Attempted != 0 {
		t.Errorf("a run before the slot attempted %d", st.Attempted)
	}
	c.t, slots = until, 3
	st, _ = r.Run(context.Background(), false)
	if st.Delivered != 3 || len(fs.sent) != 6 {
		t.Errorf("at the slot: %+v, %d sent in all; want 3 more", st, len(fs.sent))
	}
}

// TestPausedRelayLeavesQueueUntouched: a pause (the dial's *Hold) holds the
// whole queue where it is.
func TestPausedRelayLeavesQueueUntouched(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	until := c.t.Add(time.Minute)
	r, sp, ids, dials, _ := blockedSetup(t, 20, c, func() (Session, error) {
		return nil, &Hold{Until: until, Reason: "paused"}
	}, nil)
	before := envFiles(t, sp, ids)
	st, _ := r.Run(context.Background(), true)
	if st.Held != 20 || st.Attempted != 0 || *dials != 1 {
		t.Errorf("paused: %+v, %d dials; want 20 held over 1 dial", st, *dials)
	}
	if n := unwritten(t, sp, before); n != 20 {
		t.Errorf("%d envelopes unwritten, want 20", n)
	}
	if got := r.nextHeld(); !got.Equal(until) {
		t.Errorf("nextHeld = %v, want the pause's end %v", got, until)
	}
}

// BenchmarkRunNothingDue is a -q5m pass over a queue in which nothing is
// due (every message deferred, its due hint in the envelope's mtime): the
// cost per queued message must not grow with the queue, and is a stat, not
// a read.
func BenchmarkRunNothingDue(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sp, err := spool.Open(spool.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				w, err := sp.Create()
				if err != nil {
					b.Fatal(err)
				}
				io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
				env := &spool.Envelope{From: "s@x", Recipients: []spool.Recipient{{Addr: fmt.Sprintf("r%d@x", i), State: spool.Pending}}}
				if err := w.Commit(env); err != nil {
					b.Fatal(err)
				}
			}
			// One run against a relay that answers 451 defers them all.
			fs := &fakeSession{codes: map[string]int{}}
			for i := range n {
				fs.codes[fmt.Sprintf("r%d@x", i)] = 451
			}
			r := New(Options{Spool: sp, Dial: func(context.Context, string) (Session, error) { return fs, nil }})
			if st, err := r.Run(context.Background(), false); err != nil || st.Deferred != n {
				b.Fatalf("first run: %+v, %v", st, err)
			}
			b.ResetTimer()
			for b.Loop() {
				if st, _ := r.Run(context.Background(), false); st.Due != 0 {
					b.Fatalf("a run found %d due", st.Due)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}

// TestDownRouteSparesOthers: one route's relay is down; the other route's
// messages, queued after many of the first's, are delivered in the same
// run, and the slots the down route reserved are given back.
func TestDownRouteSparesOthers(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeSession{}
	dials := map[string]int{}
	released := 0
	r := New(Options{
		Spool: sp,
		Route: func(env *spool.Envelope) string { return strings.TrimSuffix(env.From, "@x") },
		Dial: func(_ context.Context, route string) (Session, error) {
			dials[route]++
			if route == "down" {
				return nil, errors.New("connection refused")
			}
			return fs, nil
		},
		Limit: func(route string, n int) (int, *Hold, func(int)) {
			return n, nil, func(k int) { released += k }
		},
		Now: c.now,
	})
	const downs = 2*batchMessages + 10
	for i := range downs {
		enqueue(t, sp, c, "down@x", fmt.Sprintf("d%03d@x", i))
	}
	for i := range 5 {
		enqueue(t, sp, c, "up@x", fmt.Sprintf("u%d@x", i))
	}
	st, _ := r.Run(context.Background(), false)
	if len(fs.sent) != 5 || dials["down"] != 1 || dials["up"] != 1 {
		t.Errorf("sent %q with dials %v; want the 5 of the working route, one dial each", fs.sent, dials)
	}
	if st.Attempted != 6 || st.Waiting != downs-1 {
		t.Errorf("stats %+v; want 6 attempted (5 sent, 1 recording the failure), %d waiting", st, downs-1)
	}
	if released != batchMessages {
		t.Errorf("%d rate-limit slots given back, want the %d of the batch that never left", released, batchMessages)
	}
}

// TestDownLearnt: a relay another process found down lately is left alone
// by runs that are not forced, without a dial; a forced run dials it.
func TestDownLearnt(t *testing.T) {
	c := &clock{time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	r, _, _, dials, _ := blockedSetup(t, 3, c, func() (Session, error) { return nil, errors.New("connection refused") }, nil)
	r.o.Down = func(string) (int, time.Time) { return 2, c.t.Add(-10 * time.Second) }
	st, _ := r.Run(context.Background(), false)
	if *dials != 0 || st.Attempted != 0 || st.Waiting == 0 {
		t.Errorf("a relay found down 10s ago: %+v, %d dials; want none, the messages waiting", st, *dials)
	}
	if r.anyDue() {
		t.Errorf("anyDue says yes while the relay is known down")
	}
	if r.Run(context.Background(), true); *dials != 1 {
		t.Errorf("a forced run made %d dials, want 1", *dials)
	}
}
