// Package maillog writes one line per delivery attempt, in the style
// operators already grep for in Postfix logs:
//
//	01JD2K7QX4: from=<app@example.com> to=<a@example.net>,<b@example.net> relay=smtp.example.com:587 delay=0.31 status=sent (250 2.0.0 Ok: queued)
//
// Lines go to syslog (facility mail, tag "relaymail") when a syslog socket
// exists. Without one they go to the fallback writer (stderr under -v),
// or nowhere. If the sink breaks, the logger says so once on the fallback and
// keeps quiet afterwards: logging never stops a delivery.
package maillog

import (
	"fmt"
	"io"
	"log/syslog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Entry is one delivery attempt of one message to one or more recipients
// that share an outcome.
type Entry struct {
	ID     string
	UID    int    // real uid of the submitting user; -1 when unknown
	User   string // its login name, or ""
	From   string // envelope sender, "" for the null sender
	To     []string
	Relay  string // host:port
	Delay  time.Duration
	Status string // sent, deferred, bounced
	Reply  string // the server's reply or our reason, one line
	Hint   string // what to do about it (internal/hint), or ""
}

// Options configure a Logger.
type Options struct {
	Tag        string    // syslog tag; default "relaymail"
	Syslog     bool      // try the syslog socket
	SyslogAddr string    // a unix datagram socket path; "" = the system's (/dev/log)
	Fallback   io.Writer // where lines go without syslog, and sink errors; may be nil
	Echo       bool      // also write every line to Fallback (sendmail -v)
}

// Logger writes entries. It is safe for concurrent use.
type Logger struct {
	mu       sync.Mutex
	sys      *syslog.Writer
	fallback io.Writer
	echo     bool
	warned   bool
}

// New returns a Logger. A missing syslog socket is not an error.
func New(opts Options) *Logger {
	l := &Logger{fallback: opts.Fallback, echo: opts.Echo}
	if opts.Syslog {
		tag := opts.Tag
		if tag == "" {
			tag = "relaymail"
		}
		network := ""
		if opts.SyslogAddr != "" {
			network = "unixgram"
		}
		if w, err := syslog.Dial(network, opts.SyslogAddr, syslog.LOG_MAIL|syslog.LOG_INFO, tag); err == nil {
			l.sys = w
		}
	}
	return l
}

// EchoWithoutSyslog makes a Logger that found no syslog socket write
// every line to its fallback writer: a daemon in a container logs to its
// standard error.
func (l *Logger) EchoWithoutSyslog() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys == nil && l.fallback != nil {
		l.echo = true
	}
}

// Format returns the log line of e without a trailing newline.
func Format(e Entry) string {
	var b strings.Builder
	if e.ID != "" {
		b.WriteString(e.ID)
		b.WriteString(": ")
	}
	if e.UID >= 0 {
		fmt.Fprintf(&b, "uid=%d ", e.UID)
	}
	if e.User != "" {
		fmt.Fprintf(&b, "user=%s ", clean(e.User))
	}
	if e.ID == "" && e.From == "" && len(e.To) == 0 {
		// An event of the process or a host, not of a message.
		if e.Relay != "" {
			fmt.Fprintf(&b, "relay=%s ", clean(e.Relay))
		}
		fmt.Fprintf(&b, "status=%s", e.Status)
	} else {
		fmt.Fprintf(&b, "from=<%s> to=", clean(e.From))
		for i, to := range e.To {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "<%s>", clean(to))
		}
		if e.Relay != "" {
			fmt.Fprintf(&b, " relay=%s", clean(e.Relay))
		}
		fmt.Fprintf(&b, " delay=%s status=%s", strconv.FormatFloat(e.Delay.Seconds(), 'f', 2, 64), e.Status)
	}
	if e.Reply != "" {
		fmt.Fprintf(&b, " (%s)", clean(e.Reply))
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, " hint: %s", clean(e.Hint))
	}
	return b.String()
}

// clean keeps a log line one line: servers and callers choose these bytes.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Log writes one entry. Bounced and deferred entries are logged at warning
// level.
func (l *Logger) Log(e Entry) {
	line := Format(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		var err error
		if e.Status == "sent" {
			err = l.sys.Info(line)
		} else {
			err = l.sys.Warning(line)
		}
		if err != nil {
			l.sinkFailed(err)
		}
	}
	if l.fallback != nil && l.echo {
		fmt.Fprintf(l.fallback, "%s\n", line)
	}
}

// Warn logs a warning about the setup rather than a delivery, such as a
// password others can read: to syslog at warning level, and to the
// fallback writer under -v.
func (l *Logger) Warn(text string) {
	line := "warning: " + clean(text)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		if err := l.sys.Warning(line); err != nil {
			l.sinkFailed(err)
		}
	}
	if l.fallback != nil && l.echo {
		fmt.Fprintf(l.fallback, "%s\n", line)
	}
}

// Outcome is one recipient's status and reply in an attempt.
type Outcome struct {
	Rcpt, Status, Reply, Hint string
}

// LogEach logs outcomes as entries like base: recipients that share a
// status and a reply share a line, in the order they first appear.
func (l *Logger) LogEach(base Entry, outcomes []Outcome) {
	type key struct{ status, reply, hint string }
	var order []key
	groups := map[key][]string{}
	for _, o := range outcomes {
		k := key{o.Status, o.Reply, o.Hint}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o.Rcpt)
	}
	for _, k := range order {
		e := base
		e.To, e.Status, e.Reply, e.Hint = groups[k], k.status, k.reply, k.hint
		l.Log(e)
	}
}

// Notice logs an entry the operator must see: to syslog and, when there is
// no syslog or -v echoes, to the fallback writer as well.
func (l *Logger) Notice(e Entry) {
	l.Log(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fallback != nil && l.sys == nil && !l.echo {
		fmt.Fprintf(l.fallback, "%s\n", Format(e))
	}
}

func (l *Logger) sinkFailed(err error) {
	l.sys.Close()
	l.sys = nil
	if !l.warned && l.fallback != nil {
		l.warned = true
		fmt.Fprintf(l.fallback, "syslog: %v; logging to syslog stopped\n", err)
	}
}

// Close releases the syslog connection.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		err := l.sys.Close()
		l.sys = nil
		return err
	}
	return nil
}
