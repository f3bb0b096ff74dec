package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// impl is one way of sending: a binary, its environment and its flags.
type impl struct {
	name  string
	bin   string
	env   []string
	odb   bool // relaymail -odb
	msmtp bool
}

// sendArgs is the command line that sends one message to rcpt through t, as
// PHP's mail() and cron call sendmail: -i and an envelope sender.
func (im *impl) sendArgs(t *target) []string {
	if im.msmtp {
		return []string{"-C", t.msmtprc, "-i", "-f", sender, rcpt}
	}
	args := []string{"-C", t.conf, "-i", "-f", sender}
	if im.odb {
		args = append(args, "-odb")
	}
	return append(args, rcpt)
}

// result is one finished invocation.
type result struct {
	wall    time.Duration // from just before fork to the end of wait
	problem string        // "" when it exited 0
	stderr  string
}

// exec runs im.bin with args and stdin (nil for none) and waits for it, as a
// caller of sendmail does. stdout and stderr go to files, not pipes: a
// caller waits for the process, not for the pipes, and relaymail -odb's
// detached child may hold them open after the parent exits.
func (b *bench) exec(im *impl, stdin []byte, args ...string) result {
	errPath := filepath.Join(b.dir, "stderr")
	errFile, err := os.Create(errPath)
	if err != nil {
		return result{problem: fmt.Sprintf("create stderr file: %v", err)}
	}
	defer errFile.Close()
	cmd := exec.Command(im.bin, args...)
	cmd.Env = im.env
	cmd.Dir = b.dir
	cmd.Stderr = errFile
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	errFile.Close()
	res := result{wall: wall}
	if data, rerr := os.ReadFile(errPath); rerr == nil {
		res.stderr = string(data)
	}
	if err != nil {
		res.problem = fmt.Sprintf("%s: %v", im.name, err)
		if line := firstLine(res.stderr); line != "" {
			res.problem += ": " + line
		}
	}
	return res
}

// output runs im with args and returns its stdout, or "" on failure.
func (b *bench) output(im *impl, args ...string) string {
	cmd := exec.Command(im.bin, args...)
	cmd.Env = im.env
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// message returns a new 2 KB message with LF line endings, as PHP and cron
// write them, and the SHA-256 of what must arrive: the same bytes with CRLF.
// It carries From, Date and Message-ID, so a sendmail adds nothing.
func (b *bench) message() ([]byte, [32]byte) {
	b.msgSeq++
	var m strings.Builder
	fmt.Fprintf(&m, "From: Bench Sender <%s>\n", sender)
	fmt.Fprintf(&m, "To: <%s>\n", rcpt)
	fmt.Fprintf(&m, "Subject: bench message %d\n", b.msgSeq)
	fmt.Fprintf(&m, "Date: %s\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&m, "Message-ID: <bench.%d.%d@app01.example.com>\n", time.Now().UnixNano(), b.msgSeq)
	m.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n")
	for i := 1; m.Len() < 2048; i++ {
		fmt.Fprintf(&m, "line %03d of message %d: the quick brown fox jumps over the lazy dog\n", i, b.msgSeq)
	}
	data := []byte(m.String())
	return data, sha256.Sum256(bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")))
}

// send pipes one new message into im, sending through t. It returns the
// caller's wall time and the time from the start until the smarthost
// recorded the message, and false when the message did not arrive.
func (b *bench) send(g string, im *impl, t *target) (caller, e2e time.Duration, ok bool) {
	data, sum := b.message()
	b.sent[sum] = g
	b.checks[g].sent++
	arrived := b.arrival(len(b.srv.Messages()))
	start := time.Now()
	res := b.exec(im, data, im.sendArgs(t)...)
	if res.problem != "" {
		b.fail(g, res.problem)
	}
	at, ok := <-arrived
	if !ok {
		b.fail(g, fmt.Sprintf("a message did not arrive within %v", arriveTimeout))
	}
	if !im.msmtp {
		b.settle(g, t)
	}
	return res.wall, at.Sub(start), ok
}

// burst sends n new messages one after the other through t, then runs
// "relaymail -q" if any are still queued. It returns the caller's total, the
// time until the last message arrived, the largest number of connections
// open at once, and false when not all messages arrived.
func (b *bench) burst(g string, im *impl, t *target, n int) (caller, e2e time.Duration, peak int, ok bool) {
	b.proxy.resetPeak()
	arrived := b.arrival(len(b.srv.Messages()) + n - 1)
	start := time.Now()
	for i := 0; i < n; i++ {
		data, sum := b.message()
		b.sent[sum] = g
		b.checks[g].sent++
		res := b.exec(im, data, im.sendArgs(t)...)
		if res.problem != "" {
			b.fail(g, res.problem)
		}
	}
	caller = time.Since(start)
	if !im.msmtp {
		if q := b.stuck(t); q > 0 {
			b.notes = append(b.notes, fmt.Sprintf("B2-light %s: %d of %d messages stayed queued after the last invocation; \"relaymail -q\" ran", im.name, q, n))
			if res := b.exec(im, nil, "-C", t.conf, "-q"); res.problem != "" {
				b.fail(g, res.problem)
			}
		}
	}
	at, ok := <-arrived
	if !ok {
		b.fail(g, fmt.Sprintf("not all %d messages arrived within %v", n, arriveTimeout))
	}
	if !im.msmtp {
		b.settle(g, t)
	}
	return caller, at.Sub(start), b.proxy.peakOpen(), ok
}

// stuck returns how many messages stay in t's spool once deliveries in
// flight (relaymail -odb's detached children) have stopped making
// progress: none left, or no change in the count for stuckAfter. Only those
// need "relaymail -q"; running it earlier would race the children and
// count connections that a real alert loop would not open.
func (b *bench) stuck(t *target) int {
	q, changed := queued(t.spool), time.Now()
	for q > 0 && time.Since(changed) < stuckAfter {
		time.Sleep(2 * time.Millisecond)
		if n := queued(t.spool); n != q {
			q, changed = n, time.Now()
		}
	}
	return q
}

// arrival returns a channel that receives the time at which the smarthost
// recorded its message number i (counting from 0), or is closed if that has
// not happened within arriveTimeout.
func (b *bench) arrival(i int) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		if _, err := b.srv.WaitMessage(i, arriveTimeout); err == nil {
			ch <- time.Now()
		}
		close(ch)
	}()
	return ch
}

// settle waits, untimed, until t's spool holds no message, so that a
// background delivery does not overlap the next run, and records a failure
// if one stays queued.
func (b *bench) settle(g string, t *target) {
	if !b.settled(t) {
		b.fail(g, fmt.Sprintf("messages still queued after %v", settleTimeout))
	}
}

// settled waits until t's spool holds no message, and reports false if one
// is still there after settleTimeout.
func (b *bench) settled(t *target) bool {
	deadline := time.Now().Add(settleTimeout)
	for queued(t.spool) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// queued counts the committed messages in a relaymail spool: their
// envelopes, <ID>.env (see internal/spool).
func queued(spool string) int {
	m, _ := filepath.Glob(filepath.Join(spool, "*.env"))
	return len(m)
}

// verify checks every message the smarthost recorded against those sent:
// each exactly once, with the envelope given, over TLS, authenticated.
func (b *bench) verify() {
	for _, t := range []*target{b.direct, b.viaPx} {
		if !b.settled(t) {
			b.strays = append(b.strays, fmt.Sprintf("%d messages left in the spool %s", queued(t.spool), t.spool))
		}
	}
	count := map[[32]byte]int{}
	for _, m := range b.srv.Messages() {
		g, ok := b.sent[m.SHA256]
		if !ok {
			b.strays = append(b.strays, fmt.Sprintf("%d bytes from EHLO %s, SHA-256 %x...: not any message sent (bytes changed?)", m.Size, m.Helo, m.SHA256[:6]))
			continue
		}
		count[m.SHA256]++
		switch {
		case m.From != sender || len(m.Rcpts) != 1 || m.Rcpts[0] != rcpt:
			b.fail(g, fmt.Sprintf("wrong envelope: from <%s> to %q", m.From, m.Rcpts))
		case !m.TLS:
			b.fail(g, "arrived without TLS")
		case m.AuthUser != user:
			b.fail(g, "arrived without AUTH")
		}
	}
	for sum, g := range b.sent {
		switch n := count[sum]; {
		case n == 0:
			b.fail(g, "missing")
		case n > 1:
			b.fail(g, fmt.Sprintf("arrived %d times", n))
		}
	}
}
