package limits

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newStore(t *testing.T) (*Store, *clock) {
	c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	return Open(t.TempDir(), c.now), c
}

// TestRate: 3/minute grants three, then names the slot the first send
// frees, then grants again once the window has moved past it.
func TestRate(t *testing.T) {
	s, c := newStore(t)
	p := Policy{Rate: 3, Per: time.Minute}
	got, next, _, err := s.Reserve("route:", p, 5)
	window := time.Minute + Slack(time.Minute) // 1m5s
	if err != nil || got != 3 || !next.Equal(c.now().Add(window)) {
		t.Fatalf("Reserve 5 = %d, %v, %v; want 3 and a slot in %v", got, next, err, window)
	}
	c.add(30 * time.Second)
	if got, next, _, _ := s.Reserve("route:", p, 1); got != 0 || !next.Equal(c.now().Add(window-30*time.Second)) {
		t.Fatalf("after 30 s: %d, next %v", got, next)
	}
	if n, inRate, _, _ := s.Next("route:", p); inRate != 3 || n.IsZero() {
		t.Errorf("Next = %v, %d in the window", n, inRate)
	}
	c.add(window - 30*time.Second + time.Millisecond)
	if got, _, _, _ := s.Reserve("route:", p, 5); got != 3 {
		t.Fatalf("after a minute: %d granted, want 3", got)
	}
	// Another key has its own count.
	if got, _, _, _ := s.Reserve("route:other", p, 3); got != 3 {
		t.Errorf("other key: %d granted", got)
	}
}

// TestDaily: the daily limit holds across rate windows and frees 24 hours
// after the first send.
func TestDaily(t *testing.T) {
	s, c := newStore(t)
	p := Policy{Rate: 10, Per: time.Second, Daily: 25}
	total := 0
	for range 10 {
		got, _, _, err := s.Reserve("k", p, 10)
		if err != nil {
			t.Fatal(err)
		}
		total += got
		c.add(time.Second)
	}
	if total != 25 {
		t.Fatalf("%d granted in a day, want 25", total)
	}
	_, next, _, _ := s.Reserve("k", p, 1)
	if want := time.Date(2026, 11, 28, 10, 0, 5, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next slot %v, want %v", next, want)
	}
	c.t = next.Add(time.Millisecond)
	if got, _, _, _ := s.Reserve("k", p, 20); got != 10 {
		t.Errorf("a day (and the slack) later: %d granted, want 10 (the first second's sends left the window)", got)
	}
}

// TestConcurrent: processes (here goroutines with their own Store) never
// grant more than the rate between them.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Now()}
	p := Policy{Rate: 20, Per: time.Hour}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Open(dir, c.now)
			for range 10 {
				got, _, _, err := s.Reserve("k", p, 1)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += got
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != 20 {
		t.Errorf("%d granted, want 20", total)
	}
}

// TestThrottle: pauses double while the host keeps throttling, up to the
// cap, and a success resets them.
func TestThrottle(t *testing.T) {
	s, c := newStore(t)
	until, first, err := s.Throttle("mx:587", "421 4.7.0 slow down", 0)
	if err != nil || !first || !until.Equal(c.now().Add(FirstPause)) {
		t.Fatalf("Throttle = %v, %v, %v", until, first, err)
	}
	if _, first, _ := s.Throttle("mx:587", "again", 0); first {
		t.Errorf("a second throttle during the pause counts as the first")
	}
	if u, why, _ := s.Paused("mx:587"); !u.Equal(until) || why != "421 4.7.0 slow down" {
		t.Errorf("Paused = %v %q", u, why)
	}
	want := FirstPause
	for range 10 {
		c.t = until
		if u, _, _ := s.Paused("mx:587"); !u.IsZero() {
			t.Fatalf("still paused at its end: %v", u)
		}
		want = min(2*want, MaxPause)
		until, _, _ = s.Throttle("mx:587", "421", 0)
		if got := until.Sub(c.now()); got != want {
			t.Fatalf("pause %v, want %v", got, want)
		}
	}
	if !s.Throttled("mx:587") {
		t.Errorf("Throttled = false")
	}
	if err := s.Clear("mx:587"); err != nil {
		t.Fatal(err)
	}
	if !s.Throttled("mx:587") {
		t.Errorf("a success during a pause another process set cleared it")
	}
	c.t = until
	if err := s.Clear("mx:587"); err != nil {
		t.Fatal(err)
	}
	if s.Throttled("mx:587") {
		t.Errorf("Throttled after Clear")
	}
	if until, _, _ := s.Throttle("mx:587", "421", 0); until.Sub(c.now()) != FirstPause {
		t.Errorf("after a success the pause starts over, got %v", until.Sub(c.now()))
	}
}

// TestSharedModes: under a group-shared spool the state files are the
// group's too; a damaged file starts over instead of failing.
func TestSharedModes(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	s := Open(dir, nil)
	if _, _, _, err := s.Reserve("k", Policy{Rate: 1, Per: time.Second}, 1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.path("k"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("state file mode %v, want 0660", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(s.path("k"))); fi.Mode().Perm() != 0o770 {
		t.Errorf("limits dir mode %v, want 0770", fi.Mode().Perm())
	}
	os.WriteFile(s.path("k"), []byte("{garbage"), 0o660)
	if got, _, _, err := s.Reserve("k", Policy{Rate: 1, Per: time.Hour}, 1); err != nil || got != 1 {
		t.Errorf("damaged state: %d, %v", got, err)
	}
}

func TestThrottling(t *testing.T) {
	for _, tt := range []struct {
		code     int
		enhanced string
		text     string
		want     bool
	}{
		{421, "4.7.0", "Too many concurrent SMTP connections; please try again later.", true},
		{421, "", "Service not available, closing transmission channel", true},
		{451, "4.7.1", "Please try again later", true},
		{454, "4.7.0", "Too many login attempts, please try again later.", true},
		{450, "4.3.2", "System not accepting network messages", true},
		{451, "", "Ratelimit exceeded for sender", true},
		{421, "4.7.0", "[TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected volume or user complaints", true},
		{454, "4.7.0", "Throttling failure: Maximum sending rate exceeded.", true},
		{550, "5.4.5", "Daily user sending limit exceeded.", true},
		{554, "", "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; sending quota exceeded", true},
		{452, "4.5.3", "Too many recipients", false},
		{451, "4.7.1", "Greylisted, see https://postgrey.schweikert.ch/help/example.net.html", false},
		{451, "4.3.0", "Temporary lookup failure", false},
		{450, "4.2.0", "Mailbox unavailable", false},
		{550, "5.1.1", "User unknown", false},
		{535, "5.7.8", "Username and Password not accepted", false},
		{250, "2.0.0", "Ok", false},
	} {
		if got := Throttling(tt.code, tt.enhanced, tt.text); got != tt.want {
			t.Errorf("Throttling(%d %s %s) = %v, want %v", tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
}

func TestSlack(t *testing.T) {
	for _, tt := range []struct{ window, want time.Duration }{
		{time.Second, 100 * time.Millisecond},
		{3 * time.Second, 300 * time.Millisecond},
		{time.Minute, 5 * time.Second},
		{Day, 5 * time.Second},
	} {
		if got := Slack(tt.window); got != tt.want {
			t.Errorf("Slack(%v) = %v, want %v", tt.window, got, tt.want)
		}
	}
}

// TestRelease: slots of messages that never reached the server come back.
func TestRelease(t *testing.T) {
	s, c := newStore(t)
	p := Policy{Daily: 3}
	got, _, stamp, err := s.Reserve("k", p, 3)
	if err != nil || got != 3 {
		t.Fatalf("Reserve = %d, %v", got, err)
	}
	c.add(time.Second)
	s.Reserve("k", p, 0)
	if err := s.Release("k", stamp, 2); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := s.Reserve("k", p, 5); got != 2 {
		t.Errorf("after releasing 2: %d granted, want 2", got)
	}
}

func TestRecipientThrottling(t *testing.T) {
	for _, tt := range []struct {
		code int
		text string
		want bool
	}{
		{450, "4.7.1 <a@example.net>: Recipient address rejected: Access denied", false},
		{454, "4.7.1 <a@example.net>: Relay access denied", false},
		{451, "4.7.1 Please try again later", false},
		{451, "4.7.0 Rate limit exceeded for this sender", true},
		{450, "4.7.1 Error: too much mail from 127.0.0.1", true},
		{421, "4.7.0 Too many connections", true},
		{452, "4.5.3 Too many recipients", false},
	} {
		if got := RecipientThrottling(tt.code, tt.text); got != tt.want {
			t.Errorf("RecipientThrottling(%d %s) = %v, want %v", tt.code, tt.text, got, tt.want)
		}
	}
}

// TestDown: failed attempts in a row are counted from the first, the last
// reason is kept, a pause is not disturbed, and a session that opens
// clears them.
func TestDown(t *testing.T) {
	s, c := newStore(t)
	if o, err := s.Down("mx:587"); o != (Outage{}) || err != nil {
		t.Fatalf("Down of a new host = %+v, %v", o, err)
	}
	first := c.now()
	if err := s.Unreachable("mx:587", "cannot connect: connection refused"); err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	until, _, _ := s.Throttle("mx:587", "421 slow down", 0)
	s.Unreachable("mx:587", "cannot connect: no route to host")
	o, err := s.Down("mx:587")
	if want := (Outage{Since: first, Last: c.now(), Failures: 2, Reason: "cannot connect: no route to host"}); !o.Since.Equal(want.Since) || !o.Last.Equal(want.Last) || o.Failures != 2 || o.Reason != want.Reason || err != nil {
		t.Errorf("Down = %+v, %v; want %+v", o, err, want)
	}
	if throttled, err := s.Reachable("mx:587"); err != nil || !throttled {
		t.Fatalf("Reachable of a paused host = %v, %v; want throttled", throttled, err)
	}
	if o, _ := s.Down("mx:587"); o != (Outage{}) {
		t.Errorf("Down after Reachable = %+v", o)
	}
	if throttled, _ := s.Reachable("mx:587"); !throttled {
		t.Errorf("Reachable with no outage to clear forgot the throttle")
	}
	if throttled, _ := s.Reachable("other:25"); throttled {
		t.Errorf("Reachable says a host never paused is throttled")
	}
	if u, _, _ := s.Paused("mx:587"); !u.Equal(until) {
		t.Errorf("Reachable ended the pause: Paused = %v, want %v", u, until)
	}
	if o, _ := s.Down("other:25"); o.Failures != 0 {
		t.Errorf("another host is down: %+v", o)
	}
}
