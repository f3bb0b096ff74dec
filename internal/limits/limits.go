// Package limits keeps what every relaymail process on the machine must
// agree on about a smarthost: how many messages went to it lately (its
// rate limits) and whether it asked us to slow down (a throttle pause).
//
// The state lives in small JSON files under the spool directory's limits/
// directory, one per key ("route:<name>" for a route's account, "host:<host:port>"
// for a server), each read and rewritten under an exclusive flock, so
// senders, background runners and queue runs share it and it survives
// restarts. The files take the spool's sharing (spool.Modes).
//
// Losing a file costs at most a burst above the limit, never a message: a
// caller that cannot read or write the state sends anyway and says so.
package limits

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"relaymail/internal/spool"
)

// Policy is a route's limits; the zero value has none.
type Policy struct {
	Rate  int           // at most Rate messages in any window of Per; 0: no rate limit
	Per   time.Duration // the rate's window
	Daily int           // at most Daily messages in any 24 hours; 0: none
}

// Zero reports whether p limits nothing.
func (p Policy) Zero() bool { return p.Rate <= 0 && p.Daily <= 0 }

// String is the policy as the config writes it: "30/minute, 500/day".
func (p Policy) String() string {
	var parts []string
	if p.Rate > 0 {
		parts = append(parts, fmt.Sprintf("%d/%s", p.Rate, Unit(p.Per)))
	}
	if p.Daily > 0 {
		parts = append(parts, fmt.Sprintf("%d/day", p.Daily))
	}
	return strings.Join(parts, ", ")
}

// Unit names a rate's window: "second", "minute", "hour", "day", or the
// duration ("90s").
func Unit(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case Day:
		return "day"
	}
	return d.String()
}

// Day is the window of a daily limit: any 24 hours, not the calendar day.
const Day = 24 * time.Hour

// Pause bounds: a throttle pauses a host for the first pause (by default
// FirstPause), then twice as long each time it throttles again before a
// message goes through, up to MaxPause (or the first pause, if longer).
const (
	FirstPause = time.Minute
	MaxPause   = time.Hour
)

// Store is the state under one spool directory.
type Store struct {
	dir string
	now func() time.Time
}

// Open returns the store of spoolDir; nothing is created until a write.
func Open(spoolDir string, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{dir: filepath.Join(spoolDir, "limits"), now: now}
}

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// state is one key's file.
type state struct {
	// Sends are the Unix milliseconds at which messages were handed to
	// the smarthost, oldest first, within the longest window in force.
	Sends []int64 `json:"sends,omitempty"`
	// PausedUntil (Unix ms) ends the current throttle pause; Interval is
	// its length, doubled by the next throttle, cleared by a success.
	PausedUntil int64  `json:"paused_until,omitempty"`
	Interval    int64  `json:"interval_ms,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// DownSince (Unix ms) is the first of the failed attempts in a row
	// to open a session; Failures counts them, DownReason is the last
	// one's. A session that opens clears them.
	DownSince  int64  `json:"down_since,omitempty"`
	LastFail   int64  `json:"last_failure,omitempty"`
	Failures   int    `json:"failures,omitempty"`
	DownReason string `json:"down_reason,omitempty"`
}

// Reserve takes up to n slots for messages of key under p, now, and
// returns how many it granted, and the stamp that Release takes back.
// When it grants fewer than n, next is when the next slot frees. A slot
// is used whether or not the message then goes through (the smarthost
// counts attempts), unless it is released because no connection could be
// made.
func (s *Store) Reserve(key string, p Policy, n int) (granted int, next time.Time, stamp int64, err error) {
	if p.Zero() || n <= 0 {
		return n, time.Time{}, 0, nil
	}
	err = s.update(key, func(st *state) bool {
		now := s.now()
		st.prune(now, p)
		ms := now.UnixMilli()
		stamp = ms
		for granted < n {
			if t, full := st.full(now, p); full {
				next = t
				break
			}
			st.Sends = append(st.Sends, ms)
			granted++
		}
		return true
	})
	if err != nil {
		return n, time.Time{}, 0, err
	}
	return granted, next, stamp, nil
}

// Release gives back n slots that Reserve took at stamp, for messages that
// never reached the smarthost (no connection, or the host was paused).
func (s *Store) Release(key string, stamp int64, n int) error {
	if n <= 0 || stamp == 0 {
		return nil
	}
	return s.update(key, func(st *state) bool {
		for i := len(st.Sends) - 1; i >= 0 && n > 0; i-- {
			if st.Sends[i] == stamp {
				st.Sends = append(st.Sends[:i], st.Sends[i+1:]...)
				n--
			}
		}
		return true
	})
}

// Next returns when the next message of key may leave under p (now or
// earlier when a slot is free) and how many went in the rate's window and
// in the last day.
func (s *Store) Next(key string, p Policy) (next time.Time, inRate, inDay int, err error) {
	st, err := s.read(key)
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	now := s.now()
	st.prune(now, p)
	if t, full := st.full(now, p); full {
		next = t
	}
	return next, st.count(now, p.Per+Slack(p.Per)), st.count(now, Day+Slack(Day)), nil
}

// prune drops sends older than every window of p.
func (st *state) prune(now time.Time, p Policy) {
	keep := time.Duration(0)
	if p.Rate > 0 {
		keep = p.Per + Slack(p.Per)
	}
	if p.Daily > 0 {
		keep = max(keep, Day+Slack(Day))
	}
	cut := now.Add(-keep).UnixMilli()
	i := 0
	for i < len(st.Sends) && st.Sends[i] <= cut {
		i++
	}
	st.Sends = st.Sends[i:]
}

// count is the number of sends within window of now.
func (st *state) count(now time.Time, window time.Duration) int {
	cut := now.Add(-window).UnixMilli()
	n := 0
	for _, t := range st.Sends {
		if t > cut {
			n++
		}
	}
	return n
}

// Slack is how much longer than a limit's window the store counts: a
// tenth of it, from 100 ms to 5 s. A send is counted when its slot is
// taken, a moment before its MAIL reaches the server, and that moment is
// longer for the first message of a session (connect, TLS, AUTH) than for
// the next ones; without the slack the server could see one message too
// many in its own window.
func Slack(window time.Duration) time.Duration {
	return min(max(window/10, 100*time.Millisecond), 5*time.Second)
}

// full reports whether one more send now would break p, and when a slot
// frees: the send that would leave the window first, plus the window.
func (st *state) full(now time.Time, p Policy) (next time.Time, full bool) {
	check := func(limit int, window time.Duration) {
		window += Slack(window)
		if limit <= 0 || st.count(now, window) < limit {
			return
		}
		// The sends in the window are the newest ones; the limit-th
		// newest leaving frees a slot.
		t := time.UnixMilli(st.Sends[len(st.Sends)-limit]).Add(window)
		if t.After(next) {
			next = t
		}
		full = true
	}
	check(p.Rate, p.Per)
	check(p.Daily, Day)
	return next, full
}

// Throttle pauses host after it asked us to slow down (reason: its
// reply), for pause (FirstPause when 0), or twice the last pause when no
// message went through since, up to MaxPause. first reports that the host
// was not paused already, so the caller logs the pause once.
func (s *Store) Throttle(host, reason string, pause time.Duration) (until time.Time, first bool, err error) {
	if pause <= 0 {
		pause = FirstPause
	}
	err = s.update("host:"+host, func(st *state) bool {
		now := s.now()
		first = st.PausedUntil <= now.UnixMilli()
		if !first {
			until = time.UnixMilli(st.PausedUntil)
			return false // another process paused it meanwhile
		}
		d := pause
		if st.Interval > 0 {
			d = min(2*time.Duration(st.Interval)*time.Millisecond, max(MaxPause, pause))
		}
		until = now.Add(d)
		st.PausedUntil, st.Interval, st.Reason = until.UnixMilli(), d.Milliseconds(), reason
		return true
	})
	return until, first, err
}

// Paused returns until when host is paused and why; a zero time when it
// is not.
func (s *Store) Paused(host string) (until time.Time, reason string, err error) {
	st, err := s.read("host:" + host)
	if err != nil || st.PausedUntil <= s.now().UnixMilli() {
		return time.Time{}, "", err
	}
	return time.UnixMilli(st.PausedUntil), st.Reason, nil
}

// Throttled reports whether host has been paused since its last success,
// so that the caller clears it after the next one (and reads nothing
// more while it is not).
func (s *Store) Throttled(host string) bool {
	st, err := s.read("host:" + host)
	return err == nil && st.Interval > 0
}

// Clear resets host's pause interval after a message went through,
// unless the host is paused now: then another process heard it say slow
// down after that success, and the pause stands.
func (s *Store) Clear(host string) error {
	return s.update("host:"+host, func(st *state) bool {
		if st.Interval == 0 && st.PausedUntil == 0 || st.PausedUntil > s.now().UnixMilli() {
			return false
		}
		st.PausedUntil, st.Interval, st.Reason = 0, 0, ""
		return true
	})
}

// Unreachable records a failed attempt to open a session with host (no
// connection, TLS or AUTH failed): queue runs leave the messages waiting
// for it untouched, so this is what mailq shows of the reason.
func (s *Store) Unreachable(host, reason string) error {
	return s.update("host:"+host, func(st *state) bool {
		now := s.now().UnixMilli()
		if st.DownSince == 0 {
			st.DownSince = now
		}
		st.LastFail = now
		st.Failures++
		st.DownReason = reason
		return true
	})
}

// Reachable clears what Unreachable recorded, after a session with host
// opened, and reports what Throttled would, from the same read: it is on
// every send's path. It writes nothing when there is nothing to clear.
func (s *Store) Reachable(host string) (throttled bool, err error) {
	st, err := s.read("host:" + host)
	if err != nil || st.Failures == 0 {
		return err == nil && st.Interval > 0, err
	}
	return st.Interval > 0, s.update("host:"+host, func(st *state) bool {
		if st.Failures == 0 {
			return false
		}
		st.DownSince, st.LastFail, st.Failures, st.DownReason = 0, 0, 0, ""
		return true
	})
}

// Outage is what Down knows of a host that could not be reached.
type Outage struct {
	Since    time.Time // the first failed attempt in a row
	Last     time.Time // the last one
	Failures int       // how many in a row; 0: the last attempt worked
	Reason   string    // the last one's
}

// Down returns the failed attempts in a row to open a session with host;
// the zero Outage when the last attempt worked.
func (s *Store) Down(host string) (Outage, error) {
	st, err := s.read("host:" + host)
	if err != nil || st.Failures == 0 {
		return Outage{}, err
	}
	return Outage{Since: time.UnixMilli(st.DownSince), Last: time.UnixMilli(st.LastFail), Failures: st.Failures, Reason: st.DownReason}, nil
}

// path is the file of key: readable, and unique by a hash.
func (s *Store) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, key)
	if len(clean) > 64 {
		clean = clean[:64]
	}
	return filepath.Join(s.dir, clean+"."+hex.EncodeToString(sum[:4])+".json")
}

// read returns key's state under a shared lock; a missing file is the
// zero state.
func (s *Store) read(key string) (state, error) {
	var st state
	f, err := os.OpenFile(s.path(key), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("rate-limit state: %w", err)
	}
	defer f.Close()
	if err := flock(f, syscall.LOCK_SH); err != nil {
		return st, err
	}
	return decode(f)
}

// update runs f on key's state under an exclusive lock and writes the
// state back when f returns true.
func (s *Store) update(key string, f func(*state) bool) error {
	fileMode, dirMode := spool.Modes(filepath.Dir(s.dir))
	if err := os.Mkdir(s.dir, dirMode); err == nil {
		os.Chmod(s.dir, dirMode) // the umask narrowed it
	} else if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("rate-limit state: %w", err)
	}
	file, err := os.OpenFile(s.path(key), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return fmt.Errorf("rate-limit state: %w", err)
	}
	defer file.Close()
	if fi, err := file.Stat(); err == nil && fi.Mode().Perm() != fileMode {
		file.Chmod(fileMode) // the umask narrowed it; fails harmlessly if not ours
	}
	if err := flock(file, syscall.LOCK_EX); err != nil {
		return err
	}
	st, err := decode(file)
	if err != nil {
		st = state{} // a damaged file starts over: a burst at worst
	}
	if !f(&st) {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := file.Truncate(0); err != nil {
		return fmt.Errorf("rate-limit state: %w", err)
	}
	if _, err := file.WriteAt(b, 0); err != nil {
		return fmt.Errorf("rate-limit state: %w", err)
	}
	return nil
}

func decode(f *os.File) (state, error) {
	var st state
	b, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return st, fmt.Errorf("rate-limit state: %w", err)
	}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("rate-limit state %s: %w", f.Name(), err)
	}
	return st, nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			if err != nil {
				return fmt.Errorf("rate-limit state: lock %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}
