package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// unit is what a row's values are.
type unit int

const (
	unitMS    unit = iota // milliseconds; the median is shown
	unitCount             // connections; the largest is shown
)

// row is one line of the table: one figure of one implementation.
type row struct {
	bench  string
	impl   *impl
	unit   unit
	group  string // check group
	values []float64
}

func (b *bench) addRow(bench string, im *impl, u unit, group string) *row {
	r := &row{bench: bench, impl: im, unit: u, group: group}
	b.rows = append(b.rows, r)
	return r
}

func (r *row) add(v float64) { r.values = append(r.values, v) }

// summary is the figure the table shows: the median of times, the largest
// count.
func (r *row) summary() (float64, bool) {
	if len(r.values) == 0 {
		return 0, false
	}
	s := slices.Sorted(slices.Values(r.values))
	if r.unit == unitCount {
		return s[len(s)-1], true
	}
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2, true
	}
	return s[len(s)/2], true
}

func (r *row) format(v float64) string {
	if r.unit == unitCount {
		return fmt.Sprintf("%.0f", v)
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// spread shows the smallest and largest value.
func (r *row) spread() string {
	if len(r.values) < 2 {
		return ""
	}
	lo, hi := slices.Min(r.values), slices.Max(r.values)
	if r.unit == unitCount {
		return fmt.Sprintf("%.0f–%.0f", lo, hi)
	}
	return r.format(lo) + " – " + r.format(hi)
}

// ratio is the row's figure over msmtp's for the same benchmark, for
// relaymail's timed rows (connection counts are shown as they are).
func (b *bench) ratio(r *row) (float64, bool) {
	if r.impl.msmtp || b.msmtp == nil || r.unit == unitCount {
		return 0, false
	}
	v, ok := r.summary()
	if !ok {
		return 0, false
	}
	for _, o := range b.rows {
		if o.bench == r.bench && o.impl.msmtp {
			if m, ok := o.summary(); ok && m > 0 {
				return v / m, true
			}
		}
	}
	return 0, false
}

// checkText is the check column for group g.
func (b *bench) checkText(g string) string {
	c := b.checks[g]
	if len(c.problems) == 0 {
		if c.sent == 0 {
			return "ok (exit 0)"
		}
		return fmt.Sprintf("ok (%d/%d exactly once)", c.sent, c.sent)
	}
	var parts []string
	for _, p := range c.order {
		parts = append(parts, fmt.Sprintf("%s (×%d)", p, c.problems[p]))
	}
	return "**FAIL**: " + strings.ReplaceAll(strings.Join(parts, "; "), "|", "\\|")
}

// table renders the results as a markdown table.
func (b *bench) table() string {
	var t strings.Builder
	t.WriteString("| benchmark | implementation | runs | median | min – max | relaymail/msmtp | check |\n")
	t.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		med, ratio := "—", "—"
		if v, ok := r.summary(); ok {
			med = r.format(v)
			if r.unit == unitCount {
				med += " (largest)"
			}
		}
		if v, ok := b.ratio(r); ok {
			ratio = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&t, "| %s | %s | %d | %s | %s | %s | %s |\n",
			r.bench, r.impl.name, len(r.values), med, r.spread(), ratio, b.checkText(r.group))
	}
	if len(b.strays) > 0 {
		for _, s := range b.strays {
			fmt.Fprintf(&t, "| integrity | — | — | — | — | — | **FAIL**: %s |\n", s)
		}
	}
	return t.String()
}

// targets compares the measured ratios with issue 5's targets for the
// benchmarks this step covers.
func (b *bench) targets() string {
	if b.msmtp == nil {
		return "msmtp was not measured, so no ratio can be compared with issue 5's targets.\n"
	}
	want := []struct {
		bench, impl string
		max         float64
		label       string
	}{
		{"B1 caller", "relaymail", 0.10, "B1 caller, default mode, 0 ms"},
		{"B5 start-up (--version)", "relaymail", 0.6, "B5 start-up"},
	}
	var t strings.Builder
	t.WriteString("| target (issue 5) | wanted | measured | |\n|---|---|---|---|\n")
	for _, w := range want {
		got := "—"
		verdict := "not measured"
		for _, r := range b.rows {
			if r.bench == w.bench && r.impl.name == w.impl {
				if v, ok := b.ratio(r); ok {
					got = fmt.Sprintf("%.2f", v)
					verdict = "met"
					if v > w.max {
						verdict = "**not met**"
					}
				}
			}
		}
		fmt.Fprintf(&t, "| %s | ≤ %.2f | %s | %s |\n", w.label, w.max, got, verdict)
	}
	return t.String()
}

// report is the whole markdown report: BENCH.md.
func (b *bench) report(args []string) string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	p("# relaymail benchmarks\n\n")
	p("Written by `make bench` (test/bench, issue 5). This is the first step of\n")
	p("the benchmark: 0 ms round-trip time only, B1, B5 and a light B2. Do not\n")
	p("edit by hand; run `make bench` again.\n\n")
	if b.st.smoke {
		p("**Smoke run** (`-smoke`): one run of each, to keep the program working; the figures mean nothing.\n\n")
	}
	p("## Machine and run\n\n")
	p("- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: `%s`\n", strings.TrimSpace(commandOutput("uname", "-a")))
	p("- CPUs: %d (%s)\n", runtime.NumCPU(), cpuModel())
	p("- spools and configs in a temporary directory under %s (%s)\n", filepath.Dir(b.dir), fsType(b.dir))
	p("- command: `make bench`, i.e. `sh test/bench/setup.sh` then `go run ./test/bench %s`\n", strings.Join(args, " "))
	p("- relaymail: %s (built by `make build`, %s)\n", b.relaymailVersion, runtime.Version())
	if b.msmtp != nil {
		p("- msmtp: %s (Debian package unpacked under test/bench/.tools by setup.sh, not installed)\n", b.msmtpVersion)
	} else {
		p("- msmtp: **not measured**: %s. The table shows absolute figures only.\n", b.msmtpMissing)
	}
	p("- smarthost: internal/smarthost on 127.0.0.1, STARTTLS (Go crypto/tls, ECDSA P-256 certificate), AUTH PLAIN required, 0 ms round-trip time\n")
	p("- runs: B1 and B5 %d per implementation", b.st.runs)
	if b.st.warmup {
		p(" after one untimed warm-up run")
	}
	p("; B2-light %d runs of %d invocations; implementations alternate run by run\n\n", b.st.reps, b.st.seq)

	p("## Results\n\n")
	p("%s\n", b.table())
	if len(b.notes) > 0 {
		for _, n := range b.notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("%s\n", b.targets())

	p("## What the figures mean\n\n")
	p(`- **caller**: wall time of one sendmail invocation as its caller sees it,
  from fork to the end of wait(2), with the 2 KB message written to its
  stdin through a pipe. This is what a PHP request or a cron job waits for.
- **end-to-end**: from the same start until the smarthost has recorded the
  message (it is about to answer the final dot with 250). For relaymail's
  default mode and msmtp it is a little shorter than the caller's time (the
  process still says QUIT and, for relaymail, removes the spooled copy);
  for -odb it is the time the detached child needs to deliver.
- **relaymail** (default mode) writes the message to its spool and fsyncs
  it (file and directory, twice) before it connects; msmtp keeps nothing.
  relaymail's figure therefore includes the price of never losing a message.
- **relaymail -odb** returns right after the spool commit and delivers from
  a detached child.
- **B5** runs `+"`--version`"+` (fork, exec, dynamic linking for msmtp, Go runtime
  start for relaymail).
- **B2-light**: %d invocations one after the other, as a script's alert
  loop does; the caller total is the sum of their wall times; end-to-end
  runs until the last message arrived (after "relaymail -q" if anything was
  still queued); "most connections at once" is counted by a forwarding TCP
  proxy between the senders and the smarthost, since the smarthost does not
  record when connections open and close. Only B2 goes through the proxy.
- **relaymail/msmtp** is relaymail's median over msmtp's for the same
  benchmark: below 1 relaymail is faster.
- **check**: every message is compared after the run: it arrived exactly
  once, with envelope <%s> → <%s>, over TLS, authenticated, and with the
  SHA-256 of the input after CRLF normalisation (the messages already carry
  From, Date and Message-ID, so neither program may change a byte). A
  non-zero exit or a message left queued is a failure too. Failures show
  here and make the exit status 1.

`, b.st.seq, sender, rcpt)

	p("## Not yet measured\n\n")
	p(`The rest of issue 5's benchmark is still to do:

- **B2-full**: 200 sequential invocations (this run does %d), then the queue flushed.
- **B3**: 50 invocations started at once: end-to-end and simultaneous connections.
- **B4**: one 100 MiB message: time and peak RSS of every relaymail process.
- **50 ms round-trip time** for every benchmark, with real TCP across a
  delaying path (network namespaces and a delaying forwarder, not a proxy
  that hides Nagle and delayed-ACK effects), and round trips counted on
  the wire per message.
- **dma** as a third implementation.
- The chart of caller and end-to-end times per implementation.
- The remaining targets of issue 5 (B1 at 50 ms, -odb vs dma, B2, B3, B4).
`, b.st.seq)
	return w.String()
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "model unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "model unknown"
}

// fsType names the file system holding dir: the spool's fsyncs cost
// nothing on tmpfs.
func fsType(dir string) string {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return "file system unknown"
	}
	names := map[int64]string{
		0xEF53: "ext4", 0x01021994: "tmpfs", 0x794c7630: "overlayfs",
		0x9123683E: "btrfs", 0x58465342: "xfs", 0x65735546: "fuse",
	}
	if n, ok := names[int64(s.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system type %#x", s.Type)
}
