package main

// B6, queue at scale: what a queue of N messages costs relaymail and dma,
// for each N of -queue-sizes, on loopback only (the costs are local; dma's
// queue run over the delaying link would take hours). msmtp keeps no
// queue. For each N and implementation, with its proxied target's spool
// empty first:
//
//  1. submit: N new 2 KB messages, one process each, one after the other,
//     queue-only (relaymail -odq, dma -bq); the figure is the callers'
//     total over N. Nothing may arrive meanwhile, and N must be queued.
//  2. list: mailq (-bp) listRuns times, and relaymail's -bp --json; the
//     median wall time and the listing process's peak RSS. The listing
//     must account for N messages.
//  3. spool on disk: st_blocks of every file and directory in the spool.
//  4. flush: one queue run (-q) with the smarthost up, watched from the
//     start until every message arrived and the process exited: time,
//     throughput, connections opened in all and at once (proxy.go), the
//     peak RSS of the largest process and of all of them together
//     (rss.go). dma runs its queue only up to -dma-flush-max messages: it
//     forks one process per message, with no limit, each opening a
//     connection of its own, and a queue of 7,362 was still being
//     delivered after 10 minutes. A larger queue of dma's is deleted from
//     its spool and left out of the check, and a note says so.
//
// The report adds how each per-message cost grows from the smallest N to
// the largest, and B6's targets (queueReport).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// listRuns is how many times each listing runs per queue size.
	listRuns = 3
	// flushMaxConns is relaymail's [smarthost] max_connections default,
	// which its queue run must keep to.
	flushMaxConns = 4
	// dmaTargetN is the queue size at which relaymail's queue run is
	// compared with dma's.
	dmaTargetN = 1000
)

// B6's row names, each followed by ", N queued".
const (
	b6Submit     = "B6 submit per message"
	b6List       = "B6 mailq (-bp)"
	b6ListRSS    = "B6 mailq (-bp) peak RSS"
	b6JSON       = "B6 mailq --json"
	b6JSONRSS    = "B6 mailq --json peak RSS"
	b6Spool      = "B6 spool on disk"
	b6Flush      = "B6 flush (-q)"
	b6Throughput = "B6 flush throughput"
	b6Opened     = "B6 flush connections opened"
	b6MostOpen   = "B6 flush most connections at once"
	b6PeakRSS    = "B6 flush peak RSS, largest process"
	b6SumRSS     = "B6 flush peak RSS, sum of processes"
)

func sized(name string, n int) string { return fmt.Sprintf("%s, %d queued", name, n) }

// queueArgs is the command line that queues one message through t without
// delivering it.
func (im *impl) queueArgs(t *target) []string {
	if im.kind == dmaKind {
		return []string{"-bq", "-i", "-f", sender, rcpt}
	}
	return []string{"-C", t.conf, "-odq", "-i", "-f", sender, rcpt}
}

// listArgs is the command line that lists im's queue for t.
func (im *impl) listArgs(t *target, asJSON bool) []string {
	if im.kind == dmaKind {
		return []string{"-bp"}
	}
	if asJSON {
		return []string{"-C", t.conf, "-bp", "--json"}
	}
	return []string{"-C", t.conf, "-bp"}
}

// spoolDir is im's queue directory for t.
func (im *impl) spoolDir(t *target) string {
	if im.kind == dmaKind {
		return t.dmaSpool()
	}
	return t.spool
}

// flushTimeout bounds one queue run of n messages: dma, which forks a
// process per message, gets more (the issue that asked for B6 saw it take
// 58 s for 1,000).
func (im *impl) flushTimeout(n int) time.Duration {
	per := 100 * time.Millisecond
	if im.kind == dmaKind {
		per = 300 * time.Millisecond
	}
	return max(arriveTimeout, time.Duration(n)*per)
}

// queueScale is B6 on stage s.
func (b *bench) queueScale(s *stage) {
	impls := []*impl{b.relaymail}
	if b.dma != nil {
		impls = append(impls, b.dma)
	}
	b.progress("B6 queue at scale at %s: queues of %s messages, each of %s", s.nw.label(), joinInts(b.st.queueSizes), names(impls))
	for _, n := range b.st.queueSizes {
		for _, im := range impls {
			b.queueAt(s, im, n)
		}
	}
}

// queueAt is B6 for one queue size and implementation.
func (b *bench) queueAt(s *stage, im *impl, n int) {
	began := time.Now()
	rtt := s.nw.label()
	g := b.group(fmt.Sprintf("B6 %d", n), im)
	h := im.host(s)
	t := h.proxied
	newRow := func(name string, u unit) *row { return b.addRow(sized(name, n), rtt, im, u, g) }
	submit := newRow(b6Submit, unitMS)
	type listing struct {
		asJSON    bool
		wall, rss *row
	}
	listings := []listing{{false, newRow(b6List, unitMS), newRow(b6ListRSS, unitMiB)}}
	if im.kind == relaymailKind {
		listings = append(listings, listing{true, newRow(b6JSON, unitMS), newRow(b6JSONRSS, unitMiB)})
	}
	spool := newRow(b6Spool, unitMiB)
	flush := newRow(b6Flush, unitMS)
	throughput := newRow(b6Throughput, unitPerSec)
	opened := newRow(b6Opened, unitCount)
	mostOpen := newRow(b6MostOpen, unitCount)
	peakRSS := newRow(b6PeakRSS, unitMiB)
	sumRSS := newRow(b6SumRSS, unitMiB)

	b.prepare(g, im, t)
	if q := im.queued(t); q > 0 && !settled(im, t) {
		b.fail(g, fmt.Sprintf("%d messages in the spool before submitting", im.queued(t)))
		return
	}

	// 1. Submit.
	b.progress("B6 %s: submitting %d messages, queue only", im.name, n)
	first := h.count()
	sums := make([][32]byte, 0, n)
	var total time.Duration
	args := im.queueArgs(t)
	for i := 0; i < n; i++ {
		data, sum := b.message()
		b.expect(sum, g, im)
		sums = append(sums, sum)
		res := b.execWithin(im, data, arriveTimeout, args...)
		total += res.wall
		if res.problem != "" {
			b.fail(g, res.problem)
		}
		if n >= 2000 && (i+1)%(n/5) == 0 {
			b.progress("B6 %s: %d of %d submitted", im.name, i+1, n)
		}
	}
	submit.add(ms(total) / float64(n))
	if got := h.count() - first; got > 0 {
		b.fail(g, fmt.Sprintf("%d of %d messages were delivered by a queue-only submission", got, n))
	}
	if q := im.queued(t); q != n {
		b.fail(g, fmt.Sprintf("%d messages queued after %d queue-only submissions", q, n))
	}

	// 2. List.
	for _, l := range listings {
		for r := 0; r < listRuns; r++ {
			wall, peak, out, problem := b.listQueue(im, t, l.asJSON, max(arriveTimeout, time.Duration(n)*5*time.Millisecond))
			if problem != "" {
				b.fail(g, problem)
				continue
			}
			l.wall.add(ms(wall))
			if peak > 0 {
				l.rss.add(peak)
			}
			what := im.name + " -bp"
			if l.asJSON {
				what += " --json"
			}
			if got, err := countListing(im.kind, l.asJSON, out); err != nil {
				b.fail(g, fmt.Sprintf("%s: %v", what, err))
			} else if got != n {
				b.fail(g, fmt.Sprintf("%s listed %d messages, not %d", what, got, n))
			}
		}
	}

	// 3. Spool on disk.
	if size, err := diskUsage(im.spoolDir(t)); err != nil {
		b.fail(g, fmt.Sprintf("size of the spool: %v", err))
	} else {
		spool.add(float64(size) / (1 << 20))
	}

	// 4. Flush, or for a large queue of dma's, empty it by hand.
	if im.kind == dmaKind && n > b.st.dmaFlushMax {
		b.dropQueue(g, im, t, sums)
	} else {
		b.progress("B6 %s: running a queue of %d", im.name, n)
		b.flushQueue(g, im, h, t, n, flushRows{flush, throughput, opened, mostOpen, peakRSS, sumRSS})
	}
	b.progress("B6 %s, %d queued: done in %v", im.name, n, time.Since(began).Round(time.Second))
}

// flushRows are the rows of one queue run.
type flushRows struct {
	flush, throughput, opened, mostOpen, peakRSS, sumRSS *row
}

// flushQueue runs im's queue of n messages for t on h once and fills rs:
// the time from the start until all n arrived or the process exited,
// whichever is later, the connections, and the memory of every process
// taking part. It gives up at im.flushTimeout(n), or earlier once the
// process has exited and nothing arrived for arriveTimeout.
func (b *bench) flushQueue(g string, im *impl, h *host, t *target, n int, rs flushRows) {
	b.quiesce()
	h.proxy.resetPeak()
	first := h.count()
	p, err := b.start(im, nil, im.flushArgs(t)...)
	if err != nil {
		b.fail(g, err.Error())
		return
	}
	w := watch(p.cmd.Process.Pid, im.bin)
	exited := make(chan result, 1)
	go func() { exited <- p.wait() }()
	timeout := im.flushTimeout(n)
	deadline := p.start.Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var res result
	done := false // the process has exited
	last, lastAt := first, time.Now()
	for {
		select {
		case res = <-exited:
			done = true
			exited = nil
		case <-tick.C:
		}
		c := h.count()
		if c != last {
			last, lastAt = c, time.Now()
		}
		if c >= first+n && done {
			break
		}
		if time.Now().After(deadline) || (done && time.Since(lastAt) > arriveTimeout) {
			break
		}
	}
	if !done {
		p.cmd.Process.Kill()
		res = <-exited
		b.fail(g, fmt.Sprintf("%s -q was still running after %v and was killed", im.name, timeout))
	}
	if res.problem != "" && done {
		b.fail(g, res.problem)
	}
	if at, ok := h.await(first+n-1, 0); ok {
		end := res.start.Add(res.wall)
		if at.After(end) {
			end = at
		}
		d := end.Sub(p.start)
		rs.flush.add(ms(d))
		rs.throughput.add(float64(n) / d.Seconds())
	} else {
		b.fail(g, fmt.Sprintf("%d of %d messages arrived during the queue run (bound %v)", h.count()-first, n, timeout))
	}
	b.settle(g, im, t)
	rs.opened.add(float64(h.proxy.openedSince()))
	rs.mostOpen.add(float64(h.proxy.peakOpen()))
	peaks := w.finish()
	if len(peaks) > 0 {
		rs.peakRSS.add(float64(peaks[0].kib) / 1024)
		rs.sumRSS.add(float64(w.sumPeakKiB()) / 1024)
	}
	about := fmt.Sprintf("the -q process exited after %s; %d process(es) seen", formatMS(ms(res.wall)), len(peaks))
	if len(peaks) > 0 {
		what := peaks[0].what
		if what == "" {
			what = fmt.Sprintf("pid %d", peaks[0].pid)
		}
		about += fmt.Sprintf(", the largest %s at %.1f MiB", what, float64(peaks[0].kib)/1024)
	}
	if w.lingered {
		about += fmt.Sprintf(" (some still running %v after the queue emptied)", pollLinger)
	}
	b.notes = append(b.notes, fmt.Sprintf("B6 %d %s queue run: %s", n, im.name, about))
}

// dropQueue empties im's spool for t by hand, deleting the files in it,
// and takes the messages of sums out of the check: B6 does not run dma's
// queue above -dma-flush-max.
func (b *bench) dropQueue(g string, im *impl, t *target, sums [][32]byte) {
	dir := im.spoolDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.fail(g, fmt.Sprintf("empty the spool: %v", err))
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				b.fail(g, fmt.Sprintf("empty the spool: %v", err))
			}
		}
	}
	dropped := 0
	for _, sum := range sums {
		if snd, ok := b.sent[sum]; ok && snd.group == g {
			delete(b.sent, sum)
			b.checks[g].sent--
			dropped++
		}
	}
	if q := im.queued(t); q > 0 {
		b.fail(g, fmt.Sprintf("%d messages still queued after emptying the spool", q))
	}
	b.notes = append(b.notes, fmt.Sprintf("B6 %d %s: its queue was not run (above -dma-flush-max %d: dma forks one process per message, with no limit, each opening a connection of its own); "+
		"its %d queued messages were deleted from its spool and are left out of the check", len(sums), im.name, b.st.dmaFlushMax, dropped))
}

// execWithin runs im and waits for it, at most timeout: then it kills it.
func (b *bench) execWithin(im *impl, stdin []byte, timeout time.Duration, args ...string) result {
	p, err := b.start(im, bytes.NewReader(stdin), args...)
	if err != nil {
		return result{problem: err.Error()}
	}
	return waitWithin(p, timeout)
}

// waitWithin waits for p to exit, at most timeout: then it kills it and
// says so in the result's problem.
func waitWithin(p *proc, timeout time.Duration) result {
	exited := make(chan result, 1)
	go func() { exited <- p.wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-exited:
		return res
	case <-timer.C:
		p.cmd.Process.Kill()
		res := <-exited
		res.problem = fmt.Sprintf("%s: killed after %v", p.im.name, timeout)
		return res
	}
}

// listQueue lists im's queue for t once and returns the wall time, the
// listing process's peak RSS in MiB (0 if it exited before the poller saw
// it), its stdout, and a problem if it failed.
func (b *bench) listQueue(im *impl, t *target, asJSON bool, timeout time.Duration) (wall time.Duration, peakMiB float64, out, problem string) {
	f, err := os.CreateTemp(b.dir, "listing-")
	if err != nil {
		return 0, 0, "", fmt.Sprintf("create listing file: %v", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	p, err := b.startTo(im, nil, f, im.listArgs(t, asJSON)...)
	if err != nil {
		return 0, 0, "", err.Error()
	}
	w := watch(p.cmd.Process.Pid, im.bin)
	res := waitWithin(p, timeout)
	peaks := w.finish()
	if len(peaks) > 0 {
		peakMiB = float64(peaks[0].kib) / 1024
	}
	// The kernel's figure, when it says something (see rss.go): it also
	// covers the last pollEvery of the process's life.
	if res.usage != nil {
		if self, ok := statusKiB("/proc/self/status", "VmHWM:"); ok && res.usage.Maxrss > self {
			peakMiB = max(peakMiB, float64(res.usage.Maxrss)/1024)
		}
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, 0, "", fmt.Sprintf("read the listing: %v", err)
	}
	return res.wall, peakMiB, string(data), res.problem
}

// countListing returns how many messages a listing of the given kind
// shows, or why it cannot tell:
//
//   - relaymail -bp ends with "-- K Kbytes in N Requests." (or says "Mail
//     queue is empty");
//   - relaymail -bp --json prints one JSON object per message and line;
//   - dma -bp prints a block per message, "ID\t: <id>", "From\t: ...",
//     "To\t: ...", blocks separated by "--" (or "Mail queue is empty").
func countListing(k kind, asJSON bool, out string) (int, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if strings.TrimSpace(out) == "Mail queue is empty" {
		return 0, nil
	}
	switch {
	case k == dmaKind:
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "ID\t:") {
				n++
			}
		}
		return n, nil
	case asJSON:
		n := 0
		for i, l := range lines {
			if l == "" && len(lines) == 1 {
				break // nothing queued
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(l), &obj); err != nil {
				return 0, fmt.Errorf("line %d is not a JSON object: %v", i+1, err)
			}
			n++
		}
		return n, nil
	}
	// The last line, as internal/queue's WriteListing writes it.
	last := lines[len(lines)-1]
	var kbytes, n int
	if _, err := fmt.Sscanf(last, "-- %d Kbytes in %d Request", &kbytes, &n); err != nil ||
		last != fmt.Sprintf("-- %d Kbytes in %d Request%s.", kbytes, n, plural(n)) {
		return 0, fmt.Errorf("the listing does not end with \"-- K Kbytes in N Requests.\": %q", last)
	}
	return n, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// diskUsage returns the bytes that dir and everything under it take on
// disk: st_blocks of each file and directory, in 512-byte units.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ", ")
}

// perMessage is one per-message cost of B6's growth table, taken from a
// row of each queue size.
type perMessage struct {
	label string
	row   string
	each  bool // the row holds the whole queue's figure: divide by N
	kib   bool // the row is in MiB; shown in KiB per message
}

func (b *bench) perMessageCosts() []perMessage {
	return []perMessage{
		{label: "submit (-odq, -bq)", row: b6Submit},
		{label: "mailq (-bp)", row: b6List, each: true},
		{label: "mailq --json", row: b6JSON, each: true},
		{label: "flush (-q)", row: b6Flush, each: true},
		{label: "spool on disk", row: b6Spool, each: true, kib: true},
	}
}

// cost returns f's per-message figure for im at queue size n: ms, or KiB
// for the spool; false when there is none.
func (b *bench) cost(f perMessage, im *impl, n int) (float64, bool) {
	v := b.median(sized(f.row, n), b.stages[0].nw.label(), im)
	if v < 0 {
		return 0, false
	}
	if f.kib {
		v *= 1024
	}
	if f.each {
		v /= float64(n)
	}
	return v, true
}

func (f perMessage) format(v float64) string {
	switch {
	case f.kib:
		return fmt.Sprintf("%.1f KiB", v)
	case v < 1:
		return fmt.Sprintf("%.1f µs", v*1000)
	}
	return formatMS(v)
}

// queueReport is B6's section of the report: how each per-message cost
// grows from the smallest queue to the largest, and B6's targets.
func (b *bench) queueReport() string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	sizes := b.st.queueSizes
	small, large := sizes[0], sizes[len(sizes)-1]
	impls := []*impl{b.relaymail}
	if b.dma != nil {
		impls = append(impls, b.dma)
	}
	p("## B6 queue at scale\n\n")
	p("### Growth of the per-message costs\n\n")
	p("Each figure of the results table over N (times per message; the spool in KiB per message), ")
	if len(sizes) > 1 {
		p("and its growth: the per-message cost at %d queued over that at %d (1.00 is flat).\n\n", large, small)
	} else {
		p("at the one queue size of this run; a growth needs two (-queue-sizes).\n\n")
	}
	p("| per message | implementation |")
	for _, n := range sizes {
		p(" %d queued |", n)
	}
	p(" growth, %d over %d |\n|---|---|", large, small)
	for range sizes {
		p("---|")
	}
	p("---|\n")
	for _, f := range b.perMessageCosts() {
		for _, im := range impls {
			if f.row == b6JSON && im.kind != relaymailKind {
				continue // dma has no JSON listing
			}
			p("| %s | %s |", f.label, im.name)
			for _, n := range sizes {
				if v, ok := b.cost(f, im, n); ok {
					p(" %s |", f.format(v))
				} else {
					p(" — |")
				}
			}
			lo, okLo := b.cost(f, im, small)
			hi, okHi := b.cost(f, im, large)
			if len(sizes) > 1 && okLo && okHi && lo > 0 {
				p(" %.2f× |\n", hi/lo)
			} else {
				p(" — |\n")
			}
		}
	}
	p("\n— is not measured: dma's queue is run only up to -dma-flush-max (%d) messages, and a failed step has no figure (see the check column).\n\n", b.st.dmaFlushMax)

	p("### Targets (B6)\n\n")
	p("| target (B6) | wanted | measured | |\n|---|---|---|---|\n")
	for _, t := range b.queueTargets() {
		p("| %s | %s | %s | %s |\n", t.label, t.wanted, t.got, t.verdict)
	}
	p("\n")
	return w.String()
}

// queueTarget is one line of B6's targets.
type queueTarget struct {
	label, wanted, got, verdict string
}

// queueTargets computes B6's targets from the rows.
func (b *bench) queueTargets() []queueTarget {
	sizes := b.st.queueSizes
	small, large := sizes[0], sizes[len(sizes)-1]
	rtt := b.stages[0].nw.label()
	rm := b.relaymail
	verdict := func(met bool) string {
		if met {
			return "met"
		}
		return "**NOT met**"
	}
	noFigure := func(what string, n int) string {
		return fmt.Sprintf("not measured: no %s at %d queued (see the check column)", what, n)
	}
	oneSize := fmt.Sprintf("not measured: one queue size in this run (-queue-sizes %d); the growth needs two", small)
	var out []queueTarget

	// Growth of a per-message cost, largest N over smallest.
	growth := func(what string, f perMessage, limit float64) queueTarget {
		label := fmt.Sprintf("%s, %d queued over %d", what, large, small)
		if len(sizes) < 2 {
			label = what + ", largest queue over smallest"
		}
		t := queueTarget{label: label, wanted: fmt.Sprintf("≤ %.1f×", limit), got: "—"}
		lo, okLo := b.cost(f, rm, small)
		hi, okHi := b.cost(f, rm, large)
		switch {
		case len(sizes) < 2:
			t.verdict = oneSize
		case !okLo:
			t.verdict = noFigure(f.label, small)
		case !okHi:
			t.verdict = noFigure(f.label, large)
		default:
			g := hi / lo
			t.got = fmt.Sprintf("%.2f× (%s at %d, %s at %d)", g, f.format(hi), large, f.format(lo), small)
			t.verdict = verdict(g <= limit)
		}
		return t
	}
	costs := b.perMessageCosts()
	out = append(out, growth("relaymail submit per message", costs[0], 1.2))

	mailq := queueTarget{label: fmt.Sprintf("relaymail mailq (-bp, text) at %d queued", large), wanted: "< 1 s", got: "—"}
	if v := b.median(sized(b6List, large), rtt, rm); v < 0 {
		mailq.verdict = noFigure("mailq", large)
	} else {
		mailq.got = formatMS(v)
		mailq.verdict = verdict(v < 1000)
	}
	out = append(out, mailq, growth("relaymail mailq (-bp, text) per message", costs[1], 1.5))

	flush := queueTarget{
		label:  fmt.Sprintf("relaymail queue run throughput over dma's, %d queued", dmaTargetN),
		wanted: fmt.Sprintf("≥ 5×, with ≤ %d connections at once", flushMaxConns),
		got:    "—",
	}
	rmRate := b.median(sized(b6Throughput, dmaTargetN), rtt, rm)
	conns := b.median(sized(b6MostOpen, dmaTargetN), rtt, rm)
	switch {
	case !slices.Contains(sizes, dmaTargetN):
		flush.verdict = fmt.Sprintf("not measured: %d is not among -queue-sizes (%s)", dmaTargetN, joinInts(sizes))
	case b.dma == nil:
		flush.verdict = "not measured: no dma (" + b.dmaMissing + ")"
	case b.st.dmaFlushMax < dmaTargetN:
		flush.verdict = fmt.Sprintf("not measured: dma's queue is run only up to -dma-flush-max %d messages", b.st.dmaFlushMax)
	case rmRate < 0 || conns < 0:
		flush.verdict = noFigure("relaymail queue run", dmaTargetN)
	default:
		dmaRate := b.median(sized(b6Throughput, dmaTargetN), rtt, b.dma)
		if dmaRate <= 0 {
			flush.verdict = noFigure("dma queue run", dmaTargetN)
			break
		}
		r := rmRate / dmaRate
		flush.got = fmt.Sprintf("%.1f× (%.0f msg/s against %.0f msg/s), %.0f connection%s at once",
			r, rmRate, dmaRate, conns, map[bool]string{true: "s"}[conns != 1])
		flush.verdict = verdict(r >= 5 && conns <= flushMaxConns)
	}
	out = append(out, flush)

	mem := queueTarget{label: fmt.Sprintf("relaymail queue run peak memory, sum of its processes, %d queued", large), wanted: "≤ 32 MiB", got: "—"}
	if v := b.median(sized(b6SumRSS, large), rtt, rm); v < 0 {
		mem.verdict = noFigure("peak memory of the queue run", large)
	} else {
		mem.got = fmt.Sprintf("%.1f MiB", v)
		mem.verdict = verdict(v <= 32)
	}
	return append(out, mem)
}
