package spool

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

// t0 is the tests' clock start, in UTC as Decode returns times.
func t0() time.Time { return time.Date(2024, 11, 20, 10, 0, 0, 0, time.UTC) }

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newSpool opens a spool in a new temporary directory with a clock stopped
// at t0 and seeded random bits.
func newSpool(t *testing.T) (*Spool, *testClock) {
	t.Helper()
	clock := &testClock{t: t0()}
	s, err := Open(Options{
		Dir:  filepath.Join(t.TempDir(), "spool"),
		Now:  clock.Now,
		Rand: rand.NewChaCha8([32]byte{1, 2, 3}),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, clock
}

// testEnvelope returns an envelope for a cron mail to rcpts, as a caller
// fills it before Commit.
func testEnvelope(rcpts ...string) *Envelope {
	if len(rcpts) == 0 {
		rcpts = []string{"root@example.com"}
	}
	e := &Envelope{From: "cron@example.com", UID: 33, User: "www-data", MessageID: "123.456@host.example.com"}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, Recipient{Addr: r, State: Pending, Notify: []string{"FAILURE"}})
	}
	return e
}

// commit queues a message with body and returns its id.
func commit(t *testing.T, s *Spool, body string) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(testEnvelope()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return w.ID
}

// entries returns the sorted names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

// wantEntries fails unless dir holds exactly names.
func wantEntries(t *testing.T, dir string, names ...string) {
	t.Helper()
	slices.Sort(names)
	if got := entries(t, dir); !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// wantError fails unless err carries code and its message holds every
// fragment.
func wantError(t *testing.T, what string, err error, code sysexits.Code, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s = nil error, want code %d", what, code)
		return
	}
	if got := sysexits.CodeOf(err); got != code {
		t.Errorf("%s = %v (code %d), want code %d", what, err, got, code)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s = %q, want it to contain %q", what, err, f)
		}
	}
}

// faultAt returns a fault hook that fails with err the nth call (from 1)
// of op on a file of the kind given: "tmp" for temporary files, "dir" for
// Dir itself, or the end of the name (".msg", ".env").
func faultAt(op, kind string, n int, err error) func(string, string) error {
	var mu sync.Mutex
	seen := 0
	return func(o, path string) error {
		mu.Lock()
		defer mu.Unlock()
		if o == op && isKind(path, kind) {
			seen++
			if seen == n {
				return err
			}
		}
		return nil
	}
}

func isKind(path, kind string) bool {
	base := filepath.Base(path)
	switch kind {
	case "tmp":
		return isTemp(base)
	case "dir":
		return base == "spool"
	case "":
		return true
	}
	return strings.HasSuffix(base, kind)
}

// isTemp reports whether a name in Dir is a temporary file.
func isTemp(name string) bool { return strings.HasPrefix(name, "tmp-") }
