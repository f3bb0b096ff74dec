package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/smarthost"
	"relaymail/internal/testbin"
)

// The setgid install, for real: a binary setgid to a group that alone may
// read the config and write the spool, run by ordinary users. The group is
// a gid nobody has (no /etc/group entry is needed for it); the users are
// Debian's www-data and nobody.
const (
	privGID   = 47011
	webUID    = 33 // www-data
	nobodyUID = 65534
)

// privSetup is the installed layout under one directory that every user
// may traverse: sendmail (root:privGID 2755, built with this config as its
// default), sendmail.conf (root:privGID 0640, holding the password),
// spool/ (root:privGID 0770) and the smarthost's CA (0644).
type privSetup struct {
	t                *testing.T
	srv              *smarthost.Server
	dir, bin, conf   string
	spool, ca, other string // other: a second CA, for the environment test
}

func newPrivSetup(t *testing.T) *privSetup {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it installs a setgid binary and runs it as www-data and nobody (CI runs it as root)")
	}
	dir := t.TempDir()
	// t.TempDir's directories are 0700; the users must get through them.
	for _, d := range []string{filepath.Dir(dir), dir} {
		must(t, os.Chmod(d, 0o755))
	}
	var st syscall.Statfs_t
	must(t, syscall.Statfs(dir, &st))
	if st.Flags&0x2 != 0 { // ST_NOSUID
		t.Fatalf("%s is on a nosuid file system: the setgid test cannot run there; set TMPDIR to a directory on another", dir)
	}
	s := &privSetup{t: t, dir: dir, bin: filepath.Join(dir, "sendmail"), conf: filepath.Join(dir, "sendmail.conf"),
		spool: filepath.Join(dir, "spool"), ca: filepath.Join(dir, "ca.pem"), other: filepath.Join(dir, "other-ca.pem")}
	s.srv = smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
	must(t, s.srv.WriteCA(s.ca))
	must(t, os.Chmod(s.ca, 0o644))
	s.writeConfig(s.srv.Port())
	must(t, os.Mkdir(s.spool, 0o770))
	must(t, os.Chown(s.spool, 0, privGID))
	must(t, os.Chmod(s.spool, 0o770))
	if err := testbin.BuildTo(s.bin, "-ldflags=-X main.defaultConfigPath="+s.conf); err != nil {
		t.Fatal(err)
	}
	// chown clears the setgid bit: chmod after it.
	must(t, os.Chown(s.bin, 0, privGID))
	must(t, os.Chmod(s.bin, 0o755|os.ModeSetgid))
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes the installed config for a smarthost on port.
func (s *privSetup) writeConfig(port int) {
	conf := fmt.Sprintf(`hostname = "app01.example.com"
domain = "example.com"

[smarthost]
host = "127.0.0.1"
port = %d
ca_file = %q
username = %q
password = %q
timeout = "10s"

[queue]
dir = %q
`, port, s.ca, user, password, s.spool)
	must(s.t, os.WriteFile(s.conf, []byte(conf), 0o640))
	must(s.t, os.Chown(s.conf, 0, privGID))
	must(s.t, os.Chmod(s.conf, 0o640))
}

// runAs runs the installed sendmail as uid (with its own gid and no other
// group) and the environment given, plus PATH.
func (s *privSetup) runAs(uid int, env []string, stdin string, args ...string) outcome {
	s.t.Helper()
	return s.runCmd(uid, env, stdin, s.bin, args...)
}

func (s *privSetup) runCmd(uid int, env []string, stdin, prog string, args ...string) outcome {
	s.t.Helper()
	gid := uid
	if uid == nobodyUID {
		gid = 65534 // nogroup
	}
	cmd := exec.Command(prog, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.Dir = s.dir
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	}
	err := cmd.Run()
	o := outcome{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		o.code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%s %q: %v", prog, args, err)
	}
	return o
}

// queued returns the ids in the spool.
func (s *privSetup) queued() []string {
	s.t.Helper()
	names, err := filepath.Glob(filepath.Join(s.spool, "*.env"))
	must(s.t, err)
	var ids []string
	for _, n := range names {
		ids = append(ids, strings.TrimSuffix(filepath.Base(n), ".env"))
	}
	return ids
}

const privMessage = "From: web@example.com\nTo: b@example.net\nSubject: from www-data\n\nhello\n"

// TestSetgid: ordinary users send, list and flush through the group and
// nothing more. www-data queues a message: the spool files are its own but
// the group's to read (0660), the envelope names it; nobody, another user,
// cannot see or delete it in mailq, may flush the queue, which delivers it
// with the password it cannot read itself; -C, SENDMAIL_CONF and
// SSL_CERT_FILE give a user nothing the group has; closed descriptors 0-2
// do not let the spool's files become the output.
func TestSetgid(t *testing.T) {
	s := newPrivSetup(t)

	// The users cannot read the config or enter the spool themselves.
	if o := s.runCmd(webUID, nil, "", "/bin/cat", s.conf); o.code == 0 || strings.Contains(o.stdout, password) {
		t.Fatalf("www-data read the config itself: exit %d", o.code)
	}
	if o := s.runCmd(webUID, nil, "", "/bin/ls", s.spool); o.code == 0 {
		t.Fatalf("www-data listed the spool itself")
	}

	// www-data queues a message through the group.
	o := s.runAs(webUID, nil, privMessage, "-odq", "-f", "web@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	ids := s.queued()
	if len(ids) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ids))
	}
	id := ids[0]
	for _, name := range []string{id + ".msg", id + ".env"} {
		fi, err := os.Lstat(filepath.Join(s.spool, name))
		must(t, err)
		sys := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != 0o660 || sys.Uid != webUID || sys.Gid != privGID {
			t.Errorf("%s: mode %v, owner %d:%d; want 0660 and %d:%d", name, fi.Mode(), sys.Uid, sys.Gid, webUID, privGID)
		}
	}
	b, err := os.ReadFile(filepath.Join(s.spool, id+".env"))
	must(t, err)
	var env struct {
		UID  int    `json:"uid"`
		User string `json:"user"`
	}
	must(t, json.Unmarshal(b, &env))
	if env.UID != webUID || env.User != "www-data" {
		t.Errorf("envelope says uid %d user %q, want %d www-data", env.UID, env.User, webUID)
	}

	// mailq: the owner and root see it, another user does not.
	for _, tt := range []struct {
		uid  int
		sees bool
	}{{webUID, true}, {0, true}, {nobodyUID, false}} {
		o := s.runAs(tt.uid, nil, "", "-bp")
		wantCode(t, o, 0, "")
		if strings.Contains(o.stdout, id) != tt.sees {
			t.Errorf("mailq as uid %d: sees %s = %v, want %v:\n%s", tt.uid, id, !tt.sees, tt.sees, o.stdout)
		}
	}
	// nobody cannot delete it, by id or with ALL.
	o = s.runAs(nobodyUID, nil, "", "--delete", id)
	wantCode(t, o, 75, "not in the queue")
	s.runAs(nobodyUID, nil, "", "--delete", "ALL")
	if got := s.queued(); len(got) != 1 {
		t.Fatalf("after nobody's deletes, the queue holds %q", got)
	}

	// -C by an ordinary user runs without the group: no file of the
	// group's (here a copy of the config) can be read that way. -C naming
	// the installed config itself changes nothing.
	stolen := filepath.Join(s.dir, "copy.conf")
	b, err = os.ReadFile(s.conf)
	must(t, err)
	must(t, os.WriteFile(stolen, b, 0o640))
	must(t, os.Chown(stolen, 0, privGID))
	wantCode(t, s.runAs(webUID, nil, "", "-C", s.conf, "-bv", "b@example.net"), 0, "")
	for _, path := range []string{stolen, "/etc/shadow"} {
		o := s.runAs(webUID, nil, "", "-C", path, "-bv", "b@example.net")
		wantCode(t, o, 78, "permission denied")
		if strings.Contains(o.stderr+o.stdout, password) || strings.Contains(o.stderr+o.stdout, "root:") {
			t.Errorf("-C %s showed the file:\n%s%s", path, o.stdout, o.stderr)
		}
	}
	// Root may name a config.
	wantCode(t, s.runAs(0, nil, "", "-C", s.conf, "-bv", "b@example.net"), 0, "")

	// nobody flushes the queue: delivered with the config's password.
	o = s.runAs(nobodyUID, nil, "", "-q")
	wantCode(t, o, 0, "")
	msgs, err := s.srv.WaitMessages(1, 10*time.Second)
	must(t, err)
	wantEnvelope(t, msgs[0], "web@example.com", "b@example.net")
	if msgs[0].AuthUser != user {
		t.Errorf("delivered with AUTH user %q, want %q", msgs[0].AuthUser, user)
	}
	if got := s.queued(); len(got) != 0 {
		t.Errorf("after the queue run, the queue holds %q", got)
	}
}

// TestSetgidEnvironment: SSL_CERT_FILE naming the caller's own CA would let
// a fake relay take the password; SENDMAIL_CONF would swap the config. The
// setgid binary ignores both, while the same binary without setgid honours
// SSL_CERT_FILE (so the test can tell).
func TestSetgidEnvironment(t *testing.T) {
	s := newPrivSetup(t)
	// The "fake relay": another smarthost with another CA, which the
	// caller names in SSL_CERT_FILE.
	fake := smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
	must(t, fake.WriteCA(s.other))
	must(t, os.Chmod(s.other, 0o644))
	s.writeConfig(fake.Port())
	decoy := filepath.Join(s.dir, "decoy.conf")
	must(t, os.WriteFile(decoy, []byte("this is not a config"), 0o644))
	env := []string{"SSL_CERT_FILE=" + s.other, "SENDMAIL_CONF=" + decoy, "GODEBUG=x509ignoreCN=0"}

	o := s.runAs(webUID, env, privMessage, "-odi", "-f", "web@example.com", "b@example.net")
	t.Logf("setgid, as www-data: exit %d\n%s", o.code, o.stderr)
	if strings.Contains(o.stderr, "decoy") || strings.Contains(o.stderr, "not a config") {
		t.Errorf("the setgid binary read $SENDMAIL_CONF:\n%s", o.stderr)
	}
	if !strings.Contains(o.stderr, "certificate") {
		t.Errorf("want a certificate error from the fake relay, got:\n%s", o.stderr)
	}
	for _, sess := range fake.Sessions() {
		for _, ev := range sess.Events {
			if strings.HasPrefix(ev, "AUTH") {
				t.Errorf("the fake relay got %q", ev)
			}
		}
	}
	if n := len(fake.Messages()); n != 0 {
		t.Errorf("the fake relay got %d messages", n)
	}

	// Without setgid, SSL_CERT_FILE counts: the same run reaches the fake
	// relay. (Root, so that the config and spool stay readable.)
	must(t, os.Chmod(s.bin, 0o755))
	o = s.runAs(0, env[:1], privMessage, "-odi", "-f", "web@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	if _, err := fake.WaitMessages(1, 10*time.Second); err != nil {
		t.Errorf("without setgid, SSL_CERT_FILE did not count (the test proves nothing): %v\n%s", err, o.stderr)
	}
}

// TestSetgidClosedDescriptors: a caller that closes stdout and stderr must
// not get the spool's files opened in their place, where the process's
// output would land in them (or their content in its output); the Go
// runtime opens /dev/null there first (see package privilege), and this
// guards it. The queued message is exactly the message.
func TestSetgidClosedDescriptors(t *testing.T) {
	s := newPrivSetup(t)
	msg := filepath.Join(s.dir, "msg.txt")
	must(t, os.WriteFile(msg, []byte(privMessage), 0o644))
	o := s.runCmd(webUID, nil, "", "/bin/sh", "-c", `exec "$0" -odq -v -f web@example.com b@example.net <"$1" >&- 2>&-`, s.bin, msg)
	wantCode(t, o, 0, "")
	ids := s.queued()
	if len(ids) != 1 {
		t.Fatalf("%d messages queued, want 1", len(ids))
	}
	data, err := os.ReadFile(filepath.Join(s.spool, ids[0]+".msg"))
	must(t, err)
	if !bytes.HasPrefix(data, []byte("From: web@example.com\r\nTo: b@example.net\r\nSubject: from www-data\r\n")) || !bytes.HasSuffix(data, []byte("\r\n\r\nhello\r\n")) {
		t.Errorf("queued message is not the message:\n%q", data)
	}
	if _, err := os.ReadFile(filepath.Join(s.spool, ids[0]+".env")); err != nil {
		t.Error(err)
	}
}

// TestSetgidAllowFrom: with [rewrite] allow_from, www-data's -f outside
// the patterns (the null sender included) is replaced by its usual sender;
// one inside is kept; root may give any.
func TestSetgidAllowFrom(t *testing.T) {
	s := newPrivSetup(t)
	b, err := os.ReadFile(s.conf)
	must(t, err)
	must(t, os.WriteFile(s.conf, append(b, "\n[rewrite]\nallow_from = [\"*@example.com\"]\n"...), 0o640))
	for _, tt := range []struct {
		uid        int
		f, wantEnv string
	}{
		{webUID, "evil@other.org", "www-data@example.com"},
		{webUID, "shop@example.com", "shop@example.com"},
		{0, "evil@other.org", "evil@other.org"},
		// A user's null sender is a sender too; root's bounces keep theirs.
		{webUID, "<>", "www-data@example.com"},
		{0, "<>", ""},
	} {
		before := s.queued()
		o := s.runAs(tt.uid, nil, privMessage, "-odq", "-f", tt.f, "b@example.net")
		wantCode(t, o, 0, "")
		var id string
		for _, q := range s.queued() {
			if !slices.Contains(before, q) {
				id = q
			}
		}
		b, err := os.ReadFile(filepath.Join(s.spool, id+".env"))
		must(t, err)
		var env struct {
			From string `json:"from"`
		}
		must(t, json.Unmarshal(b, &env))
		if env.From != tt.wantEnv {
			t.Errorf("uid %d, -f %s: envelope sender %q, want %q", tt.uid, tt.f, env.From, tt.wantEnv)
		}
	}
}

// TestSetgidPasswordCommand: password_command, named without a path, runs
// in / with HOME=/ and the group's rights (it reads a root:group 0640
// file), never in the caller's directory or with the caller's HOME; and
// --check does not show its arguments. The shell needs -p to keep the
// group: dash and bash drop a raised group otherwise (see the README).
func TestSetgidPasswordCommand(t *testing.T) {
	s := newPrivSetup(t)
	pw := filepath.Join(s.dir, "password")
	must(t, os.WriteFile(pw, []byte(password+"\n"), 0o640))
	must(t, os.Chown(pw, 0, privGID))
	b, err := os.ReadFile(s.conf)
	must(t, err)
	conf := strings.Replace(string(b), fmt.Sprintf("password = %q\n", password),
		fmt.Sprintf("password_command = [\"sh\", \"-p\", \"-c\", \"test \\\"$PWD\\\" = / && test \\\"$HOME\\\" = / && cat %s\"]\n", pw), 1)
	must(t, os.WriteFile(s.conf, []byte(conf), 0o640))
	o := s.runAs(webUID, []string{"HOME=" + s.dir}, "", "--check")
	wantCode(t, o, 0, "")
	if !strings.Contains(o.stdout, "password from the command sh (arguments not shown)") || strings.Contains(o.stdout, pw) {
		t.Errorf("--check shows:\n%s", o.stdout)
	}
	if !strings.Contains(o.stdout, `logged in as "relayuser"`) {
		t.Errorf("--check did not log in:\n%s%s", o.stdout, o.stderr)
	}
}

// TestSetgidRewriteUsers: PHP's mail as www-data, with [rewrite.users]
// www-data = "web@example.com": the envelope sender and the local From
// become the configured address.
func TestSetgidRewriteUsers(t *testing.T) {
	s := newPrivSetup(t)
	b, err := os.ReadFile(s.conf)
	must(t, err)
	must(t, os.WriteFile(s.conf, append(b, "\n[rewrite.users]\nwww-data = \"web@example.com\"\n"...), 0o640))
	const php = "To: b@example.net\r\nSubject: order 42\r\nFrom: Shop <www-data@localhost>\r\n\r\nthanks\r\n"
	o := s.runAs(webUID, nil, php, "-t", "-i")
	wantCode(t, o, 0, "")
	msgs, err := s.srv.WaitMessages(1, 10*time.Second)
	must(t, err)
	if msgs[0].From != "web@example.com" {
		t.Errorf("envelope sender %q, want web@example.com", msgs[0].From)
	}
	if got := header(msgs[0].Data, "From"); got != `"Shop" <web@example.com>` {
		t.Errorf("From = %q", got)
	}
}
