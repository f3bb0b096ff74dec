package queue

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"relaymail/internal/dsn"
	"relaymail/internal/spool"
)

// BounceOptions configure NewBouncer.
type BounceOptions struct {
	Spool        *spool.Spool
	ReportingMTA string // our host name
	Domain       string // the bounce comes from MAILER-DAEMON@Domain
	RemoteMTA    string // the smarthost's name, for Remote-MTA
	Now          func() time.Time
	// Hint says what the sending system's administrator can do about a
	// recipient's failure; nil or "": nothing.
	Hint func(env *spool.Envelope, rc spool.Recipient) string
}

// NewBouncer returns an Options.Bounce that queues an RFC 3464 delivery
// status notification, from the null sender to the original sender, in
// the spool: it is delivered like any other message, and a bounce of it
// is never sent.
func NewBouncer(o BounceOptions) func(env *spool.Envelope, failed []spool.Recipient, original io.Reader) error {
	return func(env *spool.Envelope, failed []spool.Recipient, original io.Reader) error {
		w, err := o.Spool.Create()
		if err != nil {
			return err
		}
		defer w.Abort()
		recips := make([]dsn.Recipient, len(failed))
		for i, f := range failed {
			recips[i] = dsn.Recipient{Addr: f.Addr, ORcpt: f.ORcpt, Action: "failed", Code: f.Code, LastAttempt: f.Updated}
			if o.Hint != nil {
				recips[i].Hint = o.Hint(env, f)
			}
			if f.Code == 0 {
				recips[i].Reason = f.Reply // our words: expiry, no reply
				continue
			}
			recips[i].Status, recips[i].Reply = splitReply(f.Code, f.Reply)
			recips[i].RemoteMTA = o.RemoteMTA
		}
		res, err := dsn.Write(w, original, recips, dsn.Options{
			ReportingMTA:       o.ReportingMTA,
			From:               "MAILER-DAEMON@" + o.Domain,
			To:                 env.From,
			OriginalEnvelopeID: env.EnvID,
			Arrival:            env.Created,
			Now:                o.Now,
			Hostname:           o.ReportingMTA,
			Return:             env.Return,
		})
		if err != nil {
			return err
		}
		return w.Commit(&spool.Envelope{
			Recipients:  []spool.Recipient{{Addr: env.From, State: spool.Pending}},
			EightBit:    res.EightBit,
			MessageID:   res.MessageID,
			NextAttempt: o.Now(),
			// The bounce belongs to the user who sent the message, not to
			// whoever ran the queue: its mailq shows it, and only it (and
			// root and the group) may delete it.
			UID:  env.UID,
			User: "MAILER-DAEMON",
		})
	}
}

// splitReply takes a recorded reply "550 5.1.1 text" apart into the
// enhanced status ("5.1.1", or "" when there is none) and the text.
func splitReply(code int, reply string) (status, text string) {
	text = strings.TrimPrefix(reply, strconv.Itoa(code)+" ")
	first, rest, _ := strings.Cut(text, " ")
	var a, b, c int
	if n, err := fmt.Sscanf(first, "%d.%d.%d", &a, &b, &c); n == 3 && err == nil && a == code/100 {
		return first, rest
	}
	return "", text
}
