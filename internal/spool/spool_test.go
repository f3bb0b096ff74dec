package spool

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

func TestOpenCreatesDirectories(t *testing.T) {
	// An umask that takes the owner's bits shows the modes are set, not
	// left to the umask.
	dir := filepath.Join(t.TempDir(), "var", "spool", "relaymail")
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	s, err := Open(Options{Dir: dir + "/"})
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir), dir, dir + "/failed"} {
		fi, err := os.Lstat(d)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a directory with mode 0700", d, fi.Mode())
		}
	}
	id := commit(t, s, "Subject: x\r\n\r\nhi\r\n")
	for _, name := range []string{id + ".msg", id + ".env"} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode())
		}
	}
	// Opening again finds everything in place.
	if _, err := Open(Options{Dir: dir}); err != nil {
		t.Errorf("second Open: %v", err)
	}
}

// TestSharedModes: a spool directory that gives its group rwx (the setgid
// install's root:relaymail 0770) makes a shared spool: failed/ 0770, the
// files 0660 whatever the umask, and the envelope an update writes too.
func TestSharedModes(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id := commit(t, s, "Subject: x\r\n\r\nhi\r\n")
	it, err := s.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	it.Env.Attempts++
	if err := it.Update(); err != nil {
		t.Fatal(err)
	}
	it.Unlock()
	for name, want := range map[string]os.FileMode{"failed": os.ModeDir | 0o770, id + ".msg": 0o660, id + ".env": 0o660} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // dir does not exist yet
		code  sysexits.Code
		frag  []string
	}{
		{"no directory given", nil, sysexits.Software, []string{"open spool: no directory given"}},
		{
			"file in the way",
			func(t *testing.T, dir string) { mustWrite(t, dir, "") },
			sysexits.CantCreat, []string{"create spool ", "/spool: not a directory"},
		},
		{
			"failed is a symlink",
			func(t *testing.T, dir string) {
				mustMkdir(t, dir)
				if err := os.Symlink(t.TempDir(), dir+"/failed"); err != nil {
					t.Fatal(err)
				}
			},
			sysexits.CantCreat, []string{"create spool ", "/failed: is a symbolic link (not followed)"},
		},
		{
			"failed is a file",
			func(t *testing.T, dir string) { mustMkdir(t, dir); mustWrite(t, dir+"/failed", "") },
			sysexits.CantCreat, []string{"/failed: not a directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts Options
			if tt.setup != nil {
				opts.Dir = filepath.Join(t.TempDir(), "spool")
				tt.setup(t, opts.Dir)
			}
			s, err := Open(opts)
			if s != nil {
				t.Errorf("Open returned a spool with error %v", err)
			}
			wantError(t, "Open", err, tt.code, tt.frag...)
		})
	}
}

func TestOpenSymlinkedDir(t *testing.T) {
	// An administrator may move the spool and leave a symbolic link.
	real := filepath.Join(t.TempDir(), "real")
	mustMkdir(t, real)
	link := filepath.Join(t.TempDir(), "spool")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: link})
	if err != nil {
		t.Fatalf("Open(%q): %v", link, err)
	}
	id := commit(t, s, "x\r\n")
	wantEntries(t, real, "failed", id+".env", id+".msg")
}

func TestCommit(t *testing.T) {
	s, clock := newSpool(t)
	clock.Set(t0().Add(1500 * time.Millisecond))
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if !validID(w.ID) {
		t.Fatalf("Create gave id %q", w.ID)
	}
	// Larger than the buffer, written in odd pieces.
	var body bytes.Buffer
	for i := 0; body.Len() < 3*bufSize+17; i++ {
		fmt.Fprintf(&body, "line %d of the body\r\n", i)
	}
	for p := body.Bytes(); len(p) > 0; {
		n := min(len(p), 7777)
		if got, err := w.Write(p[:n]); got != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
		}
		p = p[n:]
	}
	// Only the temporary file exists before Commit.
	if names := entries(t, s.Dir()); len(names) != 2 || !isTemp(names[1]) {
		t.Errorf("before Commit, Dir holds %q, want failed and one temporary file", names)
	}
	env := testEnvelope("root@example.com", "ops@example.net")
	if err := w.Commit(env); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if env.ID != w.ID || env.Version != Version || env.Size != int64(body.Len()) || !env.Created.Equal(clock.Now()) {
		t.Errorf("after Commit: ID %q Version %d Size %d Created %v, want %q %d %d %v",
			env.ID, env.Version, env.Size, env.Created, w.ID, Version, body.Len(), clock.Now())
	}
	wantEntries(t, s.Dir(), "failed", w.ID+".env", w.ID+".msg")
	data, err := os.ReadFile(s.path(w.ID, ".msg"))
	if err != nil || !bytes.Equal(data, body.Bytes()) {
		t.Errorf("data file: %d bytes, err %v; want the %d bytes written", len(data), err, body.Len())
	}
	got, err := s.Find(w.ID)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Errorf("Find = %+v, want %+v", got, env)
	}
	// A Writer is done after Commit.
	if err := w.Commit(env); sysexits.CodeOf(err) != sysexits.Software {
		t.Errorf("second Commit = %v, want a software error", err)
	}
	w.Abort()
	wantEntries(t, s.Dir(), "failed", w.ID+".env", w.ID+".msg")
}

func TestCommitKeepsCreated(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope()
	env.Created = time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := w.Commit(env); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Find(w.ID); got == nil || !got.Created.Equal(env.Created) || got.Size != 0 {
		t.Errorf("Find = %+v, want Created %v and Size 0", got, env.Created)
	}
}

func TestIDs(t *testing.T) {
	s, clock := newSpool(t)
	var ids []string
	// Many ids in one millisecond, then later ones, then the clock going
	// back: the ids keep increasing.
	for _, at := range []time.Duration{0, 0, 0, time.Millisecond, time.Hour, time.Minute, 0} {
		clock.Set(t0().Add(at))
		for range 300 {
			id, err := s.newID()
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	for i, id := range ids {
		if !validID(id) {
			t.Fatalf("id %q is not valid", id)
		}
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("id %d %q does not sort after %q", i, id, ids[i-1])
		}
	}
	if ms, _ := decodeID(ids[0]); ms != uint64(t0().UnixMilli()) {
		t.Errorf("first id %q holds time %d, want %d", ids[0], ms, t0().UnixMilli())
	}
	if ms, _ := decodeID(ids[len(ids)-1]); ms != uint64(t0().Add(time.Hour).UnixMilli()) {
		t.Errorf("last id %q holds time %d, want the latest time seen, %d", ids[len(ids)-1], ms, t0().Add(time.Hour).UnixMilli())
	}

	// When the random part wraps, the time part moves on.
	s.lastMS, s.lastRand = t0().UnixMilli(), 1<<32-1
	clock.Set(t0())
	id, err := s.newID()
	if err != nil {
		t.Fatal(err)
	}
	if ms, r := decodeID(id); ms != uint64(t0().UnixMilli())+1 || r != 0 {
		t.Errorf("after a wrap: id %q = (%d, %d), want (%d, 0)", id, ms, r, t0().UnixMilli()+1)
	}

	// Ids from different milliseconds sort by time whatever their random
	// parts.
	for range 1000 {
		a, b := rand.Uint64N(1<<48-1), rand.Uint32()
		x, y := encodeID(a, b), encodeID(a+1, rand.Uint32())
		if x >= y {
			t.Fatalf("encodeID(%d, %d) = %q does not sort before %q", a, b, x, y)
		}
		if ms, r := decodeID(x); ms != a || r != b {
			t.Fatalf("decodeID(encodeID(%d, %d)) = %d, %d", a, b, ms, r)
		}
	}
	if got := encodeID(1<<48-1, 1<<32-1); got != "ZZZZZZZZZZZZZZZZ" {
		t.Errorf("largest id = %q", got)
	}
}

// decodeID is encodeID's inverse.
func decodeID(id string) (ms uint64, r uint32) {
	var hi, lo uint64
	for i := 0; i < len(id); i++ {
		d := uint64(strings.IndexByte(crockford, id[i]))
		hi = hi<<5 | lo>>59
		lo = lo<<5 | d
	}
	return hi<<32 | lo>>32, uint32(lo)
}

func TestValidID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"01JD2K7Q5W3N8X4Z", true},
		{"0000000000000000", true},
		{"01jd2k7q5w3n8x4z", false}, // ids are upper case
		{"01JD2K7Q5W3N8X4", false},
		{"01JD2K7Q5W3N8X4ZZ", false},
		{"01JD2K7Q5W3N8X4I", false},
		{"01JD2K7Q5W3N8X4U", false},
		{"../../etc/passwd", false},
		{"01JD2K7Q/W3N8X4Z", false},
		{"", false},
	} {
		if got := validID(tt.id); got != tt.want {
			t.Errorf("validID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestAbort(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("x"), 3*bufSize))
	w.Abort()
	wantEntries(t, s.Dir(), "failed")
	w.Abort()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Errorf("Write after Abort succeeded")
	}
	if err := w.Commit(testEnvelope()); err == nil {
		t.Errorf("Commit after Abort succeeded")
	}
	wantEntries(t, s.Dir(), "failed")
}

func TestCommitInvalidEnvelope(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hi\r\n"))
	err = w.Commit(testEnvelope("root@example.com\r\nRCPT TO:<evil@example.net>"))
	wantError(t, "Commit", err, sysexits.DataErr, "commit spool message "+w.ID, "recipients[0].addr", "line break")
	wantEntries(t, s.Dir(), "failed")
}

// TestCommitFaults fails each step of Create's and Commit's work in turn:
// Commit reports the cause with the exit code it calls for, and nothing of
// the message is left.
func TestCommitFaults(t *testing.T) {
	tests := []struct {
		name string
		op   string
		kind string // of file, for faultAt
		n    int
		err  error
		code sysexits.Code
		frag string
	}{
		{"write data", opWrite, "tmp", 1, syscall.ENOSPC, sysexits.TempFail, "write spool DIR/tmp-ID-"},
		{"create envelope", opCreate, "tmp", 1, syscall.EDQUOT, sysexits.TempFail, "create spool DIR/tmp-ID-"},
		{"write envelope", opWrite, "tmp", 2, syscall.ENOSPC, sysexits.TempFail, "write spool DIR/tmp-ID-"},
		// The two fsyncs run at once: the first or the second to start
		// may belong to either file.
		{"first file sync", opSync, "tmp", 1, syscall.EIO, sysexits.TempFail, "sync spool DIR/tmp-ID-"},
		{"second file sync", opSync, "tmp", 2, syscall.EIO, sysexits.TempFail, "sync spool DIR/tmp-ID-"},
		{"link data", opCreate, ".msg", 1, syscall.EROFS, sysexits.CantCreat, "create spool DIR/ID.msg: read-only file system"},
		{"link envelope", opCreate, ".env", 1, syscall.EACCES, sysexits.CantCreat, "create spool DIR/ID.env: permission denied"},
		{"remove data's temporary name", opRemove, "tmp", 1, syscall.EIO, sysexits.TempFail, "remove spool DIR/tmp-ID-"},
		{"remove envelope's temporary name", opRemove, "tmp", 2, syscall.EIO, sysexits.TempFail, "remove spool DIR/tmp-ID-"},
		{"sync dir", opSync, "dir", 1, syscall.EIO, sysexits.TempFail, "sync spool DIR: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newSpool(t)
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			// The hook is set after Create, so "create" counts Commit's
			// envelope file; writes count the data's flush, then the
			// envelope's.
			s.fault = faultAt(tt.op, tt.kind, tt.n, tt.err)
			if _, err := w.Write([]byte("Subject: test\r\n\r\nbody\r\n")); err != nil {
				t.Fatal(err)
			}
			err = w.Commit(testEnvelope())
			frag := strings.NewReplacer("DIR", s.Dir(), "ID", w.ID).Replace(tt.frag)
			wantError(t, "Commit", err, tt.code, frag)
			if !errors.Is(err, tt.err) {
				t.Errorf("Commit error %v does not wrap %v", err, tt.err)
			}
			wantEntries(t, s.Dir(), "failed")
			if envs, errs := s.List(); len(envs) != 0 || len(errs) != 0 {
				t.Errorf("List = %v, %v; want nothing", envs, errs)
			}
			// The Writer is finished: the same error again, and nothing
			// for Abort to do.
			if err2 := w.Commit(testEnvelope()); err2 != err {
				t.Errorf("second Commit = %v, want %v", err2, err)
			}
		})
	}
}

// TestCommitKeepsDataWithEnvelope: when Commit fails after placing the
// envelope and cannot remove it, the data stays too: the message is queued
// (perhaps sent twice), never an envelope without data.
func TestCommitKeepsDataWithEnvelope(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	sync2 := faultAt(opSync, "dir", 1, syscall.EIO)
	s.fault = func(op, path string) error {
		if op == opRemove && strings.HasSuffix(path, ".env") {
			return syscall.EIO
		}
		return sync2(op, path)
	}
	w.Write([]byte("hi\r\n"))
	wantError(t, "Commit", w.Commit(testEnvelope()), sysexits.TempFail, "input/output error")
	s.fault = nil
	wantEntries(t, s.Dir(), "failed", w.ID+".env", w.ID+".msg")
	if envs, errs := s.List(); len(envs) != 1 || len(errs) != 0 {
		t.Errorf("List = %v, %v; want the message", envs, errs)
	}
}

func TestCreateFaults(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code sysexits.Code
		frag string
	}{
		{syscall.EROFS, sysexits.CantCreat, "read-only file system"},
		{syscall.EACCES, sysexits.CantCreat, "permission denied"},
		{syscall.ENOSPC, sysexits.TempFail, "no space left on device"},
		{syscall.EDQUOT, sysexits.TempFail, "disk quota exceeded"},
	} {
		t.Run(tt.frag, func(t *testing.T) {
			s, _ := newSpool(t)
			s.fault = faultAt(opCreate, "", 1, tt.err)
			w, err := s.Create()
			if w != nil {
				t.Errorf("Create returned a Writer with error %v", err)
			}
			wantError(t, "Create", err, tt.code, "create spool "+s.Dir()+"/tmp-", tt.frag)
			wantEntries(t, s.Dir(), "failed")
		})
	}
}

// TestWriteFailure: a failed write removes the file at once, freeing the
// space, before the caller calls Commit or Abort.
func TestWriteFailure(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	s.fault = faultAt(opWrite, "", 2, syscall.ENOSPC)
	big := bytes.Repeat([]byte("0123456789abcdef"), bufSize/16)
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = w.Write(big)
	}
	wantError(t, "Write", werr, sysexits.TempFail, "write spool "+s.Dir()+"/tmp-"+w.ID+"-", ": no space left on device")
	wantEntries(t, s.Dir(), "failed")
	if _, err := w.Write([]byte("x")); err != werr {
		t.Errorf("Write after failure = %v, want %v", err, werr)
	}
	if err := w.Commit(testEnvelope()); err != werr {
		t.Errorf("Commit after failure = %v, want %v", err, werr)
	}
	w.Abort()
}

// TestCommitRefusesSymlinks plants a symbolic link where the data or the
// envelope is about to go: Commit fails rather than replace it or write
// through it, and leaves nothing of the message.
func TestCommitRefusesSymlinks(t *testing.T) {
	for _, ext := range []string{".msg", ".env"} {
		t.Run(ext, func(t *testing.T) {
			s, _ := newSpool(t)
			target := filepath.Join(t.TempDir(), "target")
			mustWrite(t, target, "precious")
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if err := os.Symlink(target, s.path(w.ID, ext)); err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("evil\r\n"))
			wantError(t, "Commit", w.Commit(testEnvelope()), sysexits.TempFail,
				"create spool "+s.path(w.ID, ext)+": file exists")
			wantEntries(t, s.Dir(), "failed", w.ID+ext)
			if b, _ := os.ReadFile(target); string(b) != "precious" {
				t.Errorf("the link's target now holds %q", b)
			}
			if l, err := os.Readlink(s.path(w.ID, ext)); err != nil || l != target {
				t.Errorf("the planted link now reads %q, %v", l, err)
			}
		})
	}
}

// TestCreateSkipsTakenIDs: an id whose files exist (another process drew
// the same one) is not used.
func TestCreateSkipsTakenIDs(t *testing.T) {
	s, _ := newSpool(t)
	// Draw the next id on a copy of the generator's state, and take it.
	s2, _ := newSpool(t)
	next, err := s2.newID()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.path(next, ".msg"), "someone else's")
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if w.ID == next {
		t.Fatalf("Create used the taken id %q", next)
	}
	if err := w.Commit(testEnvelope()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.path(next, ".msg")); string(b) != "someone else's" {
		t.Errorf("the other message's data now holds %q", b)
	}
}

func TestList(t *testing.T) {
	s, clock := newSpool(t)
	var want []string
	for i := range 5 {
		want = append(want, commit(t, s, fmt.Sprintf("message %d\r\n", i)))
	}
	// A second process whose clock is behind: its id sorts first.
	clock2 := &testClock{t: t0().Add(-time.Hour)}
	s2, err := Open(Options{Dir: s.Dir(), Now: clock2.Now, Rand: rand.NewChaCha8([32]byte{9})})
	if err != nil {
		t.Fatal(err)
	}
	want = append([]string{commit(t, s2, "early\r\n")}, want...)
	clock.Set(t0().Add(time.Second))

	// What List must skip, and report.
	dir := s.Dir()
	id := func() string {
		id, err := s.newID()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	corrupt, v2, other, noData, link, fifo := id(), id(), id(), id(), id(), id()
	mustWrite(t, dir+"/"+corrupt+".env", `{"version":1,"id":`)
	mustWrite(t, dir+"/"+corrupt+".msg", "x")
	mustWrite(t, dir+"/"+v2+".env", `{"version":2,"id":"`+v2+`","new_field":true}`)
	mustWrite(t, dir+"/"+v2+".msg", "x")
	envOther, _ := os.ReadFile(s.path(want[1], ".env"))
	mustWrite(t, dir+"/"+other+".env", string(envOther)) // holds want[1]'s id
	mustWrite(t, dir+"/"+other+".msg", "x")
	mustWrite(t, dir+"/"+noData+".env", strings.Replace(string(envOther), want[1], noData, 1))
	outside := filepath.Join(t.TempDir(), "outside.env")
	mustWrite(t, outside, strings.Replace(string(envOther), want[1], link, 1))
	if err := os.Symlink(outside, dir+"/"+link+".env"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, dir+"/"+link+".msg", "x")
	if err := syscall.Mkfifo(dir+"/"+fifo+".env", 0o600); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, dir+"/"+fifo+".msg", "x")
	// What List ignores without a word.
	mustWrite(t, dir+"/tmp-"+id()+"-ABCDEFGH", "half a message")
	mustWrite(t, dir+"/"+id()+".msg", "data without envelope")
	mustWrite(t, dir+"/README", "not ours")
	mustWrite(t, dir+"/"+strings.ToLower(id())+".env", "not an id")
	mustMkdir(t, dir+"/smarthost.example.com")
	failedID := id()
	mustWrite(t, dir+"/failed/"+failedID+".env", strings.Replace(string(envOther), want[1], failedID, 1))
	mustWrite(t, dir+"/failed/"+failedID+".msg", "x")

	envs, errs := s.List()
	var got []string
	for _, e := range envs {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List ids = %q, want %q", got, want)
	}
	wantErrs := []struct {
		path string
		code sysexits.Code
		frag string
	}{
		{corrupt + ".env", sysexits.DataErr, "invalid envelope: not JSON: unexpected end of JSON input"},
		{v2 + ".env", sysexits.DataErr, "invalid envelope: version: version 2 is not known"},
		{other + ".env", sysexits.DataErr, fmt.Sprintf("invalid envelope: id %q does not match the file name", want[1])},
		{noData + ".msg", sysexits.TempFail, "no such file or directory"},
		{link + ".env", sysexits.TempFail, "is a symbolic link (not followed)"},
		{fifo + ".env", sysexits.TempFail, "not a regular file"},
	}
	slices.SortFunc(wantErrs, func(a, b struct {
		path string
		code sysexits.Code
		frag string
	}) int {
		return strings.Compare(a.path, b.path)
	})
	if len(errs) != len(wantErrs) {
		t.Fatalf("List errors = %q, want %d", errs, len(wantErrs))
	}
	for i, w := range wantErrs {
		wantError(t, "List error", errs[i], w.code, "read spool "+dir+"/"+w.path+": ", w.frag)
	}
}

func TestListEmpty(t *testing.T) {
	s, _ := newSpool(t)
	if envs, errs := s.List(); envs != nil || errs != nil {
		t.Errorf("List = %v, %v; want nil, nil", envs, errs)
	}
	os.RemoveAll(s.Dir())
	_, errs := s.List()
	if len(errs) != 1 {
		t.Fatalf("List of a missing spool: errors %q, want one", errs)
	}
	wantError(t, "List", errs[0], sysexits.TempFail, "read spool "+s.Dir()+": no such file or directory")
}

func TestFind(t *testing.T) {
	s, _ := newSpool(t)
	id := commit(t, s, "hi\r\n")
	if e, err := s.Find(id); err != nil || e.ID != id {
		t.Errorf("Find(%q) = %v, %v", id, e, err)
	}
	for _, bad := range []string{"01JD2K7Q5W3N8X4Z", strings.ToLower(id), "../failed/" + id, ""} {
		_, err := s.Find(bad)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Find(%q) = %v, want ErrNotFound", bad, err)
		}
		wantError(t, "Find", err, sysexits.NoInput, fmt.Sprintf("queue id %q: not in the queue", bad))
	}
}

func TestCleanup(t *testing.T) {
	type file struct {
		name   string // in Dir; ID stands for a fresh id
		old    bool   // modified two hours ago rather than now
		locked bool   // held by an open file
	}
	tests := []struct {
		name    string
		files   []file
		symlink string // a name in Dir made a symbolic link to a file outside
		failed  string // a name in failed/
		removed int
		left    []string
		inFail  []string
	}{
		{"old temporary file", []file{{name: "tmp-ID-ABCDEFGH", old: true}}, "", "", 1, nil, nil},
		{"young temporary file", []file{{name: "tmp-ID-ABCDEFGH"}}, "", "", 0, []string{"tmp-ID-ABCDEFGH"}, nil},
		{"locked temporary file", []file{{name: "tmp-ID-ABCDEFGH", old: true, locked: true}}, "", "", 0, []string{"tmp-ID-ABCDEFGH"}, nil},
		{"old data without envelope", []file{{name: "ID.msg", old: true}}, "", "", 1, nil, nil},
		{"young data without envelope", []file{{name: "ID.msg"}}, "", "", 0, []string{"ID.msg"}, nil},
		{"locked data without envelope", []file{{name: "ID.msg", old: true, locked: true}}, "", "", 0, []string{"ID.msg"}, nil},
		{
			"old data with corrupt envelope",
			[]file{{name: "ID.msg", old: true}, {name: "ID.env", old: true}}, "", "", 0, []string{"ID.env", "ID.msg"}, nil,
		},
		{
			"envelope already in failed/",
			[]file{{name: "ID.msg"}}, "", "ID.env", 1, nil, []string{"ID.env", "ID.msg"},
		},
		{
			"locked, envelope already in failed/",
			[]file{{name: "ID.msg", locked: true}}, "", "ID.env", 0, []string{"ID.msg"}, []string{"ID.env"},
		},
		// Only a power loss leaves one (see Crashes in doc.go).
		{"envelope without data", []file{{name: "ID.env", old: true}}, "", "", 1, nil, nil},
		{"new envelope without data", []file{{name: "ID.env"}}, "", "", 0, []string{"ID.env"}, nil},
		{"symlinked temporary file", nil, "tmp-ID-ABCDEFGH", "", 0, []string{"tmp-ID-ABCDEFGH"}, nil},
		{"symlinked data", nil, "ID.msg", "", 0, []string{"ID.msg"}, nil},
		{"not ours", []file{{name: "state.json", old: true}, {name: "id.msg", old: true}}, "", "", 0, []string{"id.msg", "state.json"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newSpool(t)
			id, err := s.newID()
			if err != nil {
				t.Fatal(err)
			}
			name := func(n string) string { return strings.Replace(n, "ID", id, 1) }
			for _, f := range tt.files {
				path := s.Dir() + "/" + name(f.name)
				mustWrite(t, path, "x")
				if f.old {
					old := t0().Add(-2 * time.Hour)
					if err := os.Chtimes(path, old, old); err != nil {
						t.Fatal(err)
					}
				} else if err := os.Chtimes(path, t0(), t0()); err != nil {
					t.Fatal(err)
				}
				if f.locked {
					h, err := os.Open(path)
					if err != nil {
						t.Fatal(err)
					}
					defer h.Close()
					if err := flock(h, lockNB); err != nil {
						t.Fatal(err)
					}
				}
			}
			target := filepath.Join(t.TempDir(), "target")
			mustWrite(t, target, "precious")
			if tt.symlink != "" {
				if err := os.Symlink(target, s.Dir()+"/"+name(tt.symlink)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.failed != "" {
				mustWrite(t, s.Dir()+"/failed/"+name(tt.failed), "x")
			}
			removed, err := s.Cleanup(time.Hour)
			if err != nil {
				t.Errorf("Cleanup: %v", err)
			}
			if removed != tt.removed {
				t.Errorf("Cleanup removed %d, want %d", removed, tt.removed)
			}
			var left, inFail []string
			for _, n := range append([]string{"failed"}, tt.left...) {
				left = append(left, name(n))
			}
			for _, n := range tt.inFail {
				inFail = append(inFail, name(n))
			}
			wantEntries(t, s.Dir(), left...)
			wantEntries(t, s.Dir()+"/failed", inFail...)
			if b, _ := os.ReadFile(target); string(b) != "precious" {
				t.Errorf("the link's target now holds %q", b)
			}
		})
	}
}

// TestCleanupDuringCommit runs Cleanup, with no age margin, at each step
// of a Commit: it never touches the message.
func TestCleanupDuringCommit(t *testing.T) {
	s, _ := newSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var steps []string
	// Cleanup's own steps are not Commit's. Commit's two fsyncs run at
	// once: the one that finds the hook busy is not checked.
	var inHook atomic.Bool
	s.fault = func(op, path string) error {
		if !inHook.CompareAndSwap(false, true) {
			return nil
		}
		defer inHook.Store(false)
		steps = append(steps, op+" "+filepath.Base(path))
		if n, err := s.Cleanup(0); n != 0 || err != nil {
			t.Errorf("at %s %s: Cleanup(0) = %d, %v; want 0, nil", op, path, n, err)
		}
		if _, err := s.Lock(w.ID); !errors.Is(err, ErrLocked) && !errors.Is(err, ErrNotFound) {
			t.Errorf("at %s %s: Lock = %v, want ErrLocked or ErrNotFound", op, path, err)
		}
		return nil
	}
	w.Write([]byte("hello\r\n"))
	if err := w.Commit(testEnvelope()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if len(steps) < 8 {
		t.Errorf("the hook saw only %q", steps)
	}
	if _, err := s.Find(w.ID); err != nil {
		t.Errorf("Find after Commit: %v", err)
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent commits from several goroutines while others list and
// lock: every message arrives once, under its own id.
func TestConcurrent(t *testing.T) {
	s, _ := newSpool(t)
	const workers, each = 4, 15
	var wg sync.WaitGroup
	ids := make(chan string, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				w, err := s.Create()
				if err != nil {
					t.Error(err)
					return
				}
				w.Write([]byte("concurrent\r\n"))
				if err := w.Commit(testEnvelope()); err != nil {
					t.Error(err)
					return
				}
				ids <- w.ID
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			envs, errs := s.List()
			if len(errs) != 0 {
				t.Errorf("List during commits: %q", errs)
			}
			for _, e := range envs {
				if it, err := s.Lock(e.ID); err == nil {
					it.Unlock()
				} else if !errors.Is(err, ErrLocked) {
					t.Errorf("Lock(%s) during commits: %v", e.ID, err)
				}
			}
		}
	})
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %s given twice", id)
		}
		seen[id] = true
	}
	envs, errs := s.List()
	if len(envs) != workers*each || len(errs) != 0 {
		t.Errorf("List = %d envelopes, %q; want %d", len(envs), errs, workers*each)
	}
}

func TestEmpty(t *testing.T) {
	sp, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !sp.Empty() {
		t.Errorf("a new spool is not Empty")
	}
	w, err := sp.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	if !sp.Empty() {
		t.Errorf("a message being written makes the spool not Empty")
	}
	if err := w.Commit(&Envelope{From: "a@example.com", Recipients: []Recipient{{Addr: "b@example.com", State: Pending}}}); err != nil {
		t.Fatal(err)
	}
	if sp.Empty() {
		t.Errorf("Empty with a committed message")
	}
}

// TestWalkDue: Update writes the due hint with the envelope, WalkDue skips
// by it what is not due, Walk ignores it, and a hint touched by hand only
// makes a message read sooner (or later), never lost to Walk.
func TestWalkDue(t *testing.T) {
	// The hint is judged against the kernel's clock (ctime), so this
	// spool's clock is the real one.
	s, err := Open(Options{Dir: filepath.Join(t.TempDir(), "spool")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ids := []string{commit(t, s, "a\r\n"), commit(t, s, "b\r\n"), commit(t, s, "c\r\n")}
	later := now.Add(time.Hour).Truncate(time.Microsecond)
	for _, c := range []struct {
		id   string
		next time.Time
	}{{ids[0], later}, {ids[1], now.Add(-time.Minute)}} {
		it, err := s.Lock(c.id)
		if err != nil {
			t.Fatal(err)
		}
		it.Env.NextAttempt = c.next
		if err := it.Update(); err != nil {
			t.Fatal(err)
		}
		it.Unlock()
	}
	walk := func(due time.Time) []string {
		var got []string
		var errs []error
		fn := func(e *Envelope) bool { got = append(got, e.ID); return true }
		if due.IsZero() {
			errs = s.Walk(fn)
		} else {
			errs = s.WalkDue(due, fn)
		}
		if len(errs) > 0 {
			t.Fatalf("walk: %v", errs)
		}
		return got
	}
	fi, err := os.Stat(s.path(ids[0], ".env"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(later) {
		t.Errorf("the envelope due in an hour has the modification time %v, want %v", fi.ModTime(), later)
	}
	if got, want := walk(now.Add(time.Second)), ids[1:]; !slices.Equal(got, want) {
		t.Errorf("WalkDue(now) = %q, want %q", got, want)
	}
	if got := walk(later); !slices.Equal(got, ids) {
		t.Errorf("WalkDue(in an hour) = %q, want %q", got, ids)
	}
	if got := walk(time.Time{}); !slices.Equal(got, ids) {
		t.Errorf("Walk = %q, want %q", got, ids)
	}
	// Requeued: the hint goes with the next Update.
	it, err := s.Lock(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	it.Env.NextAttempt = time.Time{}
	if err := it.Update(); err != nil {
		t.Fatal(err)
	}
	it.Unlock()
	if got := walk(now.Add(time.Second)); !slices.Equal(got, ids) {
		t.Errorf("WalkDue after the requeue = %q, want %q", got, ids)
	}
	// A modification time set into the past by hand is no hint.
	past := now.Add(-time.Hour)
	if err := os.Chtimes(s.path(ids[2], ".env"), past, past); err != nil {
		t.Fatal(err)
	}
	if got := walk(past.Add(-time.Hour)); !slices.Equal(got, ids) {
		t.Errorf("WalkDue before every hint = %q, want %q (no file holds a hint now)", got, ids)
	}
}
