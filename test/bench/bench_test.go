package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relaymail/internal/testbin"
)

// binary is the relaymail built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	testbin.Main(m, &binary)
}

// TestSmoke runs the whole benchmark in its tiny mode, so that make test
// keeps it working. It asserts no timing, only that every benchmark ran,
// every check passed and the report was written.
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
	for _, want := range []string{
		"| B5 start-up (--version) | relaymail | 1 |",
		"| B1 caller | relaymail | 1 |",
		"| B1 end-to-end | relaymail -odb | 1 |",
		"| B2-light most connections at once | relaymail | 1 | 1 (largest) |",
		"ok (2/2 exactly once)",
		"msmtp: **not measured**",
		"## Not yet measured",
	} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(string(report), "FAIL") {
		t.Errorf("report shows a failed check:\n%s", report)
	}
}

// TestChangedBytesShown checks that a message whose bytes changed on the
// way is shown as a failure, never hidden: one without Message-ID and Date,
// which relaymail completes, cannot match the SHA-256 of the input.
func TestChangedBytesShown(t *testing.T) {
	var log bytes.Buffer
	b, err := newBench(settings{relaymail: binary, dir: t.TempDir(), runs: 1, seq: 1, reps: 1, smoke: true}, &log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	g := b.group("B1", b.relaymail)
	data := []byte("From: <" + sender + ">\nTo: <" + rcpt + ">\nSubject: no Date, no Message-ID\n\nbody\n")
	b.sent[sha256.Sum256(bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")))] = g
	b.checks[g].sent++
	if res := b.exec(b.relaymail, data, b.relaymail.sendArgs(b.direct)...); res.problem != "" {
		t.Fatalf("relaymail failed: %s", res.problem)
	}
	b.verify()
	if !b.failed() {
		t.Fatalf("verify passed a message whose bytes changed")
	}
	b.addRow("B1 caller", b.relaymail, unitMS, g).add(1)
	table := b.table()
	for _, want := range []string{"**FAIL**: missing (×1)", "| integrity |", "not any message sent"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}
