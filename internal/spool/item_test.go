package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

// lock locks id or fails the test; the Item is unlocked at the end.
func lock(t *testing.T, s *Spool, id string) *Item {
	t.Helper()
	it, err := s.Lock(id)
	if err != nil {
		t.Fatalf("Lock(%q): %v", id, err)
	}
	t.Cleanup(it.Unlock)
	return it
}

func TestLockExcludes(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	it := lock(t, s, id)
	if it.Env.ID != id || len(it.Env.Recipients) != 1 {
		t.Errorf("Lock gave envelope %+v", it.Env)
	}
	// flock locks belong to an open file description: a second open in
	// the same process is refused like another process would be.
	_, err := s.Lock(id)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	wantError(t, "second Lock", err, sysexits.TempFail, "lock spool "+s.path(id, ".msg")+": locked by another process")
	// So does a second Spool on the same directory.
	s2, err := Open(Options{Dir: s.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Lock(id); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock from a second Spool = %v, want ErrLocked", err)
	}
	// Reading the data on a new open file keeps the lock.
	r, err := it.Open()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "hi\r\n" {
		t.Errorf("Open read %q", b)
	}
	r.Close()
	if _, err := s.Lock(id); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock after closing the reader = %v, want ErrLocked", err)
	}
	it.Unlock()
	it.Unlock()
	it2 := lock(t, s, id)
	if !reflect.DeepEqual(it2.Env, it.Env) {
		t.Errorf("relocked envelope %+v, want %+v", it2.Env, it.Env)
	}
	// An unlocked Item refuses to act.
	for what, err := range map[string]error{"Update": it.Update(), "Remove": it.Remove(), "Fail": it.Fail()} {
		wantError(t, what+" after Unlock", err, sysexits.Software, "not locked")
	}
	if _, err := it.Open(); sysexits.CodeOf(err) != sysexits.Software {
		t.Errorf("Open after Unlock = %v, want a software error", err)
	}
}

func TestLockNotFound(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	dataOnly, _ := s.newID()
	mustWrite(t, s.path(dataOnly, ".msg"), "a sender died before the envelope")
	for _, bad := range []string{"01JD2K7Q5W3N8X4Z", strings.ToLower(id), "../" + filepath.Base(s.Dir()) + "/" + id, dataOnly} {
		_, err := s.Lock(bad)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Lock(%q) = %v, want ErrNotFound", bad, err)
		}
		wantError(t, "Lock", err, sysexits.NoInput, fmt.Sprintf("queue id %q: not in the queue", bad))
	}
	// The failed attempt left no lock behind.
	f, err := os.Open(s.path(dataOnly, ".msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flock(f, lockNB); err != nil {
		t.Errorf("after Lock found no envelope, the data is still locked: %v", err)
	}
}

func TestLockRefusesTruncatedData(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "Subject: x\r\n\r\nthe whole body\r\n")
	if err := os.Truncate(s.path(id, ".msg"), 12); err != nil {
		t.Fatal(err)
	}
	_, err := s.Lock(id)
	wantError(t, "Lock", err, sysexits.DataErr, "lock spool "+s.path(id, ".msg")+": data is 12 bytes, its envelope says 30")
	// The failed attempt left no lock behind.
	f, err := os.Open(s.path(id, ".msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flock(f, lockNB); err != nil {
		t.Errorf("after Lock refused, the data is still locked: %v", err)
	}
}

func TestLockRefusesSymlinkedData(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	target := filepath.Join(t.TempDir(), "target")
	mustWrite(t, target, "precious")
	os.Remove(s.path(id, ".msg"))
	if err := os.Symlink(target, s.path(id, ".msg")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Lock(id)
	wantError(t, "Lock", err, sysexits.TempFail, "lock spool "+s.path(id, ".msg")+": is a symbolic link (not followed)")
	// The target was not locked either.
	f, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flock(f, lockNB); err != nil {
		t.Errorf("the link's target is locked: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	s, clock := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hi\r\n"))
	if err := w.Commit(testEnvelope("a@example.com", "b@example.com")); err != nil {
		t.Fatal(err)
	}
	it := lock(t, s, w.ID)
	clock.Set(t0().Add(time.Minute))
	it.Env.Recipients[0] = Recipient{Addr: "a@example.com", State: Sent, Code: 250, Reply: "2.0.0 Ok: queued as 4Yx", Updated: clock.Now()}
	it.Env.Recipients[1].Code, it.Env.Recipients[1].Reply = 451, "4.7.1 try again later <b@example.com>"
	it.Env.Attempts++
	it.Env.NextAttempt = clock.Now().Add(5 * time.Minute)
	it.Env.LastError = "smtp.example.com:587: connection refused"
	if err := it.Update(); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := s.Find(w.ID)
	if err != nil || !reflect.DeepEqual(got, it.Env) {
		t.Errorf("Find after Update = %+v, %v; want %+v", got, err, it.Env)
	}
	if p := got.Pending(); !reflect.DeepEqual(p, []int{1}) {
		t.Errorf("Pending() = %v, want [1]", p)
	}
	if fi, err := os.Lstat(s.path(w.ID, ".env")); err != nil || fi.Mode() != 0o600 {
		t.Errorf("envelope after Update: %v, %v; want mode 0600", fi.Mode(), err)
	}
	wantEntries(t, s.Dir(), "failed", w.ID+".env", w.ID+".msg")
}

func TestUpdateFaults(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *Envelope)
		op     string
		kind   string
		err    error
		code   sysexits.Code
		frag   string
	}{
		{"invalid reply", func(e *Envelope) { e.Recipients[0].Reply = "250 ok\r\n250 more" }, "", "", nil,
			sysexits.DataErr, "update spool message ID: invalid envelope: recipients[0].reply: contains a line break"},
		{"id changed", func(e *Envelope) { e.ID = "0000000000000000" }, "", "", nil,
			sysexits.Software, "the envelope's id changed"},
		{"create", nil, opCreate, "tmp", syscall.ENOSPC, sysexits.TempFail, "create spool DIR/tmp-ID-"},
		{"write", nil, opWrite, "tmp", syscall.ENOSPC, sysexits.TempFail, "write spool DIR/tmp-ID-"},
		{"sync", nil, opSync, "tmp", syscall.EIO, sysexits.TempFail, "sync spool DIR/tmp-ID-"},
		{"rename", nil, opUpdate, ".env", syscall.EROFS, sysexits.CantCreat, "update spool DIR/ID.env: read-only file system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newSpool(t)
			id := commit(t, s, "hi\r\n")
			before, _ := os.ReadFile(s.path(id, ".env"))
			it := lock(t, s, id)
			it.Env.Recipients[0].State = Sent
			if tt.change != nil {
				tt.change(it.Env)
			}
			if tt.op != "" {
				s.fault = faultAt(tt.op, tt.kind, 1, tt.err)
			}
			frag := strings.NewReplacer("DIR", s.Dir(), "ID", id).Replace(tt.frag)
			wantError(t, "Update", it.Update(), tt.code, frag)
			if after, _ := os.ReadFile(s.path(id, ".env")); string(after) != string(before) {
				t.Errorf("envelope after a failed Update:\n%s\nwant\n%s", after, before)
			}
			wantEntries(t, s.Dir(), "failed", id+".env", id+".msg")
		})
	}
}

func TestRemove(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	keep := commit(t, s, "other\r\n")
	it := lock(t, s, id)
	if err := it.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantEntries(t, s.Dir(), "failed", keep+".env", keep+".msg")
	wantError(t, "second Remove", it.Remove(), sysexits.Software, "no longer in the queue")
	wantError(t, "Update after Remove", it.Update(), sysexits.Software, "no longer in the queue")
	it.Unlock()
	if _, err := s.Lock(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lock after Remove = %v, want ErrNotFound", err)
	}
}

// TestRemoveFault: Remove stops after removing the envelope; the message
// has left the queue and Cleanup removes the data.
func TestRemoveFault(t *testing.T) {
	s, clock := newSpool(t)
	id := commit(t, s, "hi\r\n")
	it := lock(t, s, id)
	s.fault = faultAt(opRemove, ".msg", 1, syscall.EIO)
	wantError(t, "Remove", it.Remove(), sysexits.TempFail, "remove spool "+s.Dir()+"/"+id+".msg: input/output error")
	s.fault = nil
	wantEntries(t, s.Dir(), "failed", id+".msg")
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
	// Cleanup leaves the data alone while it is locked.
	if n, err := s.Cleanup(0); n != 0 || err != nil {
		t.Errorf("Cleanup while locked = %d, %v; want 0, nil", n, err)
	}
	it.Unlock()
	clock.Set(time.Now().Add(time.Second)) // the files' times are real
	if n, err := s.Cleanup(0); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 1, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
}

func TestFail(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "undeliverable\r\n")
	env, _ := os.ReadFile(s.path(id, ".env"))
	it := lock(t, s, id)
	if err := it.Fail(); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	wantEntries(t, s.Dir(), "failed")
	wantEntries(t, s.failed, id+".env", id+".msg")
	if b, _ := os.ReadFile(s.failed + "/" + id + ".msg"); string(b) != "undeliverable\r\n" {
		t.Errorf("failed data holds %q", b)
	}
	if b, _ := os.ReadFile(s.failed + "/" + id + ".env"); string(b) != string(env) {
		t.Errorf("failed envelope holds %q, want %q", b, env)
	}
	it.Unlock()
	if _, err := s.Find(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find after Fail = %v, want ErrNotFound", err)
	}
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
}

// TestFailFault: Fail stops after moving the envelope; Cleanup moves the
// data after it, however young.
func TestFailFault(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "undeliverable\r\n")
	it := lock(t, s, id)
	s.fault = faultAt(opMove, ".msg", 1, syscall.EIO)
	wantError(t, "Fail", it.Fail(), sysexits.TempFail, "move spool "+s.failed+"/"+id+".msg: input/output error")
	s.fault = nil
	wantEntries(t, s.Dir(), "failed", id+".msg")
	wantEntries(t, s.failed, id+".env")
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
	it.Unlock()
	if n, err := s.Cleanup(time.Hour); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 1, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
	wantEntries(t, s.failed, id+".env", id+".msg")
}

// TestFailRefusesSymlinkedFailedDir: with failed/ replaced by a symbolic
// link after Open, Fail moves nothing and the message stays queued.
func TestFailRefusesSymlinkedFailedDir(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	elsewhere := t.TempDir()
	if err := os.Remove(s.failed); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, s.failed); err != nil {
		t.Fatal(err)
	}
	it := lock(t, s, id)
	wantError(t, "Fail", it.Fail(), sysexits.TempFail, "move spool "+s.failed+": is a symbolic link (not followed)")
	wantEntries(t, elsewhere)
	wantEntries(t, s.Dir(), "failed", id+".env", id+".msg")
	if err := it.Update(); err != nil {
		t.Errorf("Update after the refused Fail: %v", err)
	}
	// Cleanup does not look into the link either.
	it.Unlock()
	orphan, _ := s.newID()
	mustWrite(t, s.path(orphan, ".msg"), "x")
	mustWrite(t, elsewhere+"/"+orphan+".env", "x")
	_, err := s.Cleanup(0)
	wantError(t, "Cleanup", err, sysexits.TempFail, "is a symbolic link (not followed)")
	wantEntries(t, elsewhere, orphan+".env")
	wantEntries(t, s.Dir(), "failed", id+".env", id+".msg", orphan+".msg")
}

// The helper process, run by the tests below as a copy of the test binary
// that holds a spool in some state until it is killed.
const helperEnv = "RELAYMAIL_SPOOL_HELPER"

// TestHelperProcess is not a test: it is the helper process. Its
// instructions come in helperEnv as "mode dir id".
func TestHelperProcess(t *testing.T) {
	args := strings.Fields(os.Getenv(helperEnv))
	if len(args) == 0 {
		t.Skip("helper process for the crash tests; runs only when they start it")
	}
	mode, dir, id := args[0], args[1], args[2]
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	// stall reports the state reached and waits to be killed; when the
	// test dies instead, stdin closes and the helper exits.
	stall := func() {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	at := func(op, kind string) func(string, string) error {
		return func(o, path string) error {
			if o == op && isKind(path, kind) {
				stall()
			}
			return nil
		}
	}
	switch mode {
	case "lock":
		if _, err := s.Lock(id); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		stall()
	case "write": // half a message written
		w, err := s.Create()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		w.Write([]byte(strings.Repeat("x", 3*bufSize)))
		stall()
	case "commit": // the data linked, the envelope not yet
		w, err := s.Create()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		w.Write([]byte("half committed\r\n"))
		s.fault = at(opCreate, ".env")
		w.Commit(testEnvelope())
	case "remove", "fail": // the envelope gone, the data not yet
		it, err := s.Lock(id)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if mode == "remove" {
			s.fault = at(opRemove, ".msg")
			it.Remove()
		} else {
			s.fault = at(opMove, ".msg")
			it.Fail()
		}
	}
	fmt.Println("error: the helper did not stall")
	os.Exit(1)
}

// crash starts the helper in mode, waits until it reports its state, and
// kills it with SIGKILL, which gives it no chance to clean up, when the
// returned function is called.
func crash(t *testing.T, mode string, s *Spool, id string) (kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode+" "+s.Dir()+" "+id)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		cmd.Process.Kill() // SIGKILL
		err := cmd.Wait()
		stdin.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("helper %s ended with %v, want killed by SIGKILL", mode, err)
		}
	}
	t.Cleanup(kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper %s said %q, %v", mode, line, err)
	}
	return kill
}

func TestLockReleasedWhenHolderKilled(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	kill := crash(t, "lock", s, id)
	if _, err := s.Lock(id); !errors.Is(err, ErrLocked) {
		t.Fatalf("Lock while another process holds it = %v, want ErrLocked", err)
	}
	kill()
	it := lock(t, s, id)
	if len(it.Env.Pending()) != 1 {
		t.Errorf("envelope after the holder died: %+v", it.Env)
	}
}

// TestCrashWhileWriting: a sender killed mid-message leaves a temporary
// file that nothing lists and that Cleanup removes once the sender is
// dead, not before.
func TestCrashWhileWriting(t *testing.T) {
	s, clock := newSpool(t)
	clock.Set(time.Now().Add(time.Hour)) // the files' times are real
	kill := crash(t, "write", s, "-")
	names := entries(t, s.Dir())
	if len(names) != 2 || !isTemp(names[1]) {
		t.Fatalf("while the sender writes, Dir holds %q", names)
	}
	if n, err := s.Cleanup(0); n != 0 || err != nil {
		t.Errorf("Cleanup while the sender lives = %d, %v; want 0, nil", n, err)
	}
	kill()
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
	if n, err := s.Cleanup(0); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 1, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
}

// TestCrashDuringCommit: a sender killed between placing the data and the
// envelope leaves data that nothing lists, that no one can lock for
// delivery, and that Cleanup removes.
func TestCrashDuringCommit(t *testing.T) {
	s, clock := newSpool(t)
	clock.Set(time.Now().Add(time.Hour)) // the files' times are real
	kill := crash(t, "commit", s, "-")
	names := entries(t, s.Dir())
	// <ID>.msg, failed, and the temporary names of the data and of the
	// envelope.
	if len(names) != 4 || !strings.HasSuffix(names[0], ".msg") || !isTemp(names[2]) || !isTemp(names[3]) {
		t.Fatalf("in the middle of Commit, Dir holds %q", names)
	}
	id := strings.TrimSuffix(names[0], ".msg")
	if _, err := s.Lock(id); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock during Commit = %v, want ErrLocked", err)
	}
	if n, err := s.Cleanup(0); n != 0 || err != nil {
		t.Errorf("Cleanup during Commit = %d, %v; want 0, nil", n, err)
	}
	kill()
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
	if _, err := s.Lock(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lock after the crash = %v, want ErrNotFound", err)
	}
	if n, err := s.Cleanup(0); n != 3 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 3, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
}

// TestCrashDuringRemove and TestCrashDuringFail kill a runner between the
// envelope and the data: the message has left the queue, and Cleanup
// removes the data, or moves it next to its envelope in failed/.
func TestCrashDuringRemove(t *testing.T) {
	s, clock := newSpool(t)
	clock.Set(time.Now().Add(time.Hour)) // the files' times are real
	id := commit(t, s, "hi\r\n")
	kill := crash(t, "remove", s, id)
	wantEntries(t, s.Dir(), "failed", id+".msg")
	if n, err := s.Cleanup(0); n != 0 || err != nil {
		t.Errorf("Cleanup while the runner lives = %d, %v; want 0, nil", n, err)
	}
	kill()
	if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want nothing", envs, errs)
	}
	if n, err := s.Cleanup(0); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 1, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
	wantEntries(t, s.failed)
}

func TestCrashDuringFail(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	kill := crash(t, "fail", s, id)
	wantEntries(t, s.Dir(), "failed", id+".msg")
	wantEntries(t, s.failed, id+".env")
	kill()
	if n, err := s.Cleanup(time.Hour); n != 1 || err != nil {
		t.Errorf("Cleanup = %d, %v; want 1, nil", n, err)
	}
	wantEntries(t, s.Dir(), "failed")
	wantEntries(t, s.failed, id+".env", id+".msg")
}

// TestCommitLocked: the message is committed and stays locked by the
// Writer's own file, so no one else can take it before the sender lets go.
func TestCommitLocked(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("locked\r\n"))
	it, err := w.CommitLocked(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(w.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock while the sender holds it = %v, want ErrLocked", err)
	}
	if envs, errs := s.List(); len(envs) != 1 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want the message", envs, errs)
	}
	f, err := it.Open()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "locked\r\n" {
		t.Errorf("Open reads %q", b)
	}
	it.Unlock()
	other, err := s.Lock(w.ID)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	other.Unlock()
}
