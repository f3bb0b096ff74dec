package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// panicReader is stdin with a bug behind it.
type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("boom\nsecond line") }

// TestRunRecovers: a panic in the main goroutine becomes one stderr line
// and EX_SOFTWARE, not a stack trace, and leaves no message half queued.
func TestRunRecovers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "sendmail.conf")
	spool := filepath.Join(dir, "spool")
	if err := os.WriteFile(conf, []byte("[smarthost]\nhost = \"127.0.0.1\"\n[queue]\ndir = \""+spool+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"sendmail", "-C", conf, "-odq", "root"}, panicReader{}, &stdout, &stderr, func(string) string { return "" })
	if code != 70 || stderr.String() != "sendmail: internal error: boom second line (please report it)\n" {
		t.Errorf("run = %d, stderr %q; want 70 and one line", code, stderr.String())
	}
	names, _ := filepath.Glob(filepath.Join(spool, "*"))
	for _, n := range names {
		if base := filepath.Base(n); base != "failed" && base != "run" && !strings.HasPrefix(base, "tmp-") {
			t.Errorf("spool holds %s after the panic", base)
		}
	}
}
