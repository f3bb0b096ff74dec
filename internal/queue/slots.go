package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"relaymail/internal/spool"
)

// # Runner slots
//
// Background deliveries (sendmail -odb) and queue runs share a small number
// of slots, one connection to the smarthost each: a burst of 200 messages
// travels over at most max_connections connections, messages back to back,
// instead of 200 connections at once. A slot is an flock on
// <spool>/run/slot.<n>; the kernel frees it when its holder dies.
//
// A delivery that finds every slot taken leaves its message to the holders.
// No message is stranded: a holder releases its slot only after a pass
// that attempted nothing, and then looks at the queue once more; a message
// committed before that look is seen, and one committed after it finds the
// slot free.

// Slot is a held runner slot.
type Slot struct{ f *os.File }

// Release frees the slot.
func (s *Slot) Release() { s.f.Close() }

// AcquireSlot takes one of n runner slots under spoolDir without waiting.
// It returns nil and no error when all are taken.
//
// The slots take the spool's sharing: when its directory gives its group
// rwx (the setgid install), run/ is 0770 and the slot files 0660, so every
// member's process can lock each one; otherwise 0700 and 0600. A slot file
// is opened read-only: flock needs no more.
func AcquireSlot(spoolDir string, n int) (*Slot, error) {
	fileMode, dirMode := spool.Modes(spoolDir)
	dir := filepath.Join(spoolDir, "run")
	if err := os.Mkdir(dir, dirMode); err == nil {
		os.Chmod(dir, dirMode) // the umask narrowed it
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("runner slots: %w", err)
	}
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("slot.%d", i))
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, fileMode)
		if err != nil {
			return nil, fmt.Errorf("runner slots: %w", err)
		}
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != fileMode {
			f.Chmod(fileMode) // the umask narrowed it; fails harmlessly if not ours
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err != syscall.EINTR {
				break
			}
		}
		if err == nil {
			return &Slot{f: f}, nil
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("runner slots: lock %s: %w", path, err)
		}
	}
	return nil, nil
}

// RunnersIdle reports whether no runner holds a slot under spoolDir: every
// slot file there, however many a config allows, can be locked now. A
// spool without runner slots is idle.
func RunnersIdle(spoolDir string) bool {
	paths, _ := filepath.Glob(filepath.Join(spoolDir, "run", "slot.*"))
	for _, path := range paths {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if err != nil {
			return false
		}
	}
	return true
}

// WaitSlot takes one of n runner slots, waiting while all are held, until
// ctx ends (then it returns nil and ctx's error).
func WaitSlot(ctx context.Context, spoolDir string, n int) (*Slot, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		slot, err := AcquireSlot(spoolDir, n)
		if err != nil || slot != nil {
			return slot, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// SlotFree reports whether one of n runner slots under spoolDir is free
// now, so that starting a background Drain is worth it: when every slot is
// taken, their holders will see a message committed before the call (see
// Runner slots). It takes a free slot and lets go of it at once; a Drain
// that finds every slot taken in that instant returns, which is why a true
// answer must be followed by starting a Drain. Errors answer true: better
// a Drain too many than a message left waiting.
func SlotFree(spoolDir string, n int) bool {
	slot, err := AcquireSlot(spoolDir, n)
	if err != nil {
		return true
	}
	if slot == nil {
		return false
	}
	slot.Release()
	return true
}

// Drain delivers what is due while it holds a runner slot, until a pass
// attempts nothing and no message arrives for linger (its session stays
// open meanwhile, so a burst of sends travels over the runners already
// connected); then it lets go and looks once more for messages that
// arrived as it did. Messages it held for a rate limit or a pause it waits
// for, when they come due within HoldWait. It returns at once when every
// slot is taken: the holders deliver.
func (r *Runner) Drain(ctx context.Context, slots int, linger time.Duration) (Stats, error) {
	var total Stats
	var w *arrivals
	if linger > 0 {
		// Watching starts before the first pass, so an arrival during a
		// pass is not missed by the wait after it.
		w, _ = watchArrivals(r.o.Spool.Dir())
		if w != nil {
			defer w.close()
		}
	}
	r.keep = true
	// The session ends before the slot is let go: a slot is one
	// connection, and the next holder may open its own at once.
	closeSession := func() {
		for _, sess := range r.kept {
			sess.Close()
		}
		r.kept = nil
	}
	defer func() {
		r.keep = false
		closeSession()
	}()
	for round := 0; ctx.Err() == nil; round++ {
		slot, err := AcquireSlot(r.o.Spool.Dir(), slots)
		if err != nil || slot == nil {
			return total, err
		}
		if round == 0 && r.o.Route == nil && r.anyDue() {
			// Connect first and list after: messages committed while
			// TCP, TLS and AUTH take their round trips go in the first
			// batch instead of waiting for a second one. (With several
			// routes, which one is not known before the listing.)
			var sess Session
			if sess, r.dialErr = r.o.Dial(ctx, ""); sess != nil {
				r.kept = map[string]Session{"": sess}
				delete(r.downs, "")
			}
		}
		var busy time.Time // since when passes have found only busy messages
		for ctx.Err() == nil {
			st, err := r.Run(ctx, false)
			total.add(st)
			if err != nil {
				closeSession()
				slot.Release()
				return total, err
			}
			if st.Attempted > 0 {
				continue
			}
			if held := r.nextHeld(); !held.IsZero() {
				// Messages wait for a rate-limit slot or the end of a
				// pause: stay for them when that is soon, without a
				// connection the smarthost would time out meanwhile, and
				// deliver what arrives meanwhile (this slot's holder is
				// who other senders count on).
				wait := held.Sub(r.o.Now()) + 10*time.Millisecond
				if wait > r.o.HoldWait {
					break
				}
				if wait > linger {
					closeSession()
				}
				deadline := time.Now().Add(wait)
				if w == nil || !w.wait(wait) {
					select { // no watch, or it broke: sleep out the rest
					case <-ctx.Done():
					case <-time.After(time.Until(deadline)):
					}
				}
				continue
			}
			if busy.IsZero() {
				busy = time.Now()
			}
			if st.Busy > 0 && time.Since(busy) < linger {
				// A message held by someone else: its sender finishing
				// the commit (the envelope is visible a moment before
				// the sender lets go), a sender delivering it itself, or
				// another runner. Look again soon rather than wait for
				// an arrival that was already announced.
				time.Sleep(20 * time.Millisecond)
				continue
			}
			busy = time.Time{}
			if w == nil || !w.wait(linger) {
				break
			}
		}
		closeSession()
		slot.Release()
		// Look once more: a message committed, or held for a limit, while
		// this drain was leaving found every slot taken and started no
		// drain of its own. Due ones get three rounds in all; held ones
		// are waited for as long as they come due within HoldWait.
		if r.anyDue() && round < 2 {
			continue
		}
		if held := r.nextHeld(); !held.IsZero() && held.Sub(r.o.Now()) <= r.o.HoldWait {
			continue
		}
		break
	}
	return total, nil
}

// nextHeld returns when the first message held for a rate limit or a
// pause comes due, if that is later than now; zero when none waits. Those
// are the routes this runner found full or paused, and messages that a
// sender held (by any process). (One due already and not attempted is
// another process's to deliver: it is busy.)
func (r *Runner) nextHeld() time.Time {
	now := r.o.Now()
	var first time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	for key := range r.blocked {
		if b, ok := r.waiting(key, now); ok && b.hold != nil {
			earlier(b.until)
		}
	}
	if _, ok := r.waiting("", now); ok && r.o.Route == nil {
		return first // nothing leaves before the one route's block ends
	}
	r.o.Spool.WalkDue(now.Add(r.o.HoldWait), func(e *spool.Envelope) bool {
		if e.Held && !r.stuck[e.ID] && len(e.Pending()) > 0 && !e.NextAttempt.After(now.Add(r.o.HoldWait)) {
			earlier(e.NextAttempt)
		}
		return true
	})
	return first
}

// anyDue reports whether some message waits for an attempt now, on a
// route that is not blocked. It stops at the first.
func (r *Runner) anyDue() bool {
	now := r.o.Now()
	asked := map[string]bool{}
	if r.o.Route == nil {
		r.learn("", now, asked)
		if _, ok := r.waiting("", now); ok {
			return false
		}
	}
	due := false
	r.o.Spool.WalkDue(now, func(e *spool.Envelope) bool {
		r.learn(r.route(e), now, asked)
		if _, blocked := r.waiting(r.route(e), now); blocked {
			return true
		}
		due = !r.stuck[e.ID] && !e.NextAttempt.After(now) && len(e.Pending()) > 0
		return !due
	})
	return due
}

func (s *Stats) add(o Stats) {
	s.Due += o.Due
	s.Attempted += o.Attempted
	s.Delivered += o.Delivered
	s.Deferred += o.Deferred
	s.Bounced += o.Bounced
	s.Busy += o.Busy
	s.Damaged += o.Damaged
	s.Held += o.Held
	s.Waiting += o.Waiting
}
