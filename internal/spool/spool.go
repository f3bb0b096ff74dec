package spool

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"relaymail/internal/sysexits"
)

// Options configures a [Spool]. The spool makes directories with mode
// 0700 and files with mode 0600, whatever the umask; when Dir gives its
// group rwx (the setgid install's root:relaymail 0770), 0770 and 0660.
type Options struct {
	Dir  string           // the queue directory; created with mode 0700 when missing
	Now  func() time.Time // the clock for ids, Created and Cleanup; nil: time.Now
	Rand io.Reader        // random bits for ids and temporary names; nil: crypto/rand
}

// Spool is an open queue directory. Its methods may be called from several
// goroutines at once; a [Writer] or an [Item] belongs to one.
type Spool struct {
	dir    string // Dir, cleaned
	failed string // Dir/failed
	shared bool   // Dir gives its group rwx: group modes (file.go)
	now    func() time.Time
	rand   io.Reader

	mu       sync.Mutex // guards rand, lastMS and lastRand
	lastMS   int64      // time part of the last id
	lastRand uint32     // random part of the last id

	// fault, set by tests, is called before each file operation (op is
	// one of the op* constants) and fails it by returning an error.
	fault func(op, path string) error
}

// Open opens the queue in opts.Dir, creating it and its failed/
// subdirectory with mode 0700 when they are missing. It does not check
// that the directory is writable: mailq reads a spool it may not write, and
// Create reports the problem when there is one. failed/ must be a real
// directory, not a symbolic link.
//
// Errors carry [sysexits.CantCreat] (73) when a directory cannot be
// created for lack of permission, on a read-only file system, or because a
// file is in the way, and [sysexits.TempFail] (75) otherwise.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, sysexits.Errorf(sysexits.Software, "open spool: no directory given")
	}
	s := &Spool{
		dir:  filepath.Clean(opts.Dir),
		now:  opts.Now,
		rand: opts.Rand,
	}
	s.failed = filepath.Join(s.dir, "failed")
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	// Dir itself may be a symbolic link an administrator made; failed/ is
	// ours and may not.
	if err := s.mkdir(s.dir, os.Stat); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(s.dir); err == nil {
		s.shared = fi.Mode().Perm()&0o070 == 0o070
	}
	if err := s.mkdir(s.failed, os.Lstat); err != nil {
		return nil, err
	}
	return s, nil
}

// mkdir makes sure dir is a directory, creating it and its missing
// parents when it is missing.
func (s *Spool) mkdir(dir string, stat func(string) (fs.FileInfo, error)) error {
	fi, err := stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.mkdirAll(dir); err != nil {
			return spoolError(opCreate, dir, err)
		}
		fi, err = stat(dir)
	}
	switch {
	case err != nil:
		return spoolError(opCreate, dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return sysexits.Wrap(sysexits.CantCreat, &fs.PathError{Op: opCreate, Path: dir, Err: symlinkError{}})
	case !fi.IsDir():
		return sysexits.Wrap(sysexits.CantCreat, &fs.PathError{Op: opCreate, Path: dir, Err: errNotDir})
	}
	return nil
}

// mkdirAll is os.MkdirAll, but each directory it creates gets mode 0700
// (0770 shared) whatever the umask: with os.MkdirAll, a umask of 0277 would make the
// parents 0500, too narrow to create their children.
func (s *Spool) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil // mkdir checks what it is
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	_, mode := s.modes()
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another process was first
		}
		return err
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	// Best effort: an empty directory lost in a crash is made again by
	// the next Open.
	s.syncDir(filepath.Dir(dir))
	return nil
}

// Dir returns the queue directory.
func (s *Spool) Dir() string { return s.dir }

// path returns the name in Dir of a message's data (ext ".msg") or
// envelope (".env").
func (s *Spool) path(id, ext string) string { return s.dir + "/" + id + ext }

// bufSize is the Writer's buffer: large writes, few system calls.
const bufSize = 64 << 10

// Create starts a new message: it allocates an id and creates a temporary
// data file for it, O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, locked until
// Commit or Abort. The caller writes the message to the Writer and then
// calls Commit, or Abort to give up; deferring Abort is safe.
//
// Errors carry [sysexits.CantCreat] (73) on a read-only spool or one we may
// not write, and [sysexits.TempFail] (75) otherwise. Nothing is left on
// disk when Create fails.
func (s *Spool) Create() (*Writer, error) {
	for tries := 0; ; tries++ {
		id, err := s.newID()
		if err != nil {
			return nil, err
		}
		// Ids are unique unless two processes draw the same 32 bits in the
		// same millisecond. Commit would then fail rather than overwrite
		// the other message; checking here lets us draw again instead.
		if tries < 10 && (exists(s.path(id, ".msg")) || exists(s.path(id, ".env"))) {
			continue
		}
		f, tmp, err := s.createTemp(id)
		if err != nil {
			return nil, err
		}
		w := &Writer{ID: id, s: s, f: f, tmp: tmp}
		w.buf = bufio.NewWriterSize(writerFunc(w.writeFile), bufSize)
		return w, nil
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// Writer writes one new message. It is not safe for concurrent use.
type Writer struct {
	ID string // the message's queue id, known from Create on

	s   *Spool
	f   *os.File // the data file, locked
	buf *bufio.Writer
	n   int64 // bytes accepted by Write

	// What is on disk, so that a failure can remove it: each is "" until
	// created and again once removed.
	tmp    string   // the data file's temporary name
	msg    string   // <ID>.msg
	envTmp string   // the envelope's temporary name
	envF   *os.File // the envelope's temporary file, locked
	env    string   // <ID>.env

	err      error // the first failure, returned by every later call
	done     bool  // committed, aborted, or failed and cleaned up
	keepLock bool  // CommitLocked: the data file stays open and locked
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writeFile is what the buffer flushes into.
func (w *Writer) writeFile(p []byte) (int, error) {
	if err := w.s.inject(opWrite, w.tmp); err != nil {
		return 0, err
	}
	return w.f.Write(p)
}

// Write adds p to the message; it is buffered. When writing fails (a full
// disk gives [sysexits.TempFail] (75), "write spool <path>: no space left
// on device"), the Writer removes its file at once, to free the space, and
// every later call returns the same error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, sysexits.Errorf(sysexits.Software, "write spool message %s: already committed", w.ID)
	}
	n, err := w.buf.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, w.fail(spoolError(opWrite, w.tmp, err))
	}
	return n, nil
}

// Commit makes the message durable and visible to the queue. It sets
// env.ID to w.ID, env.Version to [Version], env.Size to the bytes written
// and, when zero, env.Created to the spool's clock; then it writes the
// envelope to a temporary file, fsyncs it and the data (at once), links
// the data to <ID>.msg and the envelope to <ID>.env (the commit point),
// removes the temporary names and fsyncs Dir. When it returns nil the
// message survives a crash or a power loss.
//
// When Commit fails it removes everything it wrote, envelope first, so
// that no part of the message stays visible, and returns an error
// carrying [sysexits.TempFail] (75), or [sysexits.CantCreat] (73) for a
// read-only spool or missing permission, or [sysexits.DataErr] (65) for an
// envelope that [Encode] refuses. Should even the removal of the envelope
// fail, the data stays with it: the message is then queued although Commit
// reported an error, and may be delivered twice, but is never half there.
func (w *Writer) Commit(env *Envelope) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return sysexits.Errorf(sysexits.Software, "commit spool message %s: already committed", w.ID)
	}
	s := w.s
	if err := w.buf.Flush(); err != nil {
		return w.fail(spoolError(opWrite, w.tmp, err))
	}
	env.ID, env.Version, env.Size = w.ID, Version, w.n
	if env.Created.IsZero() {
		env.Created = s.now()
	}
	data, err := Encode(env)
	if err != nil {
		return w.fail(sysexits.Wrap(sysexits.DataErr, fmt.Errorf("commit spool message %s: %w", w.ID, err)))
	}
	w.envF, w.envTmp, err = s.createTemp(w.ID)
	if err != nil {
		return w.fail(err)
	}
	if err := s.writeAll(w.envF, data); err != nil {
		return w.fail(err)
	}
	// Both files' contents must be on disk before either final name is.
	// The two fsyncs run at once: on a journalling file system the second
	// usually rides on the first one's journal commit.
	syncErr := make(chan error, 1)
	go func() { syncErr <- s.sync(w.envF) }()
	err = s.sync(w.f)
	if err2 := <-syncErr; err == nil {
		err = err2
	}
	if err != nil {
		return w.fail(err)
	}
	// The data's name first, the envelope's (the commit point) second, so
	// that a process that sees the envelope finds the data.
	if err := s.link(w.tmp, s.path(w.ID, ".msg")); err != nil {
		return w.fail(err)
	}
	w.msg = s.path(w.ID, ".msg")
	if err := s.link(w.envTmp, s.path(w.ID, ".env")); err != nil {
		return w.fail(err)
	}
	w.env = s.path(w.ID, ".env")
	if err := s.remove(w.tmp); err != nil {
		return w.fail(err)
	}
	w.tmp = ""
	if err := s.remove(w.envTmp); err != nil {
		return w.fail(err)
	}
	w.envTmp = ""
	// One fsync of Dir makes all four name changes durable. A power loss
	// before it ends may keep any subset of them: see Crashes in the
	// package doc for why an envelope whose data name was lost is not a
	// lost message.
	if err := s.syncDir(s.dir); err != nil {
		return w.fail(err)
	}
	// Committed. The files were fsynced, so closing them cannot lose
	// anything; it releases the lock.
	w.envF.Close()
	if !w.keepLock {
		w.f.Close()
	}
	w.done = true
	return nil
}

// CommitLocked is Commit that keeps the message locked: it returns it as
// an Item, so that the sender delivers it with no instant in which a
// queue runner could take it first. The caller must Unlock the Item.
func (w *Writer) CommitLocked(env *Envelope) (*Item, error) {
	w.keepLock = true
	if err := w.Commit(env); err != nil {
		return nil, err
	}
	return &Item{Env: env, s: w.s, id: w.ID, f: w.f}, nil
}

// fail records err, removes what the Writer put on disk and returns err.
func (w *Writer) fail(err error) error {
	w.err = err
	w.cleanup()
	return err
}

// cleanup removes what the Writer put on disk, the envelope first.
func (w *Writer) cleanup() {
	if w.done {
		return
	}
	w.done = true
	s := w.s
	keepData := false
	if w.env != "" && s.remove(w.env) != nil {
		keepData = true // never leave an envelope without its data
	}
	if w.envF != nil {
		w.envF.Close()
	}
	if w.envTmp != "" {
		s.remove(w.envTmp)
	}
	if w.msg != "" && !keepData {
		s.remove(w.msg)
	}
	if w.tmp != "" {
		s.remove(w.tmp)
	}
	w.f.Close()
}

// Abort gives up the message and removes its files. It does nothing after
// Commit succeeded, and is safe to call twice or after a failure.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.err = sysexits.Errorf(sysexits.Software, "spool message %s: aborted", w.ID)
	w.cleanup()
}

// List returns every committed message's envelope, sorted by id, which is
// creation order: [Spool.Walk], collected. Errors are Walk's.
func (s *Spool) List() ([]*Envelope, []error) {
	var envs []*Envelope
	errs := s.Walk(func(e *Envelope) bool {
		envs = append(envs, e)
		return true
	})
	return envs, errs
}

// Walk calls fn with each committed message's envelope, in id order, which
// is creation order, until fn returns false. It reads the directory's
// names and then the envelope files, one at a time: what it keeps besides
// the names is the envelope fn has, so a queue of any length costs the
// same memory. It takes no lock and syncs nothing, so its cost per message
// is one small file read. A message committed while it runs may or may not
// be seen.
//
// An envelope that cannot be read or decoded, or whose data file is
// missing, is skipped and reported in the result, with its path and a
// sysexits code ([sysexits.DataErr] for a corrupt one); the others are
// still walked. Temporary files, data without an envelope, failed/ and
// names that are not the queue's are ignored. A directory that cannot be
// read gives one error and no call.
func (s *Spool) Walk(fn func(*Envelope) bool) []error {
	return s.walk(time.Time{}, fn)
}

// WalkDue is Walk for the messages whose next attempt may be at or before
// t: it skips, without reading them, the envelopes whose due hint says
// they come due later. The hint is the envelope file's modification time,
// which Update sets to a NextAttempt in the future before the file takes
// its name, so hint and envelope are written together and cannot disagree.
// Only a modification time later than the file's ctime counts as one, so a
// file merely written (or touched into the past) is always read; a hint
// set by hand into the future delays the message as its NextAttempt
// would, and Walk ignores hints. Skipping costs one stat per message
// instead of a read and a decode.
func (s *Spool) WalkDue(t time.Time, fn func(*Envelope) bool) []error {
	if t.IsZero() {
		t = time.Unix(0, 1)
	}
	return s.walk(t, fn)
}

func (s *Spool) walk(due time.Time, fn func(*Envelope) bool) []error {
	d, err := os.Open(s.dir)
	if err != nil {
		return []error{spoolError(opRead, s.dir, err)}
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return []error{spoolError(opRead, s.dir, err)}
	}
	slices.Sort(names)
	dirfd := int(d.Fd())
	var errs []error
	var buf []byte // one buffer for every envelope: Decode copies what it keeps
	for _, name := range names {
		id, ok := strings.CutSuffix(name, ".env")
		if !ok || !validID(id) {
			continue
		}
		if !due.IsZero() {
			var st unix.Stat_t
			err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
			// A hint is a modification time later than the inode's last
			// change: set by Update, not left by a write (whose mtime is
			// never later than its ctime), so a clock that went back
			// cannot make an unhinted message look not due. A file we
			// cannot stat is read, and reported.
			mtime, ctime := time.Unix(st.Mtim.Unix()), time.Unix(st.Ctim.Unix())
			if err == nil && mtime.After(ctime) && mtime.After(due) {
				continue
			}
		}
		var e *Envelope
		e, buf, err = s.readEnvelope(dirfd, id, buf)
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered since the directory was read
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, ok := slices.BinarySearch(names, id+".msg"); !ok {
			// Commit links the data before the envelope; reading the
			// directory while it did may show only the envelope. Look
			// again now that the envelope has been read.
			if _, err := os.Lstat(s.path(id, ".msg")); err != nil {
				errs = append(errs, spoolError(opRead, s.path(id, ".msg"), err))
				continue
			}
		}
		if !fn(e) {
			break
		}
	}
	return errs
}

// Find returns the envelope of the committed message id, without locking
// it. The error wraps [ErrNotFound] (with [sysexits.NoInput], 66) when
// there is none, or describes why the envelope could not be read.
func (s *Spool) Find(id string) (*Envelope, error) {
	if !validID(id) {
		return nil, notFound(id)
	}
	e, _, err := s.readEnvelope(-1, id, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(id)
	}
	return e, err
}

func notFound(id string) error {
	return sysexits.Wrap(sysexits.NoInput, fmt.Errorf("queue id %q: %w", id, ErrNotFound))
}

// readDir returns the names in Dir, without a stat per name.
func (s *Spool) readDir() ([]string, error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, spoolError(opRead, s.dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, spoolError(opRead, s.dir, err)
	}
	return names, nil
}

// readEnvelope reads and decodes <id>.env, in the open directory dirfd
// (Dir) or, when dirfd is -1, by its path. It reads into buf and returns
// it for the next call. A missing file gives an error that matches
// fs.ErrNotExist.
func (s *Spool) readEnvelope(dirfd int, id string, buf []byte) (*Envelope, []byte, error) {
	path := s.path(id, ".env")
	buf, err := readSmall(dirfd, id+".env", path, buf)
	if err != nil {
		return nil, buf, spoolError(opRead, path, err)
	}
	e, err := Decode(buf)
	if err == nil && e.ID != id {
		err = fmt.Errorf("invalid envelope: id %q does not match the file name", e.ID)
	}
	if err != nil {
		return nil, buf, sysexits.Wrap(sysexits.DataErr, &fs.PathError{Op: opRead, Path: path, Err: err})
	}
	return e, buf, nil
}

// Cleanup removes what crashed senders left behind: temporary files, data
// files without an envelope, and envelopes without a data file (a power
// loss during Commit or after Remove), whose modification time is older
// than olderThan. It skips every file that is locked, so it never touches a
// message being written, delivered or moved, and never removes data whose
// envelope exists. Data without an envelope whose envelope is in failed/
// (a crash in the middle of [Item.Fail]) is moved there, whatever its age.
// Symbolic links and other odd files are left alone.
//
// olderThan only covers the instant between creating a temporary file and
// locking it: a minute is plenty. removed counts the files taken out of
// Dir; err joins the problems met, each naming its file.
func (s *Spool) Cleanup(olderThan time.Duration) (removed int, err error) {
	names, err := s.readDir()
	if err != nil {
		return 0, err
	}
	slices.Sort(names)
	cutoff := s.now().Add(-olderThan)
	var errs []error
	for _, name := range names {
		var n int
		var err error
		if strings.HasPrefix(name, "tmp-") {
			n, err = s.reapTemp(s.dir+"/"+name, cutoff)
		} else if id, ok := strings.CutSuffix(name, ".msg"); ok && validID(id) {
			if _, ok := slices.BinarySearch(names, id+".env"); ok {
				continue
			}
			n, err = s.reapData(id, cutoff)
		} else if id, ok := strings.CutSuffix(name, ".env"); ok && validID(id) {
			if _, ok := slices.BinarySearch(names, id+".msg"); ok {
				continue
			}
			n, err = s.reapEnvelope(id, cutoff)
		}
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// reapTemp removes a temporary file older than cutoff that no one holds.
func (s *Spool) reapTemp(path string, cutoff time.Time) (int, error) {
	f, fi, err := s.grab(path)
	if f == nil || err != nil {
		return 0, err
	}
	defer f.Close()
	if changedAt(fi).After(cutoff) {
		return 0, nil
	}
	if err := s.remove(path); err != nil {
		return 0, err
	}
	return 1, nil
}

// reapEnvelope removes an envelope whose data file is missing, once older
// than cutoff. Only a power loss leaves one (see Crashes): Commit links the
// data first and Remove removes the envelope first, so no live process
// ever shows one, and the message it describes was never acknowledged
// (or was delivered and removed).
func (s *Spool) reapEnvelope(id string, cutoff time.Time) (int, error) {
	path := s.path(id, ".env")
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular() {
		return 0, nil
	}
	if err != nil {
		return 0, spoolError(opRead, path, err)
	}
	if changedAt(fi).After(cutoff) || exists(s.path(id, ".msg")) {
		return 0, nil
	}
	if err := s.remove(path); err != nil {
		return 0, err
	}
	return 1, nil
}

// reapData removes, or moves to failed/, a data file without an envelope
// that no one holds.
func (s *Spool) reapData(id string, cutoff time.Time) (int, error) {
	path := s.path(id, ".msg")
	f, fi, err := s.grab(path)
	if f == nil || err != nil {
		return 0, err
	}
	defer f.Close()
	// Commit holds the lock until the envelope is in place, so the
	// envelope exists now if it was placed after the directory was read.
	if exists(s.path(id, ".env")) {
		return 0, nil
	}
	fd, err := s.openFailed()
	if err != nil {
		return 0, err
	}
	defer fd.Close()
	switch inFailed, err := fileAt(fd, id+".env"); {
	case err != nil:
		return 0, spoolError(opRead, s.failed+"/"+id+".env", err)
	case inFailed:
		if err := s.moveToFailed(fd, id+".msg"); err != nil {
			return 0, err
		}
		return 1, nil
	}
	if changedAt(fi).After(cutoff) {
		return 0, nil
	}
	if err := s.remove(path); err != nil {
		return 0, err
	}
	return 1, nil
}

// grab opens and locks path when it is a regular file no one holds. It
// returns a nil file, and no error, for a file to leave alone: gone,
// locked, or not a regular file.
func (s *Spool) grab(path string) (*os.File, fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular() {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, spoolError(opRead, path, err)
	}
	f, fi2, err := openRead(opRead, path)
	if err != nil {
		return nil, nil, nil // removed, or replaced by something odd, since the Lstat
	}
	if err := flock(f, lockNB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, nil
		}
		return nil, nil, spoolError(opLock, path, err)
	}
	if !os.SameFile(fi, fi2) {
		f.Close()
		return nil, nil, nil
	}
	return f, fi2, nil
}

// Empty reports whether the spool holds no committed message, reading
// directory names only, a few at a time: it is cheap enough to ask after
// every delivery. An unreadable directory counts as not empty.
func (s *Spool) Empty() bool {
	d, err := os.Open(s.dir)
	if err != nil {
		return false
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(64)
		for _, n := range names {
			if strings.HasSuffix(n, ".env") {
				return false
			}
		}
		if err != nil {
			return err == io.EOF
		}
	}
}
