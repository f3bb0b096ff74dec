// Command bench is make bench (issue 5): it runs relaymail, msmtp and dma,
// in the same run and interleaved run by run, against local smarthosts
// (internal/smarthost, STARTTLS and AUTH), and prints the median of each
// figure and the ratios relaymail/msmtp and relaymail/dma.
//
//	sh test/bench/setup.sh && go run ./test/bench -out BENCH.md
//
// This step measures at 0 ms round-trip time (the loopback of the
// benchmark's own network namespace); every benchmark but B5 takes the
// network it runs on, so that test/bench/netem's 50 ms link can be added
// as a second one (see network.go):
//
//   - B5 start-up: "--version", -runs times each (not dma, which has no
//     no-op; nor per network: it does not touch one).
//   - B1 one 2 KB message to one recipient, -runs times each: the caller's
//     wall time and the end-to-end time until the smarthost has recorded
//     the message; relaymail in its default mode and with -odb, msmtp, dma.
//   - B2: -seq sequential invocations, then the queue run ("relaymail -q",
//     "dma -q") if anything stays queued, -reps times each: the callers'
//     total, the end-to-end time until the last message arrived, and the
//     largest number of connections open at once.
//   - B3: -at-once invocations started at once, -at-once-reps times each:
//     the end-to-end time until the last message arrived, the slowest
//     caller's wall time, the largest number of connections open at once.
//   - B4: one -large-mib MiB message, -large-runs times each: the caller's
//     and the end-to-end time, and the peak RSS of every process of the
//     implementation taking part (rss.go).
//   - B6 queue at scale (queuescale.go), once, on loopback only, after the
//     others, relaymail and dma (msmtp keeps no queue): for each size N of
//     -queue-sizes, N messages submitted queue-only, the queue listed
//     (mailq, and relaymail's --json), its size on disk, and one queue run
//     (-q) with the smarthost up: time, throughput, connections and the
//     memory of all processes taking part. dma's queue is run only up to
//     -dma-flush-max messages; above that it is emptied by hand. The
//     report adds how each per-message cost grows from the smallest N to
//     the largest, and B6's own targets.
//
// -only (a comma list, such as "B6" or "B1,B5") runs only the benchmarks
// named, for iterating on one of them; the report says which ran.
//
// The smarthosts do not record when connections open and close, so B2 and
// B3 reach them through a counting TCP proxy (proxy.go); B1 and B4 connect
// directly. dma gets a smarthost of its own that keeps the bytes of each
// message and offers AUTH LOGIN (dma 0.13 speaks LOGIN and CRAM-MD5, not
// PLAIN); relaymail's and msmtp's keeps only hashes and offers PLAIN.
//
// msmtp and dma are found through the status files test/bench/setup.sh
// writes. dma's config path is compiled in, so dma is measured only inside
// the sandbox (sandbox.go): as root, the benchmark re-executes itself in a
// mount and network namespace of its own. When a program cannot be had,
// the report says why and shows the others' figures. -smoke is a tiny run
// (one of each, no msmtp, no dma, a queue of 20 in B6) for go test.
//
// # Rules for the output
//
//   - Every message sent is checked once all runs are done: it arrived
//     exactly once, with the envelope given, over TLS, authenticated, from
//     the sender's EHLO name, and with the SHA-256 of the input after CRLF
//     normalisation (every message carries From, Date and Message-ID, so
//     nothing may be added), after removing the one Received header dma
//     prepends to its messages.
//   - A failed check, a non-zero exit or a message left queued is shown in
//     the check column of its rows, never hidden, and makes the exit status
//     1. Figures of failed runs still count in the medians.
//   - Exit status 2 means the benchmark could not run at all (bad flags, no
//     relaymail binary, no smarthost).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"relaymail/internal/smarthost"
	"relaymail/test/bench/netem"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the parsed command line.
type settings struct {
	relaymail   string
	msmtpStatus string
	dmaStatus   string
	out         string
	dir         string
	runs        int
	seq         int
	reps        int
	atOnce      int
	atOnceReps  int
	largeMiB    int
	largeRuns   int
	queueSizes  []int           // B6's queue sizes, ascending
	dmaFlushMax int             // the largest B6 queue dma runs
	only        map[string]bool // benchmarks to run ("B1".."B6"); nil: all
	smoke       bool
	warmup      bool
	sandbox     bool
	rtt         time.Duration // of the second stage; 0: loopback only
}

// run is the whole command. As root it re-executes itself in the sandbox
// (see sandbox.go) and returns the child's exit status; the child, marked
// by sandboxEnv, sets the sandbox up and measures.
func run(args []string, stdout, stderr io.Writer) int {
	st, ok := parseFlags(args, stderr)
	if !ok {
		return 2
	}
	var sb *sandbox
	var noSandbox string // why there is no sandbox
	switch dir := os.Getenv(sandboxEnv); {
	case dir != "":
		var err error
		if sb, err = enterSandbox(dir); err != nil {
			return sandboxFailed(dir, err)
		}
	case !st.sandbox:
		noSandbox = "-sandbox=false"
	case os.Geteuid() != 0:
		noSandbox = "not run as root (only root can give dma a private /etc/dma in a mount namespace of its own)"
	default:
		exe, err := os.Executable()
		if err == nil {
			var code int
			if code, err = reexec(exe, args, os.Environ(), st.dir, stdout, stderr); err == nil {
				return code
			}
		}
		noSandbox = fmt.Sprintf("it could not be set up: %v", err)
		fmt.Fprintf(stderr, "bench: no sandbox: %s; running without it\n", noSandbox)
	}

	b, err := newBench(st, stderr, sb, noSandbox)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	defer b.close()

	if st.selected("B5") {
		b.startup()
	}
	for _, s := range b.stages {
		for _, bm := range []struct {
			name string
			run  func(*stage)
		}{{"B1", b.single}, {"B2", b.sequential}, {"B3", b.atOnce}, {"B4", b.large}} {
			if st.selected(bm.name) {
				bm.run(s)
			}
		}
	}
	if st.selected("B6") {
		// Loopback only: what B6 measures is local (disk, processes,
		// memory), and one stage keeps its run within minutes.
		b.queueScale(b.stages[0])
	}
	b.verify()

	svg := ""
	if st.out != "" {
		svg = strings.TrimSuffix(st.out, filepath.Ext(st.out)) + ".svg"
	}
	rep := b.report(args, svg)
	fmt.Fprint(stdout, rep)
	if st.out != "" {
		if err := os.WriteFile(svg, []byte(b.chart()), 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: write chart: %v\n", err)
			return 1
		}
		if err := os.WriteFile(st.out, []byte(rep), 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: write report: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: report written to %s, chart to %s\n", st.out, svg)
	}
	if b.failed() {
		fmt.Fprintln(stderr, "bench: some checks failed (see the check column)")
		return 1
	}
	return 0
}

// parseFlags parses args; on failure it has said why on stderr.
func parseFlags(args []string, stderr io.Writer) (settings, bool) {
	st := settings{warmup: true}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&st.relaymail, "relaymail", "./relaymail", "the relaymail binary to measure")
	fs.StringVar(&st.msmtpStatus, "msmtp-status", "test/bench/.tools/status/msmtp", "msmtp's status file written by test/bench/setup.sh")
	fs.StringVar(&st.dmaStatus, "dma-status", "test/bench/.tools/status/dma", "dma's status file written by test/bench/setup.sh")
	fs.StringVar(&st.out, "out", "", "write the report (markdown) to this file, e.g. BENCH.md, and the chart next to it (BENCH.svg)")
	fs.StringVar(&st.dir, "dir", "", "parent of the temporary work directory (spools, configs); default $TMPDIR")
	fs.IntVar(&st.runs, "runs", 20, "runs of B1 and B5 per implementation")
	fs.IntVar(&st.seq, "seq", 200, "sequential invocations in one B2 run")
	fs.IntVar(&st.reps, "reps", 1, "B2 runs per implementation")
	fs.IntVar(&st.atOnce, "at-once", 50, "invocations started at once in one B3 run")
	fs.IntVar(&st.atOnceReps, "at-once-reps", 3, "B3 runs per implementation")
	fs.IntVar(&st.largeMiB, "large-mib", 100, "size of B4's message in MiB")
	fs.IntVar(&st.largeRuns, "large-runs", 3, "B4 runs per implementation")
	fs.DurationVar(&st.rtt, "rtt", 50*time.Millisecond, "round-trip time of the second stage (test/bench/netem, inside the sandbox); 0 for loopback only")
	fs.BoolVar(&st.sandbox, "sandbox", true, "as root, run in a mount and network namespace of its own (needed for dma)")
	queueSizes := fs.String("queue-sizes", "1000,10000", "B6's queue sizes: messages queued before listing and running the queue, comma-separated")
	fs.IntVar(&st.dmaFlushMax, "dma-flush-max", 1000, "largest B6 queue that dma runs (one process and one connection per message); larger ones are emptied by hand")
	only := fs.String("only", "", "run only these benchmarks, comma-separated (B1 to B6); default all")
	fs.BoolVar(&st.smoke, "smoke", false, "tiny run for go test: one run of each, 2 invocations in B2 and B3, 1 MiB in B4, a queue of 20 in B6, no msmtp, no dma")
	if err := fs.Parse(args); err != nil {
		return st, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return st, false
	}
	if st.smoke {
		st.runs, st.seq, st.reps, st.warmup = 1, 2, 1, false
		st.atOnce, st.atOnceReps, st.largeMiB, st.largeRuns = 2, 1, 1, 1
		st.rtt = min(st.rtt, 10*time.Millisecond)
		*queueSizes = "20"
	}
	if min(st.runs, st.seq, st.reps, st.atOnce, st.atOnceReps, st.largeMiB, st.largeRuns) < 1 {
		fmt.Fprintln(stderr, "bench: -runs, -seq, -reps, -at-once, -at-once-reps, -large-mib and -large-runs must be at least 1")
		return st, false
	}
	if st.dmaFlushMax < 0 {
		fmt.Fprintln(stderr, "bench: -dma-flush-max must not be negative")
		return st, false
	}
	var err error
	if st.queueSizes, err = parseSizes(*queueSizes); err != nil {
		fmt.Fprintf(stderr, "bench: -queue-sizes: %v\n", err)
		return st, false
	}
	if st.only, err = parseOnly(*only); err != nil {
		fmt.Fprintf(stderr, "bench: -only: %v\n", err)
		return st, false
	}
	return st, true
}

// parseSizes parses -queue-sizes: positive numbers, returned ascending and
// without repeats.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a number of messages (want, say, 1000,10000)", strings.TrimSpace(f))
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parseOnly parses -only: "" is every benchmark (nil).
func parseOnly(s string) (map[string]bool, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	benchmarks := []string{"B1", "B2", "B3", "B4", "B5", "B6"}
	out := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		name := strings.ToUpper(strings.TrimSpace(f))
		if !slices.Contains(benchmarks, name) {
			return nil, fmt.Errorf("unknown benchmark %q (want some of %s)", strings.TrimSpace(f), strings.Join(benchmarks, ","))
		}
		out[name] = true
	}
	return out, nil
}

// selected reports whether benchmark name ("B1".."B6") runs.
func (st settings) selected(name string) bool {
	return st.only == nil || st.only[name]
}

const (
	authUser = "benchuser"
	password = "bench-password-42"
	sender   = "sender@example.com"
	rcpt     = "rcpt@example.net"
	// The EHLO names tell the implementations apart at the smarthost.
	relaymailHelo = "relaymail.bench.test"
	msmtpHelo     = "msmtp.bench.test"
	dmaHelo       = "dma.bench.test" // dma's MAILNAME
	// arriveTimeout bounds the wait for one message, or for a B2 or B3
	// run's last; largeTimeout for B4's.
	arriveTimeout = 30 * time.Second
	largeTimeout  = 120 * time.Second
	// quiesceTimeout bounds the wait for the previous run's runners and
	// connections to end: a linger (2s) and a QUIT.
	quiesceTimeout = 10 * time.Second
	// settleTimeout bounds the wait for a spool to empty.
	settleTimeout = 15 * time.Second
	// stuckAfter is how long a spool's count must stay the same before B2
	// or B3 runs the queue for what is left.
	stuckAfter = time.Second
)

// bench is one benchmark run: the networks with their smarthosts, the
// implementations and everything measured and checked so far.
type bench struct {
	st        settings
	log       io.Writer
	dir       string
	sb        *sandbox // nil when not sandboxed
	noSandbox string   // why not
	stages    []*stage // one per network
	noRTT     string   // why there is no stage with a round-trip time

	relaymail, relaymailBg *impl
	msmtp, dma             *impl // nil when not measured
	relaymailVersion       string
	msmtpVersion           string
	dmaVersion             string
	msmtpMissing           string // why msmtp is not measured
	dmaMissing             string // why dma is not measured
	dmaConf                *dmaConf

	msgSeq   int
	sent     map[[32]byte]sending // SHA-256 of the wire bytes -> sender
	stripped int                  // dma Received headers removed by verify
	checks   map[string]*check
	groups   []string // check groups in the order first used
	rows     []*row
	notes    []string
	strays   []string // messages no sender can account for
}

// target is one address the implementations send to, with a config for
// each: relaymail's and msmtp's files, dma's spool (its config is written
// when it is used, see dmaConf).
type target struct {
	host    string // what the implementations dial
	port    int
	dir     string
	conf    string // relaymail config
	spool   string // its queue directory
	msmtprc string
}

func (t *target) dmaSpool() string { return filepath.Join(t.dir, "dma-spool") }

// check is what went wrong for one group of sends (benchmark, network and
// implementation).
type check struct {
	sent     int
	problems map[string]int // description -> times seen
	order    []string
}

func newBench(st settings, log io.Writer, sb *sandbox, noSandbox string) (*bench, error) {
	bin, err := filepath.Abs(st.relaymail)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("no relaymail binary at %s (run make build, or pass -relaymail)", bin)
	}
	dir, err := os.MkdirTemp(st.dir, "relaymail-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{st: st, log: log, dir: dir, sb: sb, noSandbox: noSandbox,
		sent: map[[32]byte]sending{}, checks: map[string]*check{}}
	if err := os.Mkdir(filepath.Join(dir, "home"), 0o700); err != nil {
		b.close()
		return nil, err
	}

	env := []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(dir, "home"), "LANG=C"}
	b.relaymail = &impl{name: "relaymail", bin: bin, env: env, helo: relaymailHelo}
	b.relaymailBg = &impl{name: "relaymail -odb", bin: bin, env: env, odb: true, helo: relaymailHelo}
	b.relaymailVersion = strings.TrimSpace(b.output(b.relaymail, "--version"))

	if st.smoke {
		b.msmtpMissing = "not used in -smoke mode"
	} else if kv, why := loadTool(st.msmtpStatus); kv != nil {
		b.msmtp, b.msmtpVersion = toolImpl("msmtp", msmtpKind, msmtpHelo, kv, env), kv["version"]
	} else {
		b.msmtpMissing = why
	}
	switch kv, why := loadTool(st.dmaStatus); {
	case st.smoke:
		b.dmaMissing = "not used in -smoke mode"
	case sb == nil:
		b.dmaMissing = "no sandbox: " + noSandbox
	case kv == nil:
		b.dmaMissing = why
	default:
		if b.dmaConf, b.dmaMissing = newDMAConf(sb.etcDMA, dir); b.dmaConf != nil {
			b.dma, b.dmaVersion = toolImpl("dma", dmaKind, dmaHelo, kv, env), kv["version"]
		}
	}
	for _, m := range []struct{ name, why string }{{"msmtp", b.msmtpMissing}, {"dma", b.dmaMissing}} {
		if m.why != "" && !st.smoke {
			fmt.Fprintf(log, "bench: %s is not measured (%s)\n", m.name, m.why)
		}
	}

	if err := b.addStage(loopback{}); err != nil {
		b.close()
		return nil, err
	}
	// The second stage needs the sandbox's private network namespace, in
	// which test/bench/netem adds a second one behind a delaying link.
	switch {
	case st.rtt <= 0:
	case sb == nil:
		b.noRTT = fmt.Sprintf("%v not measured: no sandbox (%s)", st.rtt, noSandbox)
	default:
		l, err := netem.New(st.rtt)
		if err != nil {
			b.noRTT = fmt.Sprintf("%v not measured: %v", st.rtt, err)
			break
		}
		if err := b.addStage(netemNet{l}); err != nil {
			l.Close()
			b.close()
			return nil, err
		}
	}
	if b.noRTT != "" {
		fmt.Fprintf(log, "bench: %s\n", b.noRTT)
	}
	return b, nil
}

// addStage starts the smarthosts on nw and writes the targets' configs.
func (b *bench) addStage(nw network) error {
	s := &stage{nw: nw}
	b.stages = append(b.stages, s)
	opts := smarthost.Options{
		TLS:          smarthost.StartTLS,
		Users:        map[string]string{authUser: password},
		Mechanisms:   []string{"PLAIN"},
		AuthRequired: true,
		HashOnly:     true,
	}
	var err error
	if s.main, err = newHost(nw, "main", b.dir, opts); err != nil {
		return err
	}
	if b.dma != nil {
		// dma's messages start with a Received header of its own, which
		// the check must see to remove: this smarthost keeps the bytes.
		opts.Mechanisms, opts.HashOnly = []string{"LOGIN"}, false
		if s.dma, err = newHost(nw, "dma", b.dir, opts); err != nil {
			return err
		}
		s.dma.strip = true
	}
	return nil
}

// writeTarget writes, under prefix, a relaymail config and a msmtprc that
// send to host:port over STARTTLS, trusting the CA in ca and verifying the
// smarthost's name (its certificate does not cover every address a
// network may use).
func writeTarget(prefix, host string, port int, ca string) (*target, error) {
	if err := os.Mkdir(prefix, 0o700); err != nil {
		return nil, err
	}
	t := &target{
		host:    host,
		port:    port,
		dir:     prefix,
		conf:    filepath.Join(prefix, "sendmail.conf"),
		spool:   filepath.Join(prefix, "spool"),
		msmtprc: filepath.Join(prefix, "msmtprc"),
	}
	// As in test/e2e's newSetup, with the spool in the work directory.
	conf := fmt.Sprintf(`hostname = %q
domain = "example.com"

[smarthost]
host = %q
port = %d
tls = "starttls"
tls_server_name = %q
ca_file = %q
timeout = "10s"
username = %q
password = %q

[queue]
dir = %q
`, relaymailHelo, host, port, smarthost.DefaultHostname, ca, authUser, password, t.spool)
	// msmtp refuses a config holding a password unless only its owner can
	// read it, hence 0600 for both.
	rc := fmt.Sprintf(`defaults
syslog off
logfile

account bench
host %s
port %d
domain %s
tls on
tls_starttls on
tls_trust_file %s
tls_host_override %s
auth plain
user %s
password %s
from %s

account default : bench
`, host, port, msmtpHelo, ca, smarthost.DefaultHostname, authUser, password, sender)
	if err := os.WriteFile(t.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.msmtprc, []byte(rc), 0o600); err != nil {
		return nil, err
	}
	return t, nil
}

func (b *bench) close() {
	for _, s := range b.stages {
		for _, h := range []*host{s.main, s.dma} {
			if h != nil {
				h.close()
			}
		}
		s.nw.close()
	}
	os.RemoveAll(b.dir)
}

// impls returns the implementations that send mail.
func (b *bench) impls() []*impl {
	out := []*impl{b.relaymail, b.relaymailBg}
	for _, im := range []*impl{b.msmtp, b.dma} {
		if im != nil {
			out = append(out, im)
		}
	}
	return out
}

// interleaved returns the order of the implementations for run r: rotated
// run by run, so none always goes first (and finds caches cold or warm).
func interleaved(impls []*impl, r int) []*impl {
	out := make([]*impl, 0, len(impls))
	for i := range impls {
		out = append(out, impls[(i+r)%len(impls)])
	}
	return out
}

// group returns the check group for a benchmark and implementation.
func (b *bench) group(benchmark string, im *impl) string {
	g := benchmark + " " + im.name
	if b.checks[g] == nil {
		b.checks[g] = &check{problems: map[string]int{}}
		b.groups = append(b.groups, g)
	}
	return g
}

// fail records a problem for group g.
func (b *bench) fail(g, problem string) {
	c := b.checks[g]
	if c.problems[problem] == 0 {
		c.order = append(c.order, problem)
	}
	c.problems[problem]++
}

func (b *bench) failed() bool {
	for _, c := range b.checks {
		if len(c.problems) > 0 {
			return true
		}
	}
	return len(b.strays) > 0
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

func names(impls []*impl) string {
	var s []string
	for _, im := range impls {
		s = append(s, im.name)
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
