package spool

// Tests that break a real disk: a full tmpfs, a read-only one. Mounting
// needs root, which CI has; elsewhere they skip, or use chmod where that
// is enough.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"relaymail/internal/sysexits"
)

// mountTmpfs mounts a tmpfs with options on a new directory and unmounts
// it when the test ends.
func mountTmpfs(t *testing.T, options string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "small")
	mustMkdir(t, dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, options); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mount -t tmpfs -o %s: %v (root without CAP_SYS_ADMIN)", options, err)
		}
		t.Fatalf("mount -t tmpfs -o %s %s: %v", options, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// remountReadOnly makes the tmpfs at dir read-only.
func remountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount -o remount,ro %s: %v", dir, err)
	}
}

// TestDiskFull writes a message larger than the file system: the write
// fails with 75 and a plain message, the partial file is gone at once, and
// the space is free again for the next message.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	s, err := Open(Options{Dir: dir + "/spool"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	var werr error
	for i := 0; i < 64 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	if werr == nil {
		werr = w.Commit(testEnvelope())
	}
	wantError(t, "Write", werr, sysexits.TempFail, "write spool "+s.Dir()+"/tmp-"+w.ID+"-", ": no space left on device")
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Errorf("error %v does not wrap ENOSPC", werr)
	}
	if err := w.Commit(testEnvelope()); err != werr {
		t.Errorf("Commit after the failed Write = %v, want %v", err, werr)
	}
	wantEntries(t, s.Dir(), "failed")
	commit(t, s, string(bytes.Repeat(chunk, 8))) // 32 KiB fit again
}

// TestDiskFullAtEnvelope fills the disk with the data exactly, so that
// the envelope is what does not fit: Commit fails with 75 and removes the
// data.
func TestDiskFullAtEnvelope(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	s, err := Open(Options{Dir: dir + "/spool"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var steps []string
	s.fault = func(op, path string) error {
		mu.Lock()
		steps = append(steps, op+" "+filepath.Base(path))
		mu.Unlock()
		return nil
	}
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	err = w.Commit(testEnvelope())
	wantError(t, "Commit", err, sysexits.TempFail, "spool "+s.Dir()+"/tmp-"+w.ID+"-", ": no space left on device")
	if n := strings.Count(strings.Join(steps, "\n"), "write spool tmp-"+w.ID); n != 2 {
		t.Errorf("Commit failed before writing the envelope; steps:\n%s", strings.Join(steps, "\n"))
	}
	wantEntries(t, s.Dir(), "failed")
	s.fault = nil
	commit(t, s, "fits now\r\n")
}

// TestReadOnlySpool: a spool we cannot write refuses new messages with 73,
// saying why, and leaves nothing; what is queued can still be listed. As
// root, permission bits do not stop us, so a read-only tmpfs stands in for
// chmod 0500.
func TestReadOnlySpool(t *testing.T) {
	root := os.Geteuid() == 0
	cause := "permission denied"
	if root {
		cause = "read-only file system"
	}
	// readOnly makes dir read-only, or mounts a read-only file system on
	// it, after prepare has run on it.
	readOnly := func(t *testing.T, prepare func(dir string)) string {
		if !root {
			dir := t.TempDir()
			prepare(dir)
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			return dir
		}
		dir := mountTmpfs(t, "size=1m")
		prepare(dir)
		remountReadOnly(t, dir)
		return dir
	}

	t.Run("create", func(t *testing.T) {
		var queued string
		dir := readOnly(t, func(dir string) {
			s, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			queued = commit(t, s, "queued before\r\n")
		})
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("Open of a read-only spool: %v", err)
		}
		w, err := s.Create()
		if w != nil {
			t.Errorf("Create returned a Writer with error %v", err)
		}
		wantError(t, "Create", err, sysexits.CantCreat, "create spool "+dir+"/tmp-", ": "+cause)
		wantEntries(t, dir, "failed", queued+".env", queued+".msg")
		envs, errs := s.List()
		if len(envs) != 1 || envs[0].ID != queued || len(errs) != 0 {
			t.Errorf("List = %v, %v; want %s", envs, errs, queued)
		}
		it := lock(t, s, queued)
		it.Env.Attempts++
		wantError(t, "Update", it.Update(), sysexits.CantCreat, "create spool "+dir+"/tmp-", ": "+cause)
	})

	t.Run("open without failed", func(t *testing.T) {
		dir := readOnly(t, func(string) {})
		_, err := Open(Options{Dir: dir})
		wantError(t, "Open", err, sysexits.CantCreat, "create spool "+dir+"/failed: "+cause)
		wantEntries(t, dir)
	})

	t.Run("open under read-only parent", func(t *testing.T) {
		dir := readOnly(t, func(string) {})
		_, err := Open(Options{Dir: dir + "/var/spool"})
		wantError(t, "Open", err, sysexits.CantCreat, "create spool "+dir+"/var/spool: "+cause)
		wantEntries(t, dir)
	})
}
