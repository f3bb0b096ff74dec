// Package queue is the delivery engine: it takes messages from the spool,
// hands them to the smarthost over as few sessions as it can, records each
// recipient's outcome in the spool, retries with backoff, expires old
// messages and has failures bounced.
//
// One engine serves every way out: the interactive send (DeliverID right
// after the spool commit), background delivery, sendmail -q and -q5m.
//
// # Outcomes
//
//   - 2xx: the recipient is sent and never sent again.
//   - 4xx, no reply, a broken connection: the recipient stays pending; the
//     message's next attempt moves out by Backoff.
//   - 5xx, or pending past MaxAge: the recipient is failed and bounced to
//     the envelope sender. The bounce is queued before the failure is
//     recorded, so a crash between the two gives two bounces, never none.
//   - A message with no pending recipient leaves the queue, except a
//     failed message from the null sender, which cannot be bounced and is
//     kept in the spool's failed area for the operator.
//
// # Crash window
//
// A process killed after the smarthost's final 250 and before the envelope
// update delivers that message again on the next run: RFC 5321 6.1 prefers
// a duplicate to a loss. The window is one envelope write; for a pipelined
// batch (Run), the batch in flight: its outcomes are recorded once every
// reply is in.
//
// # Long queues
//
// A run walks the spool (spool.Walk) instead of listing it, so its memory
// is one batch per route, whatever the queue's length. A route that cannot
// take mail now (its relay down, paused, or its rate limit used up) is
// blocked: its messages keep their envelopes unwritten and the run goes on
// without them, so that such a route costs one dial or one reservation per
// run, not an envelope write per message.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"relaymail/internal/maillog"
	"relaymail/internal/spool"
)

// Result is the fate of one recipient in one attempt.
type Result struct {
	Rcpt  string
	Code  int    // SMTP reply code; 0 when no reply came (network trouble)
	Reply string // the reply or our reason, one line
}

// Sent reports a 2xx: the smarthost took the recipient.
func (r Result) Sent() bool { return r.Code/100 == 2 }

// Permanent reports a 5xx refusal.
func (r Result) Permanent() bool { return r.Code/100 == 5 }

// Session carries messages to the smarthost.
type Session interface {
	// Send delivers one message to rcpts, giving one result per recipient
	// in order. An error says the message failed as a whole; the results
	// then all carry that failure.
	Send(env *spool.Envelope, rcpts []string, body io.Reader) ([]Result, error)
	// Broken reports that the session cannot carry another message.
	Broken() bool
	Close()
}

// Batcher is a Session that can send several messages at once: in one
// round trip when the server allows it. Run uses it for runs of due
// messages.
type Batcher interface {
	SendBatch(jobs []Job) []Sent
}

// Job is one message for SendBatch.
type Job struct {
	Env   *spool.Envelope
	Rcpts []string
	Body  io.Reader
}

// Sent is what Send would have returned for one Job.
type Sent struct {
	Results []Result
	Err     error
}

// Batches of Run: at most this many messages and about this many bytes.
const (
	batchMessages = 50
	batchBytes    = 8 << 20
)

// Options configure a Runner.
type Options struct {
	Spool *spool.Spool
	// Dial opens a session for the messages of route. Its error (connect,
	// TLS, AUTH) defers every message it was opened for.
	Dial func(ctx context.Context, route string) (Session, error)
	// Route names the route of a message: messages of one route share
	// sessions, those of others get their own. nil: one route, "".
	Route func(env *spool.Envelope) string
	// Relay names a route's relay (host:port) for the log; nil: none.
	Relay func(route string) string
	Log   *maillog.Logger
	Now   func() time.Time
	// MaxAge is how long a recipient may stay pending before it fails.
	// Default 5 days.
	MaxAge time.Duration
	// Backoff gives the wait after the n-th failed attempt (n >= 1).
	// Default: 1m, 2m, 4m, ... capped at 1h.
	Backoff func(n int) time.Duration
	// Bounce queues a delivery status notification for failed, whose
	// original message is original. nil: failures are not bounced.
	Bounce func(env *spool.Envelope, failed []spool.Recipient, original io.Reader) error
	// Limit reserves sending slots for n messages of route under its rate
	// limits and returns how many it granted; for the rest, a *Hold that
	// says until when they wait; and release, which gives back slots of
	// messages that never reached the smarthost (the dial failed). nil:
	// no limits.
	Limit func(route string, n int) (granted int, hold *Hold, release func(n int))
	// MaxPerSession is how many messages one session of route may carry
	// before a new one is opened; 0 or nil: no limit.
	MaxPerSession func(route string) int
	// Hint says what to do about a recipient's failure, for the log;
	// nil or "": nothing.
	Hint func(env *spool.Envelope, res Result) string
	// HoldWait is how long a Drain waits for held messages to come due
	// before it leaves them to the next queue run. Default 15 minutes.
	HoldWait time.Duration
	// Down says how many attempts in a row to reach route's relay have
	// failed, in any process, and when the last one did; 0 when the last
	// worked. Runs that are not forced then leave the route's messages
	// waiting, without a dial, as this runner would after its own
	// failure. nil: only this runner's own failures count.
	Down func(route string) (failures int, last time.Time)
}

// Hold keeps a message waiting without an attempt: the route's rate limit
// is used up, or the smarthost asked us to slow down. The message keeps
// its attempt count and comes due at Until. A Dial error that is a *Hold
// holds every message it was opened for.
type Hold struct {
	Until  time.Time
	Reason string // "rate limit 30/minute for smtp.example.com"
	Err    error  // the cause, when there is one
}

func (h *Hold) Error() string { return h.Reason }
func (h *Hold) Unwrap() error { return h.Err }

// Counter is a Session that counts the messages it carried, for
// MaxPerSession.
type Counter interface{ Used() int }

// Runner delivers queued messages.
type Runner struct {
	o Options
	// stuck holds messages this process leaves alone: their envelope
	// could not be updated after an attempt (retrying would send again to
	// recipients that already have the message), or they are damaged
	// (reported once).
	stuck map[string]bool
	// keep makes Run leave its sessions open in kept for the next Run, as
	// a lingering Drain wants; whoever sets it closes them.
	keep    bool
	kept    map[string]Session // per route, what a kept Run left open
	dialErr error              // why Drain's early dial failed, for the next Run
	// blocked holds the routes whose messages wait where they are, their
	// envelopes unwritten, until a time: the relay could not be reached,
	// it asked us to pause, or the rate limit is used up. One blocked
	// route of a long queue then costs one dial or one reservation, not
	// one envelope write per message.
	blocked map[string]block
	downs   map[string]int // dial failures in a row per route, for the backoff
}

// maxDownWait bounds how long a runner leaves a relay that could not be
// reached alone before it dials again (forced runs dial at once).
const maxDownWait = 5 * time.Minute

// block is why and until when a route's messages wait.
type block struct {
	until time.Time
	hold  *Hold // a pause or a rate limit; nil: the relay is down
}

// downWait is how long a relay that could not be reached failures times
// in a row is left alone.
func (r *Runner) downWait(failures int) time.Duration {
	return min(r.o.Backoff(failures), maxDownWait)
}

// learn blocks route when another process found its relay down lately
// (Options.Down), unless it is blocked already. asked remembers the routes
// learnt about, so that each is asked once per run.
func (r *Runner) learn(route string, now time.Time, asked map[string]bool) {
	if r.o.Down == nil || asked[route] {
		return
	}
	asked[route] = true
	if _, ok := r.blocked[route]; ok {
		return
	}
	if n, last := r.o.Down(route); n > 0 {
		if until := last.Add(r.downWait(n)); until.After(now) {
			r.blocked[route] = block{until: until}
		}
	}
}

// waiting reports whether route is blocked at now.
func (r *Runner) waiting(route string, now time.Time) (block, bool) {
	b, ok := r.blocked[route]
	if ok && !b.until.After(now) {
		delete(r.blocked, route)
		return block{}, false
	}
	return b, ok
}

// expired reports whether env has stayed in the queue past MaxAge.
func (r *Runner) expired(env *spool.Envelope, now time.Time) bool {
	return now.Sub(env.Created) >= r.o.MaxAge
}

// route is the route of env.
func (r *Runner) route(env *spool.Envelope) string {
	if r.o.Route == nil {
		return ""
	}
	return r.o.Route(env)
}

// New returns a Runner with defaults filled in.
func New(o Options) *Runner {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxAge == 0 {
		o.MaxAge = 5 * 24 * time.Hour
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.HoldWait == 0 {
		o.HoldWait = 15 * time.Minute
	}
	return &Runner{o: o, stuck: map[string]bool{}, blocked: map[string]block{}, downs: map[string]int{}}
}

// DefaultBackoff doubles from one minute up to one hour.
func DefaultBackoff(n int) time.Duration {
	d := time.Minute
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// Outcome is what one attempt did to one message.
type Outcome struct {
	ID string
	// Results of this attempt, one per recipient that was pending.
	Results []Result
	// Failed lists recipients that failed in this attempt (5xx or expiry).
	Failed []spool.Recipient
	// Pending counts recipients left for a later attempt.
	Pending int
	// Err is the session or message-wide failure, if any.
	Err error
	// Bounced reports that a bounce was queued for Failed.
	Bounced bool
	// Told reports that every recipient failed and, as asked, no bounce was
	// queued: the caller must tell the sender.
	Told bool
}

// ErrBusy means another process is delivering the message right now.
var ErrBusy = errors.New("message is being delivered by another process")

// DeliverID attempts one message now. With callerTold, a message whose
// every recipient fails is not bounced: the caller tells the sender itself
// (sendmail -oep exits 67). Partial failures are always bounced.
// It returns ErrBusy when another process holds the message and
// spool.ErrNotFound when it is gone.
func (r *Runner) DeliverID(ctx context.Context, id string, callerTold bool) (Outcome, error) {
	item, err := r.o.Spool.Lock(id)
	if err != nil {
		if errors.Is(err, spool.ErrLocked) {
			return Outcome{ID: id}, ErrBusy
		}
		return Outcome{ID: id}, err
	}
	return r.DeliverItem(ctx, item, callerTold)
}

// DeliverItem is DeliverID for a message the caller has locked already
// (spool.Writer.CommitLocked); it unlocks it.
func (r *Runner) DeliverItem(ctx context.Context, item *spool.Item, callerTold bool) (Outcome, error) {
	defer item.Unlock()
	id := item.Env.ID
	if len(item.Env.Pending()) == 0 {
		return Outcome{ID: id}, r.finish(item, Outcome{ID: id})
	}
	var release func(int)
	if r.o.Limit != nil {
		granted, hold, rel := r.o.Limit(r.route(item.Env), 1)
		if granted == 0 {
			return r.hold(item, hold)
		}
		release = rel
	}
	sess, dialErr := r.o.Dial(ctx, r.route(item.Env))
	if sess != nil {
		defer sess.Close()
	} else if release != nil {
		release(1) // it never reached the smarthost
	}
	return r.deliver(item, sess, dialErr, callerTold)
}

// Stats counts what a queue run did.
type Stats struct {
	Due       int // messages due at the start
	Attempted int
	Delivered int // left the queue with every recipient sent
	Deferred  int // still pending
	Bounced   int // some recipient failed this run
	Busy      int // held by another process
	Damaged   int // could not be read or locked for another reason; logged
	Held      int // not attempted: over a rate limit, or the smarthost paused
	Waiting   int // not attempted: the relay could not be reached this run
}

// Run attempts every due message (every message with force), oldest
// first, over one session that is redialled when it breaks. Bounces queued
// during the run are sent in a second pass of the same run. It stops
// between messages when ctx is done. Errors of single messages are logged
// and counted, not returned; the error is for a spool that cannot be read.
func (r *Runner) Run(ctx context.Context, force bool) (Stats, error) {
	var st Stats
	// Each route has its session (or the error that kept it from opening)
	// and its batch. The default route starts with the session a
	// lingering Drain kept open, if any.
	type routeState struct {
		sess    Session
		dialErr error
		batch   []*spool.Item
		size    int64
	}
	routes := map[string]*routeState{}
	for key, sess := range r.kept {
		routes[key] = &routeState{sess: sess}
	}
	if r.dialErr != nil {
		routes[""] = &routeState{dialErr: r.dialErr}
	}
	r.kept, r.dialErr = nil, nil
	if force {
		// Asked to try everything: a relay found down earlier is dialled
		// again, and pauses and rate limits are asked again (Dial and
		// Limit read them from the spool, which may have changed).
		clear(r.blocked)
	}
	defer func() {
		for key, rs := range routes {
			for _, it := range rs.batch {
				it.Unlock()
			}
			switch {
			case rs.sess == nil:
			case r.keep && !rs.sess.Broken():
				if r.kept == nil {
					r.kept = map[string]Session{}
				}
				r.kept[key] = rs.sess
			default:
				rs.sess.Close()
			}
		}
	}()
	downNow := map[string]bool{} // routes whose dial failed in this run
	asked := map[string]bool{}   // routes whose relay's state was read (learn)
	// Due messages are locked and collected into a batch per route, which
	// goes in one SendBatch when the session can, or one by one.
	flush := func(rs *routeState, key string) {
		if len(rs.batch) == 0 {
			return
		}
		// The rate limits first: what is over them waits, unattempted and
		// unwritten, for its slot; so does the rest of the route's queue
		// (see blocked).
		var release func(int)
		if r.o.Limit != nil && rs.dialErr == nil {
			granted, hold, rel := r.o.Limit(key, len(rs.batch))
			if granted < len(rs.batch) {
				r.blocked[key] = block{until: hold.Until, hold: hold}
				r.logWait(key, hold)
			}
			for _, item := range rs.batch[granted:] {
				item.Unlock()
				st.Held++
			}
			rs.batch, release = rs.batch[:granted], rel
		}
		for len(rs.batch) > 0 {
			if rs.dialErr == nil && (rs.sess == nil || rs.sess.Broken()) {
				if rs.sess != nil {
					rs.sess.Close()
					rs.sess = nil
				}
				if ctx.Err() != nil {
					// Stopping: what has no session stays as it is, not
					// recorded as a relay that is down, and its slots go
					// back.
					if release != nil {
						release(len(rs.batch))
					}
					for _, item := range rs.batch {
						item.Unlock()
					}
					rs.batch = nil
					break
				}
				// A dial failure blocks the route for the rest of this
				// run, and for this runner's later runs until the backoff
				// ends: no connection attempt per message.
				rs.sess, rs.dialErr = r.o.Dial(ctx, key)
				if rs.dialErr == nil {
					delete(r.downs, key)
				}
			}
			if rs.dialErr != nil {
				if release != nil {
					release(len(rs.batch)) // they never reach the smarthost
					release = nil
				}
				r.wait(rs.batch, key, rs.dialErr, !downNow[key], &st)
				downNow[key] = true
				rs.batch = nil
				break
			}
			chunk := rs.batch
			if room, ok := r.room(key, rs.sess); ok && rs.dialErr == nil {
				if room <= 0 {
					rs.sess.Close() // carried its share: a new one
					rs.sess = nil
					continue
				}
				chunk = chunk[:min(room, len(chunk))]
			}
			for k, out := range r.deliverBatch(chunk, rs.sess, rs.dialErr) {
				chunk[k].Unlock()
				if errors.As(out.Err, new(*Hold)) {
					st.Held++
					continue
				}
				st.count(out)
			}
			rs.batch = rs.batch[len(chunk):]
		}
		rs.batch, rs.size = nil, 0
	}
	flushAll := func() {
		for _, key := range slices.Sorted(maps.Keys(routes)) {
			flush(routes[key], key)
		}
	}
	seen := map[string]bool{}
	for pass := 0; pass < 2; pass++ {
		// The queue is walked, not listed: what a run holds is one batch
		// per route, however long the queue.
		bounced := st.Bounced
		now := r.o.Now()
		walked := 0
		walk := r.o.Spool.Walk
		if !force {
			// Messages whose due hint says later are not even read.
			walk = func(fn func(*spool.Envelope) bool) []error { return r.o.Spool.WalkDue(now, fn) }
		}
		errs := walk(func(env *spool.Envelope) bool {
			walked++
			if ctx.Err() != nil {
				return false
			}
			if seen[env.ID] || r.stuck[env.ID] || !force && env.NextAttempt.After(now) {
				return true
			}
			key := r.route(env)
			if !force {
				r.learn(key, now, asked)
			}
			if b, ok := r.waiting(key, now); ok {
				// Its route waits. When this run found the relay down,
				// expired messages still fail (and bounce); the rest stay
				// as they are, and with a single route so does the rest of
				// the queue.
				if b.hold != nil || !downNow[key] || !r.expired(env, now) {
					if b.hold != nil {
						st.Held++
					} else {
						st.Waiting++
					}
					return r.o.Route != nil || b.hold == nil && downNow[key]
				}
			}
			seen[env.ID] = true
			st.Due++
			item, err := r.o.Spool.Lock(env.ID)
			switch {
			case errors.Is(err, spool.ErrLocked):
				st.Busy++
				return true
			case errors.Is(err, spool.ErrNotFound):
				return true // delivered meanwhile
			case err != nil:
				// Damaged (its data does not match its envelope, or cannot
				// be read): never attempted, so it must be said.
				st.Damaged++
				r.stuck[env.ID] = true // said once per process
				r.notice(env, "cannot deliver: %v; see the spool directory", err)
				return true
			}
			if len(item.Env.Pending()) == 0 {
				r.finish(item, Outcome{ID: env.ID})
				item.Unlock()
				return true
			}
			key = r.route(item.Env) // as read under the lock
			rs := routes[key]
			if rs == nil {
				rs = &routeState{}
				routes[key] = rs
			}
			rs.batch = append(rs.batch, item)
			rs.size += item.Env.Size
			if len(rs.batch) >= batchMessages || rs.size >= batchBytes {
				flush(rs, key)
			}
			return true
		})
		if walked == 0 && len(errs) == 1 && unreadableDir(errs[0], r.o.Spool.Dir()) {
			return st, fmt.Errorf("read queue: %w", errs[0])
		}
		if pass == 0 {
			for _, err := range errs {
				st.Damaged++
				r.notice(nil, "unreadable queue entry: %v", err)
			}
		}
		if ctx.Err() != nil {
			flushAll()
			return st, nil
		}
		flushAll()
		// Bounces queued in this pass go out in a second one, unless
		// every route failed to connect.
		connected := false
		for _, rs := range routes {
			connected = connected || rs.dialErr == nil
		}
		if st.Bounced == bounced || !connected {
			break
		}
	}
	return st, nil
}

// wait leaves a route's locked batch waiting after its dial failed, and
// blocks the route. A pause (a *Hold) holds every message where it is. A
// relay that is down gets one attempt recorded, on the first message (its
// envelope, the log and mailq say why), and its expired messages fail;
// the others keep their envelopes untouched, so that a queue of thousands
// costs one connection attempt and one envelope write per run, not one
// per message, and all of them are due the moment the relay is back.
//
// first says this run has not found the relay down before: it records the
// attempt and sets the block (over a rate-limit block this run may have
// set already).
func (r *Runner) wait(batch []*spool.Item, key string, dialErr error, first bool, st *Stats) {
	now := r.o.Now()
	if h := (*Hold)(nil); errors.As(dialErr, &h) {
		r.blocked[key] = block{until: h.Until, hold: h}
		r.logWait(key, h)
		for _, item := range batch {
			item.Unlock()
			st.Held++
		}
		return
	}
	if first {
		// The backoff of a message, but at most maxDownWait: a long-lived
		// runner (-q5m, -bd) must find the relay back soon, and new mail
		// waits for the block to end.
		r.downs[key]++
		r.blocked[key] = block{until: now.Add(r.downWait(r.downs[key]))}
	}
	for k, item := range batch {
		if k == 0 && first || r.expired(item.Env, now) {
			out, err := r.deliver(item, nil, dialErr, false)
			r.recorded(item, err)
			st.count(out)
		} else {
			st.Waiting++
		}
		item.Unlock()
	}
}

// logWait says once that a route's queue waits for h.
func (r *Runner) logWait(route string, h *Hold) {
	if r.o.Log == nil {
		return
	}
	var relay string
	if r.o.Relay != nil {
		relay = r.o.Relay(route)
	}
	r.o.Log.Log(maillog.Entry{UID: -1, Relay: relay, Status: "deferred",
		Reply: fmt.Sprintf("%s; the queue waits until %s", h.Reason, h.Until.Format("15:04:05"))})
}

// unreadableDir reports whether err is a walk's failure to read the spool
// directory itself, rather than one of its messages.
func unreadableDir(err error, dir string) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Path == dir
}

// count adds one attempt's outcome to the statistics.
func (st *Stats) count(out Outcome) {
	st.Attempted++
	switch {
	case len(out.Failed) > 0:
		st.Bounced++
	case out.Pending > 0:
		st.Deferred++
	default:
		st.Delivered++
	}
}

// room is how many more messages sess may carry under MaxPerSession;
// ok is false when there is no such limit (or no session to count).
func (r *Runner) room(route string, sess Session) (room int, ok bool) {
	if r.o.MaxPerSession == nil || sess == nil {
		return 0, false
	}
	max := r.o.MaxPerSession(route)
	c, counts := sess.(Counter)
	if max <= 0 || !counts {
		return 0, false
	}
	return max - c.Used(), true
}

// hold leaves a locked message unattempted until h.Until: its next
// attempt moves there, its attempt count stays, and the reason is logged
// and kept as its last error (mailq shows it).
func (r *Runner) hold(item *spool.Item, h *Hold) (Outcome, error) {
	env := item.Env
	env.NextAttempt, env.Held = h.Until, true
	env.LastError = h.Reason
	out := Outcome{ID: env.ID, Pending: len(env.Pending()), Err: h}
	if r.o.Log != nil {
		var relay string
		if r.o.Relay != nil {
			relay = r.o.Relay(r.route(env))
		}
		r.o.Log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, To: pendingAddrs(env), Relay: relay,
			Delay: r.o.Now().Sub(env.Created), Status: "deferred",
			Reply: fmt.Sprintf("%s; next attempt at %s", h.Reason, h.Until.Format("15:04:05"))})
	}
	if err := item.Update(); err != nil {
		r.stuck[env.ID] = true
		r.notice(env, "recording a hold failed: %v", err)
		return out, err
	}
	return out, nil
}

// deliverBatch makes one attempt on each locked message of batch and
// records the outcomes, through one SendBatch when sess can and there is
// more than one message. Failures to record are noticed and the message
// left alone for the rest of the process, as deliver's callers do.
func (r *Runner) deliverBatch(batch []*spool.Item, sess Session, sessErr error) []Outcome {
	outs := make([]Outcome, len(batch))
	b, ok := sess.(Batcher)
	if h := (*Hold)(nil); errors.As(sessErr, &h) {
		for k, item := range batch {
			outs[k], _ = r.hold(item, h)
		}
		return outs
	}
	if !ok || sessErr != nil || len(batch) < 2 {
		for k, item := range batch {
			out, err := r.deliver(item, sess, sessErr, false)
			r.recorded(item, err)
			outs[k] = out
		}
		return outs
	}
	start := r.o.Now()
	jobs := make([]Job, 0, len(batch))
	var bodies []io.Closer
	defer func() {
		for _, c := range bodies {
			c.Close()
		}
	}()
	var sendable []int // indexes in batch of the jobs
	for k, item := range batch {
		body, err := item.Open()
		if err != nil {
			r.stuck[item.Env.ID] = true
			r.notice(item.Env, "cannot deliver: open queued message: %v", err)
			outs[k] = Outcome{ID: item.Env.ID, Pending: len(item.Env.Pending()), Err: err}
			continue
		}
		bodies = append(bodies, body)
		jobs = append(jobs, Job{Env: item.Env, Rcpts: pendingAddrs(item.Env), Body: body})
		sendable = append(sendable, k)
	}
	sent := b.SendBatch(jobs)
	for j, k := range sendable {
		item := batch[k]
		var out Outcome
		var err error
		if j >= len(sent) || len(sent[j].Results) != len(jobs[j].Rcpts) {
			err = fmt.Errorf("session gave no results or the wrong number for %d recipients", len(jobs[j].Rcpts))
			out = Outcome{ID: item.Env.ID}
		} else {
			out, err = r.record(item, sent[j].Results, sent[j].Err, start, false)
		}
		r.recorded(item, err)
		outs[k] = out
	}
	return outs
}

// recorded notices a failure to record an outcome: the message is left
// alone for the rest of the process.
func (r *Runner) recorded(item *spool.Item, err error) {
	if err != nil {
		r.stuck[item.Env.ID] = true
		r.notice(item.Env, "recording the outcome failed: %v; the message stays queued and may be sent again to recipients that have it", err)
	}
}

// pendingAddrs returns the addresses of env's pending recipients.
func pendingAddrs(env *spool.Envelope) []string {
	pending := env.Pending()
	rcpts := make([]string, len(pending))
	for k, i := range pending {
		rcpts[k] = env.Recipients[i].Addr
	}
	return rcpts
}

// deliver makes one attempt on a locked message and records the outcome.
func (r *Runner) deliver(item *spool.Item, sess Session, sessErr error, callerTold bool) (Outcome, error) {
	env := item.Env
	rcpts := pendingAddrs(env)
	start := r.o.Now()
	var results []Result
	var sendErr error
	if sessErr == nil && sess == nil {
		sessErr = errors.New("no session")
	}
	if h := (*Hold)(nil); errors.As(sessErr, &h) {
		return r.hold(item, h)
	}
	if sessErr != nil {
		sendErr = sessErr
		results = make([]Result, len(rcpts))
		for k, rcpt := range rcpts {
			results[k] = Result{Rcpt: rcpt, Reply: oneLine(sessErr.Error())}
		}
	} else {
		body, err := item.Open()
		if err != nil {
			return Outcome{ID: env.ID}, fmt.Errorf("open queued message %s: %w", env.ID, err)
		}
		results, sendErr = sess.Send(env, rcpts, body)
		body.Close()
		if len(results) != len(rcpts) {
			return Outcome{ID: env.ID}, fmt.Errorf("session gave %d results for %d recipients", len(results), len(rcpts))
		}
	}
	return r.record(item, results, sendErr, start, callerTold)
}

// record applies one attempt's results, one per pending recipient in
// order, to a locked message: states, bounces, backoff, the log line, and
// the envelope written back or the message removed.
func (r *Runner) record(item *spool.Item, results []Result, sendErr error, start time.Time, callerTold bool) (Outcome, error) {
	env := item.Env
	out := Outcome{ID: env.ID, Err: sendErr}
	pending := env.Pending()
	out.Results = results

	now := r.o.Now()
	env.Attempts++
	env.LastError, env.Held = "", false
	if out.Err != nil {
		env.LastError = oneLine(out.Err.Error())
	}
	var failed []int
	for k, i := range pending {
		rc := &env.Recipients[i]
		res := results[k]
		rc.Code, rc.Reply, rc.Updated = res.Code, res.Reply, now
		switch {
		case res.Sent():
			rc.State = spool.Sent
		case res.Permanent():
			rc.State = spool.Failed
			failed = append(failed, i)
		}
	}
	if now.Sub(env.Created) >= r.o.MaxAge {
		for _, i := range pending {
			rc := &env.Recipients[i]
			if rc.State == spool.Pending {
				rc.State = spool.Failed
				rc.Reply = fmt.Sprintf("expired after %s in the queue; last reply: %s", age(r.o.MaxAge), rc.Reply)
				failed = append(failed, i)
			}
		}
	}
	for _, i := range failed {
		out.Failed = append(out.Failed, env.Recipients[i])
	}

	allFailed := len(failed) == len(env.Recipients)
	if callerTold && allFailed {
		out.Told = true
	} else if len(failed) > 0 && env.From != "" && r.o.Bounce != nil {
		if err := r.bounce(item, out.Failed); err != nil {
			// Without its bounce a failure would go unnoticed: keep the
			// recipients pending, so the bounce is tried again next run.
			r.logf(env, "bounce not queued: %v; will retry", err)
			for _, i := range failed {
				env.Recipients[i].State = spool.Pending
			}
			out.Failed = nil
		} else {
			out.Bounced = true
		}
	}
	out.Pending = len(env.Pending())
	if out.Pending > 0 {
		env.NextAttempt = now.Add(r.o.Backoff(env.Attempts))
	}
	r.logResults(env, results, now.Sub(start), now.Sub(env.Created))
	if err := r.finish(item, out); err != nil {
		r.stuck[env.ID] = true
		return out, err
	}
	return out, nil
}

func (r *Runner) bounce(item *spool.Item, failed []spool.Recipient) error {
	body, err := item.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	return r.o.Bounce(item.Env, failed, body)
}

// finish writes the envelope back, or removes a message that is done.
func (r *Runner) finish(item *spool.Item, out Outcome) error {
	env := item.Env
	if len(env.Pending()) > 0 {
		return item.Update()
	}
	for _, rc := range env.Recipients {
		if rc.State == spool.Failed && env.From == "" && !out.Told {
			// A bounce that bounced: nobody to tell. Keep it, with the
			// reason in its envelope.
			if err := item.Update(); err != nil {
				r.notice(env, "updating the envelope before moving it to the failed area: %v", err)
			}
			r.notice(env, "undeliverable message from <>: moved to the failed area")
			return item.Fail()
		}
	}
	return item.Remove()
}

// logResults writes one line per outcome; recipients sharing a status and
// reply share a line.
func (r *Runner) logResults(env *spool.Envelope, results []Result, delay, age time.Duration) {
	if r.o.Log == nil {
		return
	}
	outcomes := make([]maillog.Outcome, len(results))
	for i, res := range results {
		status := "deferred"
		if res.Sent() {
			status = "sent"
		} else if res.Permanent() {
			status = "bounced"
		}
		for _, rc := range env.Recipients {
			if rc.Addr == res.Rcpt && rc.State == spool.Failed && !res.Permanent() {
				status = "expired"
			}
		}
		outcomes[i] = maillog.Outcome{Rcpt: res.Rcpt, Status: status, Reply: res.Reply}
		if status != "sent" && r.o.Hint != nil {
			outcomes[i].Hint = r.o.Hint(env, res)
		}
	}
	var relay string
	if r.o.Relay != nil {
		relay = r.o.Relay(r.route(env))
	}
	r.o.Log.LogEach(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, Relay: relay, Delay: age}, outcomes)
}

func (r *Runner) logf(env *spool.Envelope, format string, args ...any) {
	if r.o.Log == nil {
		return
	}
	r.o.Log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, Status: "error", Reply: fmt.Sprintf(format, args...)})
}

// notice logs what an operator must hear about even without syslog: a
// message kept aside, damaged or stuck.
func (r *Runner) notice(env *spool.Envelope, format string, args ...any) {
	if r.o.Log == nil {
		return
	}
	e := maillog.Entry{UID: -1, Status: "error", Reply: fmt.Sprintf(format, args...)}
	if env != nil {
		e.ID, e.UID, e.From = env.ID, env.UID, env.From
	}
	r.o.Log.Notice(e)
}

func age(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
