//go:build interop

// Package interop sends mail through the built relaymail binary with the
// real clients from Debian 12's packages (PHP's mail(), Debian's cron,
// bsd-mailx, mutt, git send-email; the application mail libraries Symfony
// Mailer, PHPMailer, Ruby's mail gem and Perl's Email::Sender) and
// Nodemailer from npm to a real SMTP server on 127.0.0.1
// (internal/smarthost, STARTTLS and AUTH with a generated CA), and checks
// the exact envelope and bytes that arrive.
//
// Run it with make interop: test/interop/setup.sh first installs or unpacks
// the clients (never an MTA) and records in .clients/status/<client> whether
// it could; then
//
//	go test -tags interop -count=1 -v ./test/interop/
//
// # How a client reaches relaymail
//
// Each client is configured to call a wrapper script instead of sendmail.
// The wrapper records its argv and stdin, then pipes stdin into
// "relaymail -C <config> <argv>": the tests assert both on what the client
// handed to sendmail and on what reached the smarthost, and log the argv
// (the data CALLERS.md is built from).
//
// # Rules
//
//   - A client's test skips only when setup.sh recorded error= for it; with
//     INTEROP_REQUIRE_ALL=1 (set by make interop) that skip is a failure.
//     A client with no status file at all fails: run setup.sh first.
//   - Nothing here touches /usr/sbin/sendmail: Debian's cron, which
//     hardcodes it, and the libraries, whose default it is, run in a
//     private mount namespace (see cron_test.go and apps_test.go).
package interop

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
	"relaymail/internal/testbin"
)

// binary is the sendmail built once by TestMain.
var binary string

// TestMain builds sendmail from this tree, or takes the binary named by
// $INTEROP_BINARY (an installed package's /usr/sbin/sendmail, say).
func TestMain(m *testing.M) {
	if b := os.Getenv("INTEROP_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	testbin.Main(m, &binary)
}

// client is one program setup.sh obtained, as its status file records it.
type client struct {
	name    string
	version string // Debian packages and versions
	bin     string // absolute path of the program
	ldPath  string // LD_LIBRARY_PATH for an unpacked client, or ""
	// nodePath is NODE_PATH for a library installed from npm, or "".
	nodePath string
}

// clientsDir is where setup.sh keeps the clients and their status files.
func clientsDir() string {
	if d := os.Getenv("INTEROP_CLIENTS"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), ".clients")
}

// needClient returns the client setup.sh recorded under name and logs its
// version. It skips the test when setup.sh could not obtain the client, or
// fails it under INTEROP_REQUIRE_ALL=1, and fails it when there is no
// record.
func needClient(t *testing.T, name string) client {
	t.Helper()
	path := filepath.Join(clientsDir(), "status", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no setup record for %s: %v\nhint: run test/interop/setup.sh (as root) first, or make interop", name, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	if kv["ok"] != "yes" {
		msg := fmt.Sprintf("%s: setup.sh could not obtain it: %s", name, kv["error"])
		if os.Getenv("INTEROP_REQUIRE_ALL") == "1" {
			t.Fatal(msg + " (INTEROP_REQUIRE_ALL=1 turns this skip into a failure)")
		}
		t.Skip(msg)
	}
	c := client{name: name, version: kv["version"], bin: kv["bin"], ldPath: kv["ld_library_path"], nodePath: kv["node_path"]}
	t.Logf("client %s: %s (%s)", name, c.version, c.bin)
	return c
}

const (
	user     = "relayuser"
	password = "correct-horse-battery"
)

// harness is one smarthost, a relaymail config for it and a wrapper script
// that clients call as their sendmail.
type harness struct {
	t       *testing.T
	srv     *smarthost.Server
	dir     string
	home    string // HOME for the client
	conf    string
	wrapper string
	calls   string // where the wrapper records each call
}

// newHarness starts a STARTTLS smarthost that requires AUTH, writes a
// config for it with the given envelope sender and extra tables (such as
// [aliases]), and the wrapper.
func newHarness(t *testing.T, opts smarthost.Options, from, tables string) *harness {
	t.Helper()
	opts.Users = map[string]string{user: password}
	opts.AuthRequired = true
	srv := smarthost.New(t, opts)
	dir := t.TempDir()
	h := &harness{t: t, srv: srv, dir: dir, home: filepath.Join(dir, "home"),
		conf: filepath.Join(dir, "sendmail.conf"), wrapper: filepath.Join(dir, "sendmail-wrapper"),
		calls: filepath.Join(dir, "calls")}
	for _, d := range []string{h.home, h.calls} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := srv.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`hostname = "app01.example.com"
domain = "example.com"
from = %q

[smarthost]
host = "127.0.0.1"
port = %d
tls = "starttls"
ca_file = %q
username = %q
password = %q
timeout = "10s"

[queue]
dir = %q
%s`, from, srv.Port(), ca, user, password, filepath.Join(dir, "spool"), tables)
	if err := os.WriteFile(h.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file name is the time in nanoseconds, so calls sort in order.
	wrapper := fmt.Sprintf(`#!/bin/sh
# Written by relaymail's test/interop: records how a client called
# sendmail, then hands the message to relaymail with the test config.
PATH=/usr/bin:/bin:$PATH
f=%s/$(date +%%s%%N).$$
printf '%%s\0' "$0" "$@" >"$f.argv"
tee "$f.stdin" | %s -C %s "$@"
`, shellQuote(h.calls), shellQuote(binary), shellQuote(h.conf))
	if err := os.WriteFile(h.wrapper, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// call is one run of the wrapper: the argv the client used (argv[0] first)
// and the bytes it wrote to sendmail's stdin.
type call struct {
	argv  []string
	stdin []byte
	at    time.Time // when the wrapper started
}

// recordedCalls returns the wrapper's finished or running calls in the
// order they started.
func (h *harness) recordedCalls() []call {
	h.t.Helper()
	names, err := filepath.Glob(filepath.Join(h.calls, "*.argv"))
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Strings(names)
	var calls []call
	for _, name := range names {
		a, err := os.ReadFile(name)
		if err != nil {
			h.t.Fatal(err)
		}
		in, err := os.ReadFile(strings.TrimSuffix(name, ".argv") + ".stdin")
		if errors.Is(err, fs.ErrNotExist) {
			continue // a call that has only just started
		} else if err != nil {
			h.t.Fatal(err)
		}
		ns, _ := strconv.ParseInt(strings.SplitN(filepath.Base(name), ".", 2)[0], 10, 64)
		calls = append(calls, call{argv: strings.Split(strings.TrimSuffix(string(a), "\x00"), "\x00"), stdin: in, at: time.Unix(0, ns)})
	}
	return calls
}

// oneCall returns the only call of the wrapper and logs its argv.
func (h *harness) oneCall() call {
	h.t.Helper()
	calls := h.recordedCalls()
	if len(calls) != 1 {
		h.t.Fatalf("sendmail was called %d times, want 1", len(calls))
	}
	h.logCall(calls[0])
	return calls[0]
}

func (h *harness) logCall(c call) {
	h.t.Helper()
	args := slices.Clone(c.argv)
	if args[0] == h.wrapper {
		args[0] = "<sendmail>"
	}
	h.t.Logf("argv: %q", args)
}

// one waits for exactly one message and returns it.
func (h *harness) one() smarthost.Message {
	h.t.Helper()
	msgs, err := h.srv.WaitMessages(1, 20*time.Second)
	if err != nil {
		h.t.Fatalf("no message arrived: %v", err)
	}
	if len(msgs) != 1 {
		h.t.Fatalf("%d messages arrived, want 1", len(msgs))
	}
	return msgs[0]
}

// run runs a client program with a minimal environment (HOME in the
// harness, C.UTF-8) plus env, fails the test unless it exits 0, and
// returns what it printed (stdout and stderr, which also carries
// sendmail's stderr).
func (h *harness) run(c client, dir string, stdin []byte, env []string, args ...string) string {
	h.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + h.home, "LANG=C.UTF-8", "TERM=dumb"}, env...)
	if c.ldPath != "" {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+c.ldPath)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		h.t.Fatalf("%s %q did not finish; output:\n%s", c.name, args, out.String())
	}
	h.t.Logf("%s ran in %v", c.name, time.Since(start).Round(time.Millisecond))
	if err != nil {
		h.t.Fatalf("%s %q: %v; output:\n%s", c.name, args, err, out.String())
	}
	if out.Len() > 0 {
		h.t.Logf("%s printed:\n%s", c.name, out.String())
	}
	return out.String()
}

// want is what must arrive.
type want struct {
	from  string   // MAIL FROM
	rcpts []string // RCPT TO, in order
	// body is the exact body that must arrive, with LF line endings that
	// become CRLF on the wire; "" for a MIME message whose boundary the
	// client chose (its body is still compared with what the client wrote).
	body string
	// headers are exact values of fields of the arrived header.
	headers map[string]string
}

// check asserts that m is what the client handed over in c, delivered as
// sendmail must: the envelope of w over TLS with AUTH; the client's header
// fields in their order with Bcc removed and nothing changed, followed only
// by Date, Message-ID and From where the client left them out; each of
// those exactly once; the body byte for byte, both as the client wrote it
// and as the test asked for it; BODY=8BITMIME for 8-bit content, and a
// SIZE no smaller than the message.
func check(t *testing.T, c call, m smarthost.Message, w want) {
	t.Helper()
	t.Logf("the client wrote:\n%s", c.stdin)
	t.Logf("arrived: MAIL FROM:<%s> BODY=%s SIZE=%d, RCPT TO %q:\n%s", m.From, m.MailOpts.Body, m.MailOpts.Size, m.Rcpts, m.Data)
	if m.From != w.from {
		t.Errorf("MAIL FROM = <%s>, want <%s>", m.From, w.from)
	}
	if !slices.Equal(m.Rcpts, w.rcpts) {
		t.Errorf("RCPT TO = %q, want %q", m.Rcpts, w.rcpts)
	}
	// RFC 1870: SIZE may not be less than what is sent.
	if m.MailOpts.Size < int64(len(m.Data)) {
		t.Errorf("MAIL FROM SIZE=%d, but %d bytes arrived", m.MailOpts.Size, len(m.Data))
	}
	if !m.TLS || m.AuthUser != user {
		t.Errorf("message arrived with TLS=%v and AUTH user %q, want TLS and %q", m.TLS, m.AuthUser, user)
	}
	gotHead, gotBody, ok := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("arrived message has no header/body separator:\n%q", m.Data)
	}
	inHead, inBody, ok := bytes.Cut(crlf(c.stdin), []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("the client wrote no header/body separator:\n%q", c.stdin)
	}
	if string(gotBody) != string(inBody) {
		t.Errorf("body changed on the way:\nclient wrote %q\narrived      %q", inBody, gotBody)
	}
	if want := string(crlf([]byte(w.body))); w.body != "" && string(gotBody) != want {
		t.Errorf("body = %q, want %q", gotBody, want)
	}

	gotFields, inFields := fields(gotHead), fields(inHead)
	var kept []string
	for _, f := range inFields {
		if name := fieldName(f); !strings.EqualFold(name, "Bcc") && !strings.EqualFold(name, "Resent-Bcc") {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(inFields) && bytes.Contains(bytes.ToLower(c.stdin), []byte("\nbcc:")) {
		t.Errorf("test bug: the client's Bcc was not recognised")
	}
	if len(gotFields) < len(kept) || !slices.Equal(gotFields[:len(kept)], kept) {
		t.Errorf("header fields changed on the way:\nclient wrote (less Bcc) %q\narrived                 %q", kept, gotFields)
	} else {
		for _, f := range gotFields[len(kept):] {
			if n := strings.ToLower(fieldName(f)); n != "date" && n != "message-id" && n != "from" {
				t.Errorf("relaymail added %q; only Date, Message-ID and From may be added", f)
			}
		}
	}
	for _, name := range []string{"Date", "Message-ID", "From"} {
		if n := len(fieldValues(gotFields, name)); n != 1 {
			t.Errorf("%d %s fields arrived, want 1:\n%s", n, name, gotHead)
		}
	}
	for _, name := range []string{"Bcc", "Resent-Bcc"} {
		if v := fieldValues(gotFields, name); len(v) != 0 {
			t.Errorf("%s arrived: %q", name, v)
		}
	}
	for name, value := range w.headers {
		if got := fieldValues(gotFields, name); len(got) != 1 || got[0] != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
	want8BitMIME(t, m)
}

// want8BitMIME fails when 8-bit content went out without BODY=8BITMIME:
// RFC 6152 section 3 asks for it, and of these clients only cron and mutt
// with use_8bitmime pass -B8BITMIME, so relaymail must notice by itself.
func want8BitMIME(t *testing.T, m smarthost.Message) {
	t.Helper()
	if slices.ContainsFunc(m.Data, func(b byte) bool { return b >= 0x80 }) && m.MailOpts.Body != "8BITMIME" {
		t.Errorf("8-bit message sent with MAIL FROM BODY=%q, want BODY=8BITMIME (RFC 6152 section 3)", m.MailOpts.Body)
	}
}

// crlf turns every line ending into CRLF, as relaymail does.
func crlf(b []byte) []byte {
	return []byte(strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n"))
}

// fields splits a CRLF header block into fields, each with its
// continuation lines.
func fields(head []byte) []string {
	var out []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if len(out) > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			out[len(out)-1] += "\r\n" + line
			continue
		}
		out = append(out, line)
	}
	return out
}

// headerFields returns the fields of a message's header block.
func headerFields(data []byte) []string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return fields(head)
}

func fieldName(f string) string {
	name, _, _ := strings.Cut(f, ":")
	return name
}

// fieldValues returns the unfolded, trimmed values of the fields named
// name (case-insensitive).
func fieldValues(fields []string, name string) []string {
	var out []string
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(strings.ReplaceAll(v, "\r\n", "")))
		}
	}
	return out
}

// mailEvents returns the MAIL FROM lines the server logged, with their
// parameters, for the report.
func mailEvents(srv *smarthost.Server) []string {
	var out []string
	for _, s := range srv.Sessions() {
		for _, ev := range s.Events {
			if strings.HasPrefix(ev, "MAIL ") || strings.HasPrefix(ev, "RCPT ") {
				out = append(out, ev)
			}
		}
	}
	return out
}

// wantArgs fails unless the call's arguments (argv[0] left out) are args.
func wantArgs(t *testing.T, c call, args ...string) {
	t.Helper()
	if !slices.Equal(c.argv[1:], args) {
		t.Errorf("client called sendmail with %q, want %q", c.argv[1:], args)
	}
}
