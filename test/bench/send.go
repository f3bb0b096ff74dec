package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"relaymail/internal/queue"
)

// kind is which program an implementation runs.
type kind int

const (
	relaymailKind kind = iota
	msmtpKind
	dmaKind
	floorKind // a program that does nothing, measured in B5 as a floor
)

// impl is one way of sending: a binary, its environment and its flags.
type impl struct {
	name string
	bin  string
	env  []string
	kind kind
	odb  bool   // relaymail -odb
	helo string // the EHLO name it says, checked at the smarthost
}

// host returns the smarthost im sends to on s: dma has one of its own.
func (im *impl) host(s *stage) *host {
	if im.kind == dmaKind {
		return s.dma
	}
	return s.main
}

// sendArgs is the command line that sends one message to rcpt through t, as
// PHP's mail() and cron call sendmail: -i and an envelope sender. dma takes
// its config from /etc/dma (see dmaConf).
func (im *impl) sendArgs(t *target) []string {
	switch im.kind {
	case msmtpKind:
		return []string{"-C", t.msmtprc, "-i", "-f", sender, rcpt}
	case dmaKind:
		return []string{"-i", "-f", sender, rcpt}
	}
	args := []string{"-C", t.conf, "-i", "-f", sender}
	if im.odb {
		args = append(args, "-odb")
	}
	return append(args, rcpt)
}

// flushArgs is the command line that runs im's queue for t, or nil for
// msmtp, which keeps none.
func (im *impl) flushArgs(t *target) []string {
	switch im.kind {
	case relaymailKind:
		return []string{"-C", t.conf, "-q"}
	case dmaKind:
		return []string{"-q"}
	}
	return nil
}

// queued counts the messages in im's spool for t.
func (im *impl) queued(t *target) int {
	switch im.kind {
	case relaymailKind:
		// Committed messages: their envelopes, <ID>.env (see internal/spool).
		m, _ := filepath.Glob(filepath.Join(t.spool, "*.env"))
		return len(m)
	case dmaKind:
		return dmaQueued(t.dmaSpool())
	}
	return 0
}

// result is one finished invocation.
type result struct {
	start   time.Time     // just before fork
	wall    time.Duration // from start to the end of wait
	problem string        // "" when it exited 0
	stderr  string
	usage   *syscall.Rusage
}

// proc is one started invocation.
type proc struct {
	im      *impl
	cmd     *exec.Cmd
	errFile *os.File
	start   time.Time
}

// start starts im.bin with args and stdin (nil for none), as a caller of
// sendmail does. stdout and stderr go to files, not pipes: a caller waits
// for the process, not for the pipes, and relaymail -odb's detached child
// and dma's delivery process may hold them open after the parent exits.
func (b *bench) start(im *impl, stdin io.Reader, args ...string) (*proc, error) {
	return b.startTo(im, stdin, nil, args...)
}

// startTo is start with stdout going to stdout (nil: /dev/null), for a
// listing the benchmark reads.
func (b *bench) startTo(im *impl, stdin io.Reader, stdout *os.File, args ...string) (*proc, error) {
	errFile, err := os.CreateTemp(b.dir, "stderr-")
	if err != nil {
		return nil, fmt.Errorf("create stderr file: %v", err)
	}
	os.Remove(errFile.Name()) // read back through the open file
	cmd := exec.Command(im.bin, args...)
	cmd.Env = im.env
	cmd.Dir = b.dir
	cmd.Stderr = errFile
	cmd.Stdin = stdin
	if stdout != nil {
		cmd.Stdout = stdout
	}
	p := &proc{im: im, cmd: cmd, errFile: errFile, start: time.Now()}
	if err := cmd.Start(); err != nil {
		errFile.Close()
		return nil, fmt.Errorf("%s: %v", im.name, err)
	}
	return p, nil
}

// wait waits for p to exit.
func (p *proc) wait() result {
	err := p.cmd.Wait()
	res := result{start: p.start, wall: time.Since(p.start)}
	if ps := p.cmd.ProcessState; ps != nil {
		res.usage, _ = ps.SysUsage().(*syscall.Rusage)
	}
	if _, serr := p.errFile.Seek(0, io.SeekStart); serr == nil {
		data, _ := io.ReadAll(p.errFile)
		res.stderr = string(data)
	}
	p.errFile.Close()
	if err != nil {
		res.problem = fmt.Sprintf("%s: %v", p.im.name, err)
		if line := firstLine(res.stderr); line != "" {
			res.problem += ": " + line
		}
	}
	return res
}

// exec runs im and waits for it.
func (b *bench) exec(im *impl, stdin []byte, args ...string) result {
	var in io.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	p, err := b.start(im, in, args...)
	if err != nil {
		return result{problem: err.Error()}
	}
	return p.wait()
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
	var m strings.Builder
	b.header(&m)
	for i := 1; m.Len() < 2048; i++ {
		fmt.Fprintf(&m, "line %03d of message %d: the quick brown fox jumps over the lazy dog\n", i, b.msgSeq)
	}
	data := []byte(m.String())
	return data, sha256.Sum256(crlf(data))
}

// header writes the header block of a new message, with a unique subject
// and Message-ID.
func (b *bench) header(w io.Writer) {
	b.msgSeq++
	fmt.Fprintf(w, "From: Bench Sender <%s>\n", sender)
	fmt.Fprintf(w, "To: <%s>\n", rcpt)
	fmt.Fprintf(w, "Subject: bench message %d\n", b.msgSeq)
	fmt.Fprintf(w, "Date: %s\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(w, "Message-ID: <bench.%d.%d@app01.example.com>\n", time.Now().UnixNano(), b.msgSeq)
	io.WriteString(w, "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n")
}

func crlf(data []byte) []byte {
	return bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
}

// expect notes that a message with SHA-256 sum is sent by im for group g.
func (b *bench) expect(sum [32]byte, g string, im *impl) {
	b.sent[sum] = sending{group: g, impl: im}
	b.checks[g].sent++
}

// prepare readies im to send through t: dma's config names the target.
func (b *bench) prepare(g string, im *impl, t *target) {
	b.quiesce()
	if im.kind != dmaKind {
		return
	}
	if err := b.dmaConf.use(t); err != nil {
		b.fail(g, fmt.Sprintf("write dma's config: %v", err))
	}
}

// quiesce waits, for at most quiesceTimeout, until the previous run is
// over on every network: no relaymail runner holds a slot (they linger for
// [queue] linger after their last message, connection open) and the
// proxies carry no connection. A run then measures from a cold start and
// counts only its own connections.
func (b *bench) quiesce() {
	deadline := time.Now().Add(quiesceTimeout)
	for {
		quiet := true
		for _, s := range b.stages {
			h := s.main
			if !queue.RunnersIdle(h.direct.spool) || !queue.RunnersIdle(h.proxied.spool) || h.proxy.openNow() > 0 {
				quiet = false
			}
			if s.dma != nil && s.dma.proxy.openNow() > 0 {
				quiet = false
			}
		}
		if quiet || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send pipes one new message into im, sending through t on h. It returns
// the caller's wall time and the time from the start until the smarthost
// recorded the message, and false when the message did not arrive.
func (b *bench) send(g string, im *impl, h *host, t *target) (caller, e2e time.Duration, ok bool) {
	b.prepare(g, im, t)
	data, sum := b.message()
	b.expect(sum, g, im)
	i := h.count()
	res := b.exec(im, data, im.sendArgs(t)...)
	if res.problem != "" {
		b.fail(g, res.problem)
	}
	at, ok := h.await(i, arriveTimeout)
	if !ok {
		b.fail(g, fmt.Sprintf("a message did not arrive within %v", arriveTimeout))
	}
	b.settle(g, im, t)
	return res.wall, at.Sub(res.start), ok
}

// burst sends n new messages one after the other through h's proxy, then
// flushes the queue if anything stays in it. It returns the sum of the
// callers' wall times, the time from the first start until the last
// message arrived, the largest number of connections open at once, and
// false when not all messages arrived.
func (b *bench) burst(g string, im *impl, h *host, n int) (caller, e2e time.Duration, peak int, ok bool) {
	t := h.proxied
	b.prepare(g, im, t)
	h.proxy.resetPeak()
	first := h.count()
	var start time.Time
	for i := 0; i < n; i++ {
		data, sum := b.message()
		b.expect(sum, g, im)
		res := b.exec(im, data, im.sendArgs(t)...)
		if i == 0 {
			start = res.start
		}
		caller += res.wall
		if res.problem != "" {
			b.fail(g, res.problem)
		}
	}
	b.flushStuck(g, im, t, n)
	at, ok := h.await(first+n-1, arriveTimeout)
	if !ok {
		b.fail(g, fmt.Sprintf("not all %d messages arrived within %v", n, arriveTimeout))
	}
	b.settle(g, im, t)
	return caller, at.Sub(start), h.proxy.peakOpen(), ok
}

// together starts n invocations at once through h's proxy (forked one
// right after the other, then all waited for), then flushes the queue if
// anything stays in it. It returns the longest caller's wall time, the
// time from the first start until the last message arrived, the largest
// number of connections open at once, and false when not all messages
// arrived.
func (b *bench) together(g string, im *impl, h *host, n int) (slowest, e2e time.Duration, peak int, ok bool) {
	t := h.proxied
	b.prepare(g, im, t)
	msgs := make([][]byte, n)
	for i := range msgs {
		data, sum := b.message()
		b.expect(sum, g, im)
		msgs[i] = data
	}
	args := im.sendArgs(t)
	h.proxy.resetPeak()
	first := h.count()
	procs := make([]*proc, 0, n)
	for _, m := range msgs {
		p, err := b.start(im, bytes.NewReader(m), args...)
		if err != nil {
			b.fail(g, err.Error())
			continue
		}
		procs = append(procs, p)
	}
	results := make([]result, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.wait()
		}()
	}
	wg.Wait()
	for _, res := range results {
		slowest = max(slowest, res.wall)
		if res.problem != "" {
			b.fail(g, res.problem)
		}
	}
	b.flushStuck(g, im, t, n)
	at, ok := h.await(first+n-1, arriveTimeout)
	if !ok {
		b.fail(g, fmt.Sprintf("not all %d messages arrived within %v", n, arriveTimeout))
	}
	b.settle(g, im, t)
	if len(procs) == 0 {
		return slowest, 0, h.proxy.peakOpen(), false
	}
	return slowest, at.Sub(procs[0].start), h.proxy.peakOpen(), ok
}

// flushStuck runs im's queue ("relaymail -q", "dma -q") if messages stay
// in its spool for t once deliveries in flight have stopped making
// progress, and notes it.
func (b *bench) flushStuck(g string, im *impl, t *target, n int) {
	args := im.flushArgs(t)
	if args == nil {
		return
	}
	if q := b.stuck(im, t); q > 0 {
		b.notes = append(b.notes, fmt.Sprintf("%s %s: %d of %d messages stayed queued after the last invocation; \"%s %s\" ran",
			g, im.name, q, n, filepath.Base(im.bin), strings.Join(args, " ")))
		if res := b.exec(im, nil, args...); res.problem != "" {
			b.fail(g, res.problem)
		}
	}
}

// stuck returns how many messages stay in im's spool for t once deliveries
// in flight (relaymail -odb's detached children, dma's delivery processes)
// have stopped making progress: none left, or no change in the count for
// stuckAfter. Only those need a queue run; running it earlier would race
// the deliveries and count connections that a real alert loop would not
// open.
func (b *bench) stuck(im *impl, t *target) int {
	q, changed := im.queued(t), time.Now()
	for q > 0 && time.Since(changed) < stuckAfter {
		time.Sleep(2 * time.Millisecond)
		if n := im.queued(t); n != q {
			q, changed = n, time.Now()
		}
	}
	return q
}

// settle waits, untimed, until im's spool for t holds no message, so that
// a background delivery does not overlap the next run, and records a
// failure if one stays queued.
func (b *bench) settle(g string, im *impl, t *target) {
	if !settled(im, t) {
		b.fail(g, fmt.Sprintf("messages still queued after %v", settleTimeout))
	}
}

// settled waits until im's spool for t holds no message, and reports false
// if one is still there after settleTimeout.
func settled(im *impl, t *target) bool {
	deadline := time.Now().Add(settleTimeout)
	for im.queued(t) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// sending is who sent a message, for the check.
type sending struct {
	group string
	impl  *impl
}

// verify checks every message the smarthosts recorded against those sent:
// each exactly once, with the envelope given, over TLS, authenticated with
// the mechanism its smarthost offers, from the implementation's EHLO name,
// and with the bytes sent (after removing dma's Received header).
func (b *bench) verify() {
	for _, s := range b.stages {
		for _, im := range b.impls() {
			for _, t := range []*target{im.host(s).direct, im.host(s).proxied} {
				if !settled(im, t) {
					b.strays = append(b.strays, fmt.Sprintf("%d messages left in %s's spool for %s:%d", im.queued(t), im.name, t.host, t.port))
				}
			}
		}
	}
	count := map[[32]byte]int{}
	for _, s := range b.stages {
		for _, h := range []*host{s.main, s.dma} {
			if h != nil {
				b.verifyHost(h, count)
			}
		}
	}
	for sum, snd := range b.sent {
		switch n := count[sum]; {
		case n == 0:
			b.fail(snd.group, "missing")
		case n > 1:
			b.fail(snd.group, fmt.Sprintf("arrived %d times", n))
		}
	}
}

// verifyHost checks h's messages, one at a time: dma's smarthost keeps
// whole messages, 100 MiB ones too.
func (b *bench) verifyHost(h *host, count map[[32]byte]int) {
	mech := "PLAIN"
	if h.strip {
		mech = "LOGIN"
	}
	for i := 0; ; i++ {
		m, err := h.srv.WaitMessage(i, 0)
		if err != nil {
			return
		}
		sum := m.SHA256
		if h.strip {
			rest, ok := stripReceived(m.Data)
			if !ok {
				b.strays = append(b.strays, fmt.Sprintf("%d bytes from EHLO %s to dma's smarthost do not start with a Received header", m.Size, m.Helo))
				continue
			}
			sum = sha256.Sum256(rest)
			b.stripped++
		}
		snd, ok := b.sent[sum]
		if !ok {
			b.strays = append(b.strays, fmt.Sprintf("%d bytes from EHLO %s, SHA-256 %x...: not any message sent (bytes changed?)", m.Size, m.Helo, sum[:6]))
			continue
		}
		count[sum]++
		g := snd.group
		switch {
		case m.From != sender || len(m.Rcpts) != 1 || m.Rcpts[0] != rcpt:
			b.fail(g, fmt.Sprintf("wrong envelope: from <%s> to %q", m.From, m.Rcpts))
		case !m.TLS:
			b.fail(g, "arrived without TLS")
		case m.AuthUser != authUser || m.AuthMech != mech:
			b.fail(g, fmt.Sprintf("arrived without AUTH %s as %s", mech, authUser))
		case m.Helo != snd.impl.helo:
			b.fail(g, fmt.Sprintf("arrived from EHLO %s, not %s", m.Helo, snd.impl.helo))
		}
	}
}
