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
	"time"

	"relaymail/test/bench/netem"
)

// B5: start-up. It touches no network, so it runs once, not per stage;
// dma has no no-op (no --version), so it is not measured.
func (b *bench) startup() {
	impls := []*impl{b.relaymail}
	if b.msmtp != nil {
		impls = append(impls, b.msmtp)
	}
	impls = append(impls, b.floors()...)
	b.progress("B5 start-up: %d runs of --version each of %s", b.st.runs, names(impls))
	rows := map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B5", im)
		rows[im] = b.addRow("B5 start-up (--version)", "—", im, unitMS, g)
		if b.st.warmup {
			b.exec(im, nil, "--version")
		}
	}
	for r := 0; r < b.st.runs; r++ {
		for _, im := range interleaved(impls, r) {
			res := b.exec(im, nil, "--version")
			rows[im].add(ms(res.wall))
			if res.problem != "" {
				b.fail(rows[im].group, res.problem)
			}
		}
	}
}

// floors are B5's baselines: /bin/true (what fork, exec and wait cost a
// C program) and a Go program that prints its version and nothing else
// (what the Go runtime's start costs any Go binary), built here with the
// same flags as relaymail. A floor that cannot be had is left out.
func (b *bench) floors() []*impl {
	out := []*impl{{name: "/bin/true (floor)", bin: "/bin/true", kind: floorKind}}
	dir := filepath.Join(b.dir, "hello")
	src := "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello 1\\n\") }\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return out
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out2, err := cmd.CombinedOutput(); err != nil {
		b.progress("no Go hello-world floor: go build: %v: %s", err, firstLine(string(out2)))
		return out
	}
	return append(out, &impl{name: "Go hello world (floor)", bin: filepath.Join(dir, "hello"), kind: floorKind})
}

// B1: one message, caller and end-to-end.
func (b *bench) single(s *stage) {
	impls, rtt := b.impls(), s.nw.label()
	b.progress("B1 one 2 KB message at %s: %d runs each of %s", rtt, b.st.runs, names(impls))
	caller, e2e := map[*impl]*row{}, map[*impl]*row{}
	flights, elapsed := map[*impl]*row{}, map[*impl]*row{}
	w, counted := s.nw.(wire)
	for _, im := range impls {
		g := b.group("B1 "+rtt, im)
		caller[im] = b.addRow("B1 caller", rtt, im, unitMS, g)
		e2e[im] = b.addRow("B1 end-to-end", rtt, im, unitMS, g)
		if counted {
			flights[im] = b.addRow("B1 client flights on the wire", rtt, im, unitFlights, g)
			elapsed[im] = b.addRow("B1 round trips, SYN to last client packet", rtt, im, unitRTT, g)
		}
		if b.st.warmup {
			b.send(g, im, im.host(s), im.host(s).direct)
		}
	}
	for r := 0; r < b.st.runs; r++ {
		for _, im := range interleaved(impls, r) {
			if counted {
				w.resetConns()
			}
			c, e, ok := b.send(caller[im].group, im, im.host(s), im.host(s).direct)
			caller[im].add(ms(c))
			if ok {
				e2e[im].add(ms(e))
			}
			if counted {
				// The connection that carried the message: the one with
				// the most bytes from the client (there is one per send).
				var best *netem.ConnStats
				cs := w.conns()
				for i := range cs {
					if best == nil || cs[i].ClientBytes > best.ClientBytes {
						best = &cs[i]
					}
				}
				if best != nil {
					flights[im].add(float64(best.Flights))
					elapsed[im].add(best.ElapsedRTTs)
				}
			}
		}
	}
}

// B2: sequential invocations, then the queue run.
func (b *bench) sequential(s *stage) {
	impls, rtt, n := b.impls(), s.nw.label(), b.st.seq
	b.progress("B2 at %s: %d runs each of %d sequential invocations of %s", rtt, b.st.reps, n, names(impls))
	caller, e2e, conns := map[*impl]*row{}, map[*impl]*row{}, map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B2 "+rtt, im)
		caller[im] = b.addRow(fmt.Sprintf("B2 caller total, %d sequential", n), rtt, im, unitMS, g)
		e2e[im] = b.addRow(fmt.Sprintf("B2 end-to-end, %d sequential", n), rtt, im, unitMS, g)
		conns[im] = b.addRow("B2 most connections at once", rtt, im, unitCount, g)
	}
	for r := 0; r < b.st.reps; r++ {
		for _, im := range interleaved(impls, r) {
			c, e, peak, ok := b.burst(caller[im].group, im, im.host(s), n)
			caller[im].add(ms(c))
			if ok {
				e2e[im].add(ms(e))
			}
			conns[im].add(float64(peak))
		}
	}
}

// B3: invocations started at once.
func (b *bench) atOnce(s *stage) {
	impls, rtt, n := b.impls(), s.nw.label(), b.st.atOnce
	b.progress("B3 at %s: %d runs each of %d invocations at once of %s", rtt, b.st.atOnceReps, n, names(impls))
	e2e, slowest, conns := map[*impl]*row{}, map[*impl]*row{}, map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B3 "+rtt, im)
		e2e[im] = b.addRow(fmt.Sprintf("B3 end-to-end, %d at once", n), rtt, im, unitMS, g)
		slowest[im] = b.addRow(fmt.Sprintf("B3 slowest caller, %d at once", n), rtt, im, unitMS, g)
		conns[im] = b.addRow("B3 most connections at once", rtt, im, unitCount, g)
	}
	for r := 0; r < b.st.atOnceReps; r++ {
		for _, im := range interleaved(impls, r) {
			w, e, peak, ok := b.together(e2e[im].group, im, im.host(s), n)
			slowest[im].add(ms(w))
			if ok {
				e2e[im].add(ms(e))
			}
			conns[im].add(float64(peak))
		}
	}
}

// B4: one large message: time and the peak RSS of every process taking
// part (rss.go).
func (b *bench) large(s *stage) {
	impls, rtt, mib := b.impls(), s.nw.label(), b.st.largeMiB
	b.progress("B4 at %s: %d runs each of one %d MiB message through %s", rtt, b.st.largeRuns, mib, names(impls))
	caller, e2e, peak := map[*impl]*row{}, map[*impl]*row{}, map[*impl]*row{}
	procs := map[*impl]string{}
	for _, im := range impls {
		g := b.group("B4 "+rtt, im)
		caller[im] = b.addRow(fmt.Sprintf("B4 caller, %d MiB", mib), rtt, im, unitMS, g)
		e2e[im] = b.addRow(fmt.Sprintf("B4 end-to-end, %d MiB", mib), rtt, im, unitMS, g)
		peak[im] = b.addRow("B4 peak RSS, largest process", rtt, im, unitMiB, g)
	}
	for r := 0; r < b.st.largeRuns; r++ {
		for _, im := range interleaved(impls, r) {
			c, e, p, about, ok := b.sendLarge(caller[im].group, im, im.host(s), mib<<20)
			caller[im].add(ms(c))
			if ok {
				e2e[im].add(ms(e))
			}
			if p > 0 {
				peak[im].add(p)
			}
			procs[im] = about
		}
	}
	for _, im := range impls {
		b.notes = append(b.notes, fmt.Sprintf("B4 %s %s, processes in the last run: %s", rtt, im.name, procs[im]))
	}
}

// sendLarge pipes one new message of size bytes into im, sending straight
// to h, and watches the processes taking part. It returns the caller's
// wall time, the end-to-end time, the largest peak RSS of any process in
// MiB, a description of the processes, and false when the message did not
// arrive.
func (b *bench) sendLarge(g string, im *impl, h *host, size int) (caller, e2e time.Duration, peakMiB float64, about string, ok bool) {
	t := h.direct
	b.prepare(g, im, t)
	m := b.largeMessage(size)
	b.expect(m.sum, g, im)
	i := h.count()
	p, err := b.start(im, m.reader(), im.sendArgs(t)...)
	if err != nil {
		b.fail(g, err.Error())
		return 0, 0, 0, "not started", false
	}
	w := watch(p.cmd.Process.Pid, im.bin)
	res := p.wait()
	if res.problem != "" {
		b.fail(g, res.problem)
	}
	at, ok := h.await(i, largeTimeout)
	if !ok {
		b.fail(g, fmt.Sprintf("the message did not arrive within %v", largeTimeout))
	}
	b.settle(g, im, t)
	peaks := w.finish()
	var parts []string
	for _, pp := range peaks {
		peakMiB = max(peakMiB, float64(pp.kib)/1024)
		if pp.what == "" {
			pp.what = fmt.Sprintf("pid %d", pp.pid)
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", pp.what, float64(pp.kib)/1024))
	}
	if len(peaks) == 0 {
		parts = append(parts, "none seen alive")
	}
	if w.lingered {
		parts = append(parts, fmt.Sprintf("(some still running %v after delivery)", pollLinger))
	}
	about = strings.Join(parts, ", ")
	if res.usage != nil {
		// The cross-check (see rss.go): ru_maxrss says something only
		// above the benchmark's own peak.
		self, _ := statusKiB("/proc/self/status", "VmHWM:")
		if rss := float64(res.usage.Maxrss) / 1024; res.usage.Maxrss > self {
			about += fmt.Sprintf("; the caller's ru_maxrss: %.1f MiB", rss)
		} else {
			about += fmt.Sprintf("; the caller's ru_maxrss, %.1f MiB, is no cross-check: it does not exceed the benchmark's own peak, %.1f MiB (vfork, see rss.go)", rss, float64(self)/1024)
		}
	}
	return res.wall, at.Sub(res.start), peakMiB, about, ok
}

// large is one B4 message: a header block and a body of the same 1 MiB
// block of text, repeated. Lines end in LF and are shorter than 998 bytes.
type large struct {
	header []byte
	block  []byte
	blocks int
	sum    [32]byte // of the message with CRLF line endings
}

// largeMessage makes a new message of at least size bytes and computes its
// SHA-256 (before the clock starts; the smarthost keeps only a hash).
func (b *bench) largeMessage(size int) *large {
	var h bytes.Buffer
	b.header(&h)
	m := &large{header: h.Bytes(), block: largeBlock(), blocks: max(1, size>>20)}
	sum := sha256.New()
	sum.Write(crlf(m.header))
	block := crlf(m.block)
	for i := 0; i < m.blocks; i++ {
		sum.Write(block)
	}
	m.sum = [32]byte(sum.Sum(nil))
	return m
}

// largeBlock returns 1 MiB of numbered lines of text.
func largeBlock() []byte {
	const size = 1 << 20
	var w bytes.Buffer
	for i := 0; w.Len() < size; i++ {
		fmt.Fprintf(&w, "%07d the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs\n", i)
	}
	out := w.Bytes()[:size]
	out[size-1] = '\n'
	return out
}

// reader streams the message, as a caller writes it to sendmail's stdin.
func (m *large) reader() io.Reader {
	rs := []io.Reader{bytes.NewReader(m.header)}
	for i := 0; i < m.blocks; i++ {
		rs = append(rs, bytes.NewReader(m.block))
	}
	return io.MultiReader(rs...)
}
