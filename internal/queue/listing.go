package queue

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"time"

	"relaymail/internal/spool"
)

// WriteListing prints the queue as Postfix's mailq does, one entry per
// message, with the next attempt and the last reply of pending
// recipients; or, with asJSON, one JSON object per line (JSON Lines) for
// monitoring. It reads nothing but envs, one at a time, and keeps none:
// listing a queue of any length costs one envelope read per message and
// the memory of one.
//
//	-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------
//	01JD2K7QX4ABCDEF     1234 Fri Nov 27 03:45:12  www-data@example.com
//	                  (next attempt in 4m: 451 4.7.1 greylisted)
//	                                               alice@example.net
//
//	-- 2 Kbytes in 1 Request.
//
// waiting, when not nil, says what a due message waits for instead (its
// relay cannot be reached, is paused, or its rate limit is used up), for
// the JSON's "waiting_for"; the text's footer says it once per relay.
func WriteListing(w io.Writer, envs iter.Seq[*spool.Envelope], now time.Time, asJSON bool, waiting func(*spool.Envelope) string) error {
	bw := bufio.NewWriter(w)
	if asJSON {
		enc := json.NewEncoder(bw)
		var err error
		for e := range envs {
			j := listEntry(e, now)
			if waiting != nil && !e.NextAttempt.After(now) {
				j.WaitingFor = waiting(e)
			}
			if err = enc.Encode(j); err != nil {
				break
			}
		}
		if err != nil {
			return err
		}
		return bw.Flush()
	}
	var total int64
	n := 0
	for e := range envs {
		if n == 0 {
			fmt.Fprintln(bw, "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------")
		}
		n++
		total += e.Size
		from := e.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		fmt.Fprintf(bw, "%-16s %8d %s  %s\n", e.ID, e.Size, e.Created.Local().Format("Mon Jan _2 15:04:05"), from)
		next := "now"
		if d := e.NextAttempt.Sub(now); d > 0 {
			next = "in " + d.Round(time.Second).String()
		}
		if e.LastError != "" {
			fmt.Fprintf(bw, "%18s(next attempt %s: %s)\n", "", next, e.LastError)
		} else if e.Attempts > 0 {
			fmt.Fprintf(bw, "%18s(next attempt %s)\n", "", next)
		}
		for _, r := range e.Recipients {
			if r.State != spool.Pending {
				continue
			}
			if r.Reply != "" && r.Reply != e.LastError {
				fmt.Fprintf(bw, "%47s(%s)\n", "", r.Reply)
			}
			fmt.Fprintf(bw, "%47s%s\n", "", r.Addr)
		}
		if _, err := fmt.Fprintln(bw); err != nil {
			return err // the reader went away: stop reading the queue
		}
	}
	if n == 0 {
		fmt.Fprintln(bw, "Mail queue is empty")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, n, plural(n))
	return bw.Flush()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

type jsonRecipient struct {
	Address string `json:"address"`
	State   string `json:"state"`
	Code    int    `json:"code,omitempty"`
	Reply   string `json:"reply,omitempty"`
}

type jsonEntry struct {
	ID          string          `json:"queue_id"`
	Size        int64           `json:"message_size"`
	Arrival     int64           `json:"arrival_time"`
	Sender      string          `json:"sender"`
	Attempts    int             `json:"attempts"`
	NextAttempt int64           `json:"next_attempt"`
	DueIn       float64         `json:"due_in_seconds"`
	LastError   string          `json:"last_error,omitempty"`
	WaitingFor  string          `json:"waiting_for,omitempty"`
	Recipients  []jsonRecipient `json:"recipients"`
}

// listEntry follows the field names of Postfix's "postqueue -j" where
// they exist, so existing monitoring scripts read it.
func listEntry(e *spool.Envelope, now time.Time) jsonEntry {
	j := jsonEntry{
		ID: e.ID, Size: e.Size, Arrival: e.Created.Unix(), Sender: e.From,
		Attempts: e.Attempts, NextAttempt: e.NextAttempt.Unix(), LastError: e.LastError,
		DueIn: max(0, e.NextAttempt.Sub(now).Seconds()),
	}
	for _, r := range e.Recipients {
		j.Recipients = append(j.Recipients, jsonRecipient{Address: r.Addr, State: string(r.State), Code: r.Code, Reply: r.Reply})
	}
	return j
}
