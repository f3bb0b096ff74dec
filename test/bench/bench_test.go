package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"relaymail/internal/testbin"
)

// binary is the relaymail built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(sandboxEnv) != "" {
		// run re-executed this test binary in its sandbox (sandbox.go):
		// be the benchmark, not the tests.
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	testbin.Main(m, &binary)
}

// TestSmoke runs the whole benchmark in its tiny mode, so that make test
// keeps it working: as root, through the sandbox too. It asserts no
// timing, only that every benchmark ran, every check passed and the report
// and chart were written.
func TestSmoke(t *testing.T) {
	out := filepath.Join(t.TempDir(), "BENCH.md")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-smoke", "-relaymail", binary, "-out", out, "-dir", t.TempDir()}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench -smoke exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	report, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(report, stdout.Bytes()) {
		t.Errorf("the report written to -out differs from stdout")
	}
	want := []string{
		"| B5 start-up (--version) | — | relaymail | 1 |",
		"| B1 caller | 0 ms | relaymail | 1 |",
		"| B1 end-to-end | 0 ms | relaymail -odb | 1 |",
		"| B2 most connections at once | 0 ms | relaymail | 1 | 1 (largest) |",
		"| B3 end-to-end, 2 at once | 0 ms | relaymail -odb | 1 |",
		"| B3 most connections at once | 0 ms | relaymail | 1 |",
		"| B4 end-to-end, 1 MiB | 0 ms | relaymail | 1 |",
		"| B4 peak RSS, largest process | 0 ms | relaymail -odb | 1 |",
		"ok (2/2 exactly once)",
		"| B6 submit per message, 20 queued | 0 ms | relaymail | 1 |",
		"| B6 mailq (-bp), 20 queued | 0 ms | relaymail | 3 |",
		"| B6 mailq --json, 20 queued | 0 ms | relaymail | 3 |",
		"| B6 spool on disk, 20 queued | 0 ms | relaymail | 1 |",
		"| B6 flush (-q), 20 queued | 0 ms | relaymail | 1 |",
		"| B6 flush throughput, 20 queued | 0 ms | relaymail | 1 |",
		"| B6 flush most connections at once, 20 queued | 0 ms | relaymail | 1 |",
		"| B6 flush peak RSS, sum of processes, 20 queued | 0 ms | relaymail | 1 |",
		"ok (20/20 exactly once)",
		"## B6 queue at scale",
		"| submit (-odq, -bq) | relaymail |",
		"| relaymail submit per message, largest queue over smallest | ≤ 1.2× | — | not measured: one queue size in this run",
		"| relaymail queue run throughput over dma's, 1000 queued | ≥ 5×, with ≤ 4 connections at once | — | not measured: 1000 is not among -queue-sizes (20) |",
		"msmtp: **not measured**",
		"dma: **not measured**: not used in -smoke mode",
		"![caller and end-to-end times per implementation](BENCH.svg)",
	}
	if os.Geteuid() == 0 {
		// As root the smoke run has a 10 ms stage (test/bench/netem).
		want = append(want, "- sandbox: the benchmark re-executed itself",
			"| B1 client flights on the wire | 10 ms | relaymail |",
			"| B1 caller, default mode | 50 ms | ≤ 0.65 of msmtp | — | not measured: no 50 ms stage in this run |")
	}
	for _, w := range want {
		if !strings.Contains(string(report), w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
	if strings.Contains(string(report), "FAIL") {
		t.Errorf("report shows a failed check:\n%s", report)
	}
	svg, err := os.ReadFile(filepath.Join(filepath.Dir(out), "BENCH.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil {
		t.Errorf("BENCH.svg is not well-formed XML: %v\n%s", err, svg)
	}
	for _, w := range []string{"B1: one 2 KB message, 0 ms RTT", "B2: 2 sequential invocations", ">relaymail -odb<"} {
		if !bytes.Contains(svg, []byte(w)) {
			t.Errorf("BENCH.svg lacks %q", w)
		}
	}
}

func wellFormed(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// TestChangedBytesShown checks that a message whose bytes changed on the
// way is shown as a failure, never hidden: one without Message-ID and Date,
// which relaymail completes, cannot match the SHA-256 of the input.
func TestChangedBytesShown(t *testing.T) {
	var log bytes.Buffer
	st := settings{relaymail: binary, dir: t.TempDir(), runs: 1, seq: 1, reps: 1, atOnce: 1, atOnceReps: 1, largeMiB: 1, largeRuns: 1, smoke: true}
	b, err := newBench(st, &log, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	g := b.group("B1", b.relaymail)
	data := []byte("From: <" + sender + ">\nTo: <" + rcpt + ">\nSubject: no Date, no Message-ID\n\nbody\n")
	b.expect(sha256.Sum256(crlf(data)), g, b.relaymail)
	if res := b.exec(b.relaymail, data, b.relaymail.sendArgs(b.stages[0].main.direct)...); res.problem != "" {
		t.Fatalf("relaymail failed: %s", res.problem)
	}
	if _, ok := b.stages[0].main.await(0, arriveTimeout); !ok {
		t.Fatal("the message did not arrive")
	}
	b.verify()
	if !b.failed() {
		t.Fatalf("verify passed a message whose bytes changed")
	}
	b.addRow("B1 caller", "0 ms", b.relaymail, unitMS, g).add(1)
	table := b.table()
	for _, want := range []string{"**FAIL**: missing (×1)", "| integrity |", "not any message sent"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestStripReceived removes exactly the one header field dma prepends.
func TestStripReceived(t *testing.T) {
	msg := "From: <a@example.com>\r\nSubject: x\r\n\r\nbody\r\n"
	dma := "Received: from root (uid 0)\r\n\t(envelope-from a@example.com)\r\n\tid 988621\r\n" +
		"\tby dma.bench.test (DragonFly Mail Agent v0.13);\r\n\tFri, 27 Nov 2026 05:19:20 +0000\r\n"
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"dma's header", dma + msg, msg, true},
		{"only the first of two", dma + "Received: by x\r\n" + msg, "Received: by x\r\n" + msg, true},
		{"none", msg, msg, false},
		{"header without an end", "Received: from root", "Received: from root", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := stripReceived([]byte(tc.in))
			if string(got) != tc.want || ok != tc.ok {
				t.Errorf("stripReceived(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestLargeMessage checks B4's message: the size asked, LF line endings,
// no line of 998 bytes or more, and the hash of the CRLF form.
func TestLargeMessage(t *testing.T) {
	b := &bench{}
	m := b.largeMessage(2 << 20)
	data, err := io.ReadAll(m.reader())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 2<<20 || len(data) > 2<<20+1024 {
		t.Errorf("message has %d bytes, want 2 MiB and a header", len(data))
	}
	if bytes.Contains(data, []byte("\r")) || !bytes.HasSuffix(data, []byte("\n")) {
		t.Errorf("message does not have LF line endings only")
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) >= 998 {
			t.Fatalf("line %d has %d bytes", i+1, len(line))
		}
	}
	if got := sha256.Sum256(crlf(data)); got != m.sum {
		t.Errorf("sum = %x, want %x (the CRLF form)", m.sum, got)
	}
}

// TestUnescapeMountinfo decodes the octal escapes of mount points.
func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/etc/my\040file\134x`); got != `/etc/my file\x` {
		t.Errorf("unescapeMountinfo = %q", got)
	}
}

// TestCountListing counts the messages of each listing B6 reads, and
// refuses a listing it cannot count.
func TestCountListing(t *testing.T) {
	dmaOut := "ID\t: 9aa36d.55c74f383960\nFrom\t: sender@example.com\nTo\t: rcpt@example.net\n--\n" +
		"ID\t: 9aa36f.5600e4577960\nFrom\t: sender@example.com\nTo\t: rcpt@example.net\n"
	text := "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------\n" +
		"01JD2K7QX4ABCDEF     2204 Fri Nov 27 03:45:12  sender@example.com\n" +
		"                                               rcpt@example.net\n\n"
	for _, tc := range []struct {
		name    string
		k       kind
		asJSON  bool
		out     string
		want    int
		wantErr string
	}{
		{"relaymail, one", relaymailKind, false, text + "-- 3 Kbytes in 1 Request.\n", 1, ""},
		{"relaymail, many", relaymailKind, false, text + "-- 21524 Kbytes in 10000 Requests.\n", 10000, ""},
		{"relaymail, empty", relaymailKind, false, "Mail queue is empty\n", 0, ""},
		{"relaymail, cut short", relaymailKind, false, text, 0, "does not end with"},
		{"relaymail, wrong plural", relaymailKind, false, text + "-- 3 Kbytes in 2 Request.\n", 0, "does not end with"},
		{"relaymail --json", relaymailKind, true, "{\"queue_id\":\"a\"}\n{\"queue_id\":\"b\"}\n", 2, ""},
		{"relaymail --json, empty", relaymailKind, true, "", 0, ""},
		{"relaymail --json, broken", relaymailKind, true, "{\"queue_id\":\"a\"}\n{\"queue\n", 0, "line 2 is not a JSON object"},
		{"dma", dmaKind, false, dmaOut, 2, ""},
		{"dma, empty", dmaKind, false, "Mail queue is empty\n", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := countListing(tc.k, tc.asJSON, tc.out)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("countListing(%q) = %d, %v, want an error with %q", tc.out, got, err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || got != tc.want):
				t.Errorf("countListing(%q) = %d, %v, want %d", tc.out, got, err, tc.want)
			}
		})
	}
}

// TestQueueFlags parses -queue-sizes and -only.
func TestQueueFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		sizes   []int
		only    map[string]bool
		wantErr string
	}{
		{"defaults", nil, []int{1000, 10000}, nil, ""},
		{"sorted, no repeats", []string{"-queue-sizes", "2000, 200,2000"}, []int{200, 2000}, nil, ""},
		{"smoke", []string{"-smoke", "-queue-sizes", "5000"}, []int{20}, nil, ""},
		{"only", []string{"-only", "b6,B1"}, []int{1000, 10000}, map[string]bool{"B1": true, "B6": true}, ""},
		{"zero", []string{"-queue-sizes", "0"}, nil, nil, "-queue-sizes: \"0\" is not a number of messages"},
		{"unknown benchmark", []string{"-only", "B7"}, nil, nil, "-only: unknown benchmark \"B7\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			st, ok := parseFlags(tc.args, &stderr)
			if tc.wantErr != "" {
				if ok || !strings.Contains(stderr.String(), tc.wantErr) {
					t.Errorf("parseFlags(%q) = ok %v, stderr %q, want an error with %q", tc.args, ok, stderr.String(), tc.wantErr)
				}
				return
			}
			if !ok || !slices.Equal(st.queueSizes, tc.sizes) || !maps.Equal(st.only, tc.only) {
				t.Errorf("parseFlags(%q) = sizes %v, only %v, ok %v (%s), want %v, %v", tc.args, st.queueSizes, st.only, ok, stderr.String(), tc.sizes, tc.only)
			}
		})
	}
}
