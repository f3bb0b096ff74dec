// Command bench is make bench (issue 5): it runs relaymail and msmtp, in the
// same run and interleaved run by run, against one local smarthost
// (internal/smarthost, STARTTLS and AUTH PLAIN), and prints the median of
// each figure and the ratio relaymail/msmtp.
//
//	sh test/bench/setup.sh && go run ./test/bench -out BENCH.md
//
// This first step measures at 0 ms round-trip time only:
//
//   - B5 start-up: "--version", -runs times each.
//   - B1 one 2 KB message to one recipient, -runs times each: the caller's
//     wall time and the end-to-end time until the smarthost has recorded
//     the message; relaymail in its default mode and with -odb, and msmtp.
//   - B2-light: -seq sequential invocations, then "relaymail -q" if anything
//     is still queued, -reps times each: the caller's total, the end-to-end
//     time until the last message arrived, and the largest number of
//     connections open at once. The smarthost does not record when
//     connections open and close, so B2 reaches it through a counting TCP
//     proxy (proxy.go); B1 and B5 connect to it directly.
//
// msmtp is found through the status file test/bench/setup.sh writes; when it
// could not be had, the report says why and shows absolute figures only.
// -smoke is a tiny run (one of each, no msmtp) for go test.
//
// # Rules for the output
//
//   - Every message sent is checked once all runs are done: it arrived
//     exactly once, with the envelope given, over TLS, authenticated, and
//     with the SHA-256 of the input after CRLF normalisation (every message
//     carries From, Date and Message-ID, so nothing may be added).
//   - A failed check, a non-zero exit or a message left queued is shown in
//     the check column of its rows, never hidden, and makes the exit status
//     1. Figures of failed runs still count in the medians.
//   - Exit status 2 means the benchmark could not run at all (bad flags, no
//     relaymail binary, no smarthost).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"relaymail/internal/smarthost"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the parsed command line.
type settings struct {
	relaymail   string
	msmtpStatus string
	out         string
	dir         string
	runs        int
	seq         int
	reps        int
	smoke       bool
	warmup      bool
}

func run(args []string, stdout, stderr io.Writer) int {
	st := settings{warmup: true}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&st.relaymail, "relaymail", "./relaymail", "the relaymail binary to measure")
	fs.StringVar(&st.msmtpStatus, "msmtp-status", "test/bench/.tools/status/msmtp", "status file written by test/bench/setup.sh")
	fs.StringVar(&st.out, "out", "", "write the report (markdown) to this file, e.g. BENCH.md")
	fs.StringVar(&st.dir, "dir", "", "parent of the temporary work directory (spools, configs); default $TMPDIR")
	fs.IntVar(&st.runs, "runs", 20, "runs of B1 and B5 per implementation")
	fs.IntVar(&st.seq, "seq", 50, "sequential invocations in one B2 run")
	fs.IntVar(&st.reps, "reps", 3, "B2 runs per implementation")
	fs.BoolVar(&st.smoke, "smoke", false, "tiny run for go test: one run of each, 2 invocations in B2, no msmtp")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if st.smoke {
		st.runs, st.seq, st.reps, st.warmup = 1, 2, 1, false
	}
	if st.runs < 1 || st.seq < 1 || st.reps < 1 {
		fmt.Fprintln(stderr, "bench: -runs, -seq and -reps must be at least 1")
		return 2
	}
	b, err := newBench(st, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	defer b.close()

	b.startup()
	b.single()
	b.sequential()
	b.verify()

	rep := b.report(args)
	fmt.Fprint(stdout, rep)
	if st.out != "" {
		if err := os.WriteFile(st.out, []byte(rep), 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: write report: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: report written to %s\n", st.out)
	}
	if b.failed() {
		fmt.Fprintln(stderr, "bench: some checks failed (see the check column)")
		return 1
	}
	return 0
}

const (
	user     = "benchuser"
	password = "bench-password-42"
	sender   = "sender@example.com"
	rcpt     = "rcpt@example.net"
	// The EHLO names tell the two implementations apart at the smarthost.
	relaymailHelo = "relaymail.bench.test"
	msmtpHelo     = "msmtp.bench.test"
	// arriveTimeout bounds the wait for one message, or for a B2 run's last.
	arriveTimeout = 30 * time.Second
	// settleTimeout bounds the wait for a relaymail spool to empty.
	settleTimeout = 15 * time.Second
	// stuckAfter is how long a spool's count must stay the same before B2
	// runs "relaymail -q" for what is left.
	stuckAfter = time.Second
)

// bench is one benchmark run: the smarthost, a proxy in front of it, the
// implementations and everything measured and checked so far.
type bench struct {
	st     settings
	log    io.Writer
	dir    string
	srv    *smarthost.Server
	proxy  *proxy
	direct *target // B1: straight to the smarthost
	viaPx  *target // B2: through the counting proxy

	relaymail, relaymailBg, msmtp *impl // msmtp nil when unavailable
	relaymailVersion              string
	msmtpVersion                  string
	msmtpMissing                  string // why msmtp is not measured

	msgSeq int
	sent   map[[32]byte]string // SHA-256 of the wire bytes -> check group
	checks map[string]*check
	groups []string // check groups in the order first used
	rows   []*row
	notes  []string
	strays []string // messages no sender can account for
}

// target is one address relaymail and msmtp send to, with a config for each.
type target struct {
	conf    string // relaymail config
	spool   string // its queue directory
	msmtprc string
}

// check is what went wrong for one group of sends (benchmark and
// implementation).
type check struct {
	sent     int
	problems map[string]int // description -> times seen
	order    []string
}

func newBench(st settings, log io.Writer) (*bench, error) {
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
	b := &bench{st: st, log: log, dir: dir, sent: map[[32]byte]string{}, checks: map[string]*check{}}
	srv, err := smarthost.Start(smarthost.Options{
		TLS:          smarthost.StartTLS,
		Users:        map[string]string{user: password},
		Mechanisms:   []string{"PLAIN"},
		AuthRequired: true,
		HashOnly:     true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.srv = srv
	if b.proxy, err = startProxy(srv.Addr()); err != nil {
		b.close()
		return nil, err
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := srv.WriteCA(ca); err != nil {
		b.close()
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "home"), 0o700); err != nil {
		b.close()
		return nil, err
	}
	if b.direct, err = writeTarget(filepath.Join(dir, "direct"), srv.Port(), ca); err != nil {
		b.close()
		return nil, err
	}
	if b.viaPx, err = writeTarget(filepath.Join(dir, "proxied"), b.proxy.port(), ca); err != nil {
		b.close()
		return nil, err
	}

	env := []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(dir, "home"), "LANG=C"}
	b.relaymail = &impl{name: "relaymail", bin: bin, env: env}
	b.relaymailBg = &impl{name: "relaymail -odb", bin: bin, env: env, odb: true}
	b.relaymailVersion = strings.TrimSpace(b.output(b.relaymail, "--version"))

	if st.smoke {
		b.msmtpMissing = "not used in -smoke mode"
	} else if m, version, why := loadMsmtp(st.msmtpStatus, env); m != nil {
		b.msmtp, b.msmtpVersion = m, version
	} else {
		b.msmtpMissing = why
		fmt.Fprintf(log, "bench: msmtp is not available (%s); reporting absolute figures only\n", why)
	}
	return b, nil
}

// writeTarget writes, under prefix, a relaymail config and a msmtprc that
// send to 127.0.0.1:port over STARTTLS, trusting the CA in ca.
func writeTarget(prefix string, port int, ca string) (*target, error) {
	if err := os.Mkdir(prefix, 0o700); err != nil {
		return nil, err
	}
	t := &target{
		conf:    filepath.Join(prefix, "sendmail.conf"),
		spool:   filepath.Join(prefix, "spool"),
		msmtprc: filepath.Join(prefix, "msmtprc"),
	}
	// As in test/e2e's newSetup, with the spool in the work directory.
	conf := fmt.Sprintf(`hostname = %q
domain = "example.com"

[smarthost]
host = "127.0.0.1"
port = %d
tls = "starttls"
ca_file = %q
timeout = "10s"
username = %q
password = %q

[queue]
dir = %q
`, relaymailHelo, port, ca, user, password, t.spool)
	// msmtp refuses a config holding a password unless only its owner can
	// read it, hence 0600 for both.
	rc := fmt.Sprintf(`defaults
syslog off
logfile

account bench
host 127.0.0.1
port %d
domain %s
tls on
tls_starttls on
tls_trust_file %s
auth plain
user %s
password %s
from %s

account default : bench
`, port, msmtpHelo, ca, user, password, sender)
	if err := os.WriteFile(t.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.msmtprc, []byte(rc), 0o600); err != nil {
		return nil, err
	}
	return t, nil
}

// loadMsmtp reads setup.sh's status file. It returns msmtp and its version,
// or nil and the reason it cannot be used.
func loadMsmtp(status string, env []string) (*impl, string, string) {
	data, err := os.ReadFile(status)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Sprintf("no %s: run test/bench/setup.sh first (make bench does)", status)
	} else if err != nil {
		return nil, "", fmt.Sprintf("read %s: %v", status, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	if kv["ok"] != "yes" {
		why := kv["error"]
		if why == "" {
			why = "setup.sh recorded neither ok nor an error"
		}
		return nil, "", "setup.sh: " + why
	}
	if _, err := os.Stat(kv["bin"]); err != nil {
		return nil, "", fmt.Sprintf("msmtp binary: %v", err)
	}
	env = append(append([]string(nil), env...), "LD_LIBRARY_PATH="+kv["ld_library_path"])
	return &impl{name: "msmtp", bin: kv["bin"], env: env, msmtp: true}, kv["version"], ""
}

func (b *bench) close() {
	if b.proxy != nil {
		b.proxy.close()
	}
	if b.srv != nil {
		b.srv.Close()
	}
	os.RemoveAll(b.dir)
}

// impls returns the implementations that send mail.
func (b *bench) impls() []*impl {
	out := []*impl{b.relaymail, b.relaymailBg}
	if b.msmtp != nil {
		out = append(out, b.msmtp)
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

// B5: start-up.
func (b *bench) startup() {
	impls := []*impl{b.relaymail}
	if b.msmtp != nil {
		impls = append(impls, b.msmtp)
	}
	b.progress("B5 start-up: %d runs of --version each", b.st.runs)
	rows := map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B5", im)
		rows[im] = b.addRow("B5 start-up (--version)", im, unitMS, g)
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

// B1: one message, caller and end-to-end.
func (b *bench) single() {
	impls := b.impls()
	b.progress("B1 one 2 KB message: %d runs each of %s", b.st.runs, names(impls))
	caller, e2e := map[*impl]*row{}, map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B1", im)
		caller[im] = b.addRow("B1 caller", im, unitMS, g)
		e2e[im] = b.addRow("B1 end-to-end", im, unitMS, g)
		if b.st.warmup {
			b.send(g, im, b.direct)
		}
	}
	for r := 0; r < b.st.runs; r++ {
		for _, im := range interleaved(impls, r) {
			c, e, ok := b.send(caller[im].group, im, b.direct)
			caller[im].add(ms(c))
			if ok {
				e2e[im].add(ms(e))
			}
		}
	}
}

// B2-light: sequential invocations, then the queue run.
func (b *bench) sequential() {
	impls := b.impls()
	b.progress("B2-light: %d runs each of %d sequential invocations of %s", b.st.reps, b.st.seq, names(impls))
	caller, e2e, conns := map[*impl]*row{}, map[*impl]*row{}, map[*impl]*row{}
	for _, im := range impls {
		g := b.group("B2", im)
		caller[im] = b.addRow(fmt.Sprintf("B2-light caller total, %d sequential", b.st.seq), im, unitMS, g)
		e2e[im] = b.addRow(fmt.Sprintf("B2-light end-to-end, %d sequential", b.st.seq), im, unitMS, g)
		conns[im] = b.addRow("B2-light most connections at once", im, unitCount, g)
	}
	for r := 0; r < b.st.reps; r++ {
		for _, im := range interleaved(impls, r) {
			c, e, peak, ok := b.burst(caller[im].group, im, b.viaPx, b.st.seq)
			caller[im].add(ms(c))
			if ok {
				e2e[im].add(ms(e))
			}
			conns[im].add(float64(peak))
		}
	}
}

func names(impls []*impl) string {
	var s []string
	for _, im := range impls {
		s = append(s, im.name)
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
