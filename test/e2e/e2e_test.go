// Package e2e runs the built sendmail binary as a process, the way cron,
// PHP and mail clients do, against a real SMTP server on 127.0.0.1 with a
// generated CA, STARTTLS and AUTH, and checks the exact envelope and bytes
// that arrive.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"relaymail/internal/queue"
	"relaymail/internal/smarthost"
	"relaymail/internal/testbin"
)

// binary is the sendmail built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	testbin.Main(m, &binary)
}

// setup holds one smarthost and a config pointing at it.
type setup struct {
	t    *testing.T
	srv  *smarthost.Server
	dir  string
	conf string
}

const (
	user     = "relayuser"
	password = "correct-horse-battery"
)

// newSetup starts a smarthost with opts (STARTTLS and AUTH PLAIN/LOGIN for
// user by default) and writes a config for it. extraTop goes before any
// table; extraSmarthost inside [smarthost].
func newSetup(t *testing.T, opts smarthost.Options, extraTop, extraSmarthost string) *setup {
	t.Helper()
	if opts.Users == nil && opts.Tokens == nil {
		opts.Users = map[string]string{user: password}
	}
	srv := smarthost.New(t, opts)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := srv.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	tlsMode := map[smarthost.TLSMode]string{smarthost.StartTLS: "starttls", smarthost.ImplicitTLS: "tls", smarthost.NoTLS: "none"}[opts.TLS]
	auth := fmt.Sprintf("username = %q\npassword = %q\n", user, password)
	if strings.Contains(extraSmarthost, "username") {
		auth = ""
	}
	conf := fmt.Sprintf(`hostname = "app01.example.com"
domain = "example.com"
%s
[smarthost]
host = "127.0.0.1"
port = %d
tls = %q
ca_file = %q
timeout = "10s"
%s%s
[queue]
dir = %q
linger = "200ms"
`, extraTop, srv.Port(), tlsMode, ca, auth, extraSmarthost, filepath.Join(dir, "spool"))
	path := filepath.Join(dir, "sendmail.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Runs before t.TempDir's removal: background runners that sends left
	// behind (-odb, or the hand-off after a send) must be done with the
	// spool first, or the removal races with them.
	t.Cleanup(func() { waitRunners(filepath.Join(dir, "spool")) })
	return &setup{t: t, srv: srv, dir: dir, conf: path}
}

// setQueueDir points the config's [queue] dir at dir ("" for no spool).
func (s *setup) setQueueDir(dir string) {
	s.t.Helper()
	b, err := os.ReadFile(s.conf)
	must(s.t, err)
	conf := regexp.MustCompile(`(?m)^dir = .*$`).ReplaceAllString(string(b), fmt.Sprintf("dir = %q", dir))
	must(s.t, os.WriteFile(s.conf, []byte(conf), 0o600))
}

// mountTmpfs mounts a tmpfs with opts ("size=64k", "ro,size=64k") on a new
// directory name under the setup's, unmounted when the test ends. It skips
// without root (CI runs as root).
func (s *setup) mountTmpfs(name, opts string) string {
	s.t.Helper()
	if os.Geteuid() != 0 {
		s.t.Skip("needs root to mount a tmpfs (CI runs as root)")
	}
	dir := filepath.Join(s.dir, name)
	must(s.t, os.Mkdir(dir, 0o700))
	if out, err := execCommand("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir); err != nil {
		s.t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	s.t.Cleanup(func() { execCommand("umount", dir) })
	return dir
}

type outcome struct {
	code   int
	stdout string
	stderr string
	maxRSS int64 // peak resident set seen while it ran, KiB
}

// run runs sendmail with the config and args, feeding stdin.
func (s *setup) run(stdin string, args ...string) outcome {
	s.t.Helper()
	return runBinary(s.t, strings.NewReader(stdin), append([]string{"-C", s.conf}, args...)...)
}

func runBinary(t *testing.T, stdin interface{ Read([]byte) (int, error) }, args ...string) outcome {
	t.Helper()
	return runBinaryEnv(t, stdin, nil, args...)
}

// runBinaryEnv is runBinary with env added to the child's environment.
func runBinaryEnv(t *testing.T, stdin interface{ Read([]byte) (int, error) }, env []string, args ...string) outcome {
	t.Helper()
	return runCommand(t, stdin, env, append([]string{binary}, args...))
}

// runCommand is runBinaryEnv for a command line that execs the binary in
// the end (unshare, say): argv[0] and its arguments.
func runCommand(t *testing.T, stdin interface{ Read([]byte) (int, error) }, env, argv []string) outcome {
	t.Helper()
	args := argv[1:]
	cmd := exec.Command(argv[0], args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C"}, env...)
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+d)
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	// The kernel's ru_maxrss of a child includes the memory of the test
	// process it was forked from, so the peak is read from /proc while the
	// child runs: VmHWM belongs to the exec'd program alone.
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var hwm int64
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	timeout := time.After(3 * time.Minute)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-poll.C:
			if v := vmHWM(status); v > hwm {
				hwm = v
			}
		case <-timeout:
			cmd.Process.Kill()
			<-done
			t.Fatalf("sendmail %q did not finish; stderr: %s", args, stderr.String())
		}
	}
	o := outcome{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), maxRSS: hwm}
	if strings.Contains(o.stderr, "goroutine ") || strings.Contains(o.stderr, "panic:") {
		t.Errorf("sendmail printed a panic or stack trace:\n%s", o.stderr)
	}
	return o
}

// vmHWM returns the peak resident set in KiB from a /proc status file, or
// 0 when it cannot be read (the process is gone).
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// waitRunners waits, up to 20 s, until no background runner holds a slot
// of the spool for a quiet 200 ms.
func waitRunners(spoolDir string) {
	quiet := time.Time{}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !queue.RunnersIdle(spoolDir) {
			quiet = time.Time{}
			continue
		}
		if quiet.IsZero() {
			quiet = time.Now()
		} else if time.Since(quiet) > 200*time.Millisecond {
			return
		}
	}
}

// one waits for exactly one message and returns it.
func (s *setup) one() smarthost.Message {
	s.t.Helper()
	msgs, err := s.srv.WaitMessages(1, 10*time.Second)
	if err != nil {
		s.t.Fatalf("no message arrived: %v", err)
	}
	if len(msgs) != 1 {
		s.t.Fatalf("%d messages arrived, want 1", len(msgs))
	}
	return msgs[0]
}

// nothingSent checks that no message, no AUTH and no MAIL reached the server.
func (s *setup) nothingSent() {
	s.t.Helper()
	if msgs := s.srv.Messages(); len(msgs) != 0 {
		s.t.Errorf("%d messages arrived, want none", len(msgs))
	}
	for i, sess := range s.srv.Sessions() {
		for _, ev := range sess.Events {
			if strings.HasPrefix(ev, "AUTH") || strings.HasPrefix(ev, "MAIL") || strings.HasPrefix(ev, "RCPT") || strings.HasPrefix(ev, "DATA") {
				s.t.Errorf("session %d: server saw %q, want nothing beyond EHLO/STARTTLS", i, ev)
			}
		}
	}
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func wantEnvelope(t *testing.T, m smarthost.Message, from string, rcpts ...string) {
	t.Helper()
	if m.From != from {
		t.Errorf("MAIL FROM = <%s>, want <%s>", m.From, from)
	}
	if strings.Join(m.Rcpts, " ") != strings.Join(rcpts, " ") {
		t.Errorf("RCPT TO = %q, want %q", m.Rcpts, rcpts)
	}
	if !m.TLS {
		t.Errorf("message arrived without TLS")
	}
	if m.AuthUser != user {
		t.Errorf("AUTH user = %q, want %q", m.AuthUser, user)
	}
}

func wantCode(t *testing.T, o outcome, code int, stderrFragment string) {
	t.Helper()
	if o.code != code {
		t.Errorf("exit code = %d, want %d; stderr:\n%s", o.code, code, o.stderr)
	}
	if stderrFragment != "" && !strings.Contains(o.stderr, stderrFragment) {
		t.Errorf("stderr = %q, want it to contain %q", o.stderr, stderrFragment)
	}
}

// header returns the value of the first field named name in the header
// block of data, or "".
func header(data []byte, name string) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
