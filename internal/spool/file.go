package spool

// The file operations the queue is built from. Each one goes through
// Spool.inject first, so that tests can fail any step; each error names
// what failed and the file, "<op> spool <path>: <cause>", and carries the
// exit code the cause calls for.

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"relaymail/internal/sysexits"
)

// Modes of what the spool creates, set explicitly: the umask may not be
// ours to trust. A shared spool (its directory gives its group rwx, as the
// setgid install's root:relaymail 0770 does) gets the group modes, so
// that every member's process can read, lock and update every message.
const (
	fileMode       fs.FileMode = 0o600
	dirMode        fs.FileMode = 0o700
	sharedFileMode fs.FileMode = 0o660
	sharedDirMode  fs.FileMode = 0o770
)

// modes returns the modes of new files and directories.
func (s *Spool) modes() (file, dir fs.FileMode) {
	if s.shared {
		return sharedFileMode, sharedDirMode
	}
	return fileMode, dirMode
}

// Modes returns the modes of the files and directories that processes
// share under the spool directory dir (runner slots, rate-limit state):
// the group's too when dir gives its group rwx (the setgid install),
// else the owner's alone.
func Modes(dir string) (file, directory fs.FileMode) {
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o070 == 0o070 {
		return sharedFileMode, sharedDirMode
	}
	return fileMode, dirMode
}

// Operations, as error messages start and as the fault hook sees them.
const (
	opCreate = "create spool" // a new file, name or directory
	opWrite  = "write spool"
	opSync   = "sync spool"
	opRead   = "read spool"
	opLock   = "lock spool"
	opUpdate = "update spool" // rename a new envelope over the old one
	opMove   = "move spool"   // into failed/
	opRemove = "remove spool"
)

// lockNB is a non-blocking exclusive flock.
const lockNB = syscall.LOCK_EX | syscall.LOCK_NB

// ErrLocked is the cause of an error from [Spool.Lock] when another open
// file (in this process or another) holds the message's lock.
var ErrLocked = errors.New("locked by another process")

// ErrNotFound is the cause of an error from [Spool.Lock] and [Spool.Find]
// when no committed message has the id: it never existed, was delivered,
// or was moved to failed/.
var ErrNotFound = errors.New("not in the queue")

// symlinkError is the cause given for ELOOP from an O_NOFOLLOW open, which
// strerror calls "too many levels of symbolic links".
type symlinkError struct{}

func (symlinkError) Error() string { return "is a symbolic link (not followed)" }
func (symlinkError) Unwrap() error { return syscall.ELOOP }

// causeError is a cause the system has no errno for.
type causeError string

func (e causeError) Error() string { return string(e) }

const (
	errNotRegular causeError = "not a regular file" // a directory, FIFO or device where a file belongs
	errNotDir     causeError = "not a directory"
	errTooLarge   causeError = "larger than an envelope may be"
	errReplaced   causeError = "replaced while locked"
)

// spoolError describes op failing on path: an *fs.PathError wrapped in a
// *sysexits.Error. A full disk or quota is temporary (75); a read-only file
// system or missing permission is 73 when creating, 77 otherwise; anything
// else is 75, since the sender may retry.
func spoolError(op, path string, err error) error {
	cause := err
	for {
		switch e := cause.(type) {
		case *fs.PathError:
			cause = e.Err
			continue
		case *os.LinkError:
			cause = e.Err
			continue
		case *os.SyscallError:
			cause = e.Err
			continue
		}
		break
	}
	code := sysexits.TempFail
	switch {
	case errors.Is(cause, syscall.ELOOP):
		cause = symlinkError{}
	case errors.Is(cause, syscall.EACCES), errors.Is(cause, syscall.EPERM), errors.Is(cause, syscall.EROFS):
		code = sysexits.NoPerm
		if op == opCreate || op == opUpdate || op == opMove {
			code = sysexits.CantCreat
		}
	}
	return sysexits.Wrap(code, &fs.PathError{Op: op, Path: path, Err: cause})
}

// inject returns the error the test hook has for op on path, if any.
func (s *Spool) inject(op, path string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(op, path)
}

// create makes a new file for writing: O_EXCL so that it is ours,
// O_NOFOLLOW, mode 0600 (0660 shared) whatever the umask. It locks the file, so that
// Cleanup leaves it alone while it is written; the lock goes with the file
// when it is linked to its final name.
func (s *Spool) create(path string) (*os.File, error) {
	if err := s.inject(opCreate, path); err != nil {
		return nil, spoolError(opCreate, path, err)
	}
	mode, _ := s.modes()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return nil, spoolError(opCreate, path, err)
	}
	err = f.Chmod(mode)
	if err == nil {
		err = flock(f, lockNB)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, spoolError(opCreate, path, err)
	}
	return f, nil
}

// createTemp creates tmp-<id>-<random> in Dir, as create does.
func (s *Spool) createTemp(id string) (*os.File, string, error) {
	for tries := 0; ; tries++ {
		sfx, err := s.suffix()
		if err != nil {
			return nil, "", err
		}
		path := s.dir + "/tmp-" + id + "-" + sfx
		f, err := s.create(path)
		if errors.Is(err, fs.ErrExist) && tries < 10 {
			continue
		}
		return f, path, err
	}
}

// writeAll writes b to f, a file create made.
func (s *Spool) writeAll(f *os.File, b []byte) error {
	if err := s.inject(opWrite, f.Name()); err != nil {
		return spoolError(opWrite, f.Name(), err)
	}
	if _, err := f.Write(b); err != nil {
		return spoolError(opWrite, f.Name(), err)
	}
	return nil
}

// sync fsyncs f.
func (s *Spool) sync(f *os.File) error {
	if err := s.inject(opSync, f.Name()); err != nil {
		return spoolError(opSync, f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return spoolError(opSync, f.Name(), err)
	}
	return nil
}

// syncDir fsyncs a directory, which makes the names created, renamed and
// removed in it durable: fsyncing a file does not (chasquid's safeio
// forgets this; mox's SyncDir does it).
func (s *Spool) syncDir(dir string) error {
	if err := s.inject(opSync, dir); err != nil {
		return spoolError(opSync, dir, err)
	}
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return spoolError(opSync, dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return spoolError(opSync, dir, err)
	}
	return nil
}

// link gives the file at tmp a second, final name, failing with
// fs.ErrExist rather than replace a file already there, as rename would.
// The caller then removes the temporary name. Both names are in Dir: only
// within one directory is this atomic.
func (s *Spool) link(tmp, final string) error {
	if err := s.inject(opCreate, final); err != nil {
		return spoolError(opCreate, final, err)
	}
	if err := os.Link(tmp, final); err != nil {
		return spoolError(opCreate, final, err)
	}
	return nil
}

// remove removes a name; one already gone is not an error.
func (s *Spool) remove(path string) error {
	if err := s.inject(opRemove, path); err != nil {
		return spoolError(opRemove, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return spoolError(opRemove, path, err)
	}
	return nil
}

// openRead opens a spool file for reading, refusing symbolic links and
// anything but a regular file. O_NONBLOCK keeps a planted FIFO from
// blocking the open; it does nothing to a regular file.
func openRead(op, path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, spoolError(op, path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, spoolError(op, path, err)
	}
	return f, fi, nil
}

// readSmall reads a small regular file into buf: name in the open
// directory dirfd, or path when dirfd is -1. Like openRead it refuses
// symbolic links and anything but a regular file, and it refuses files
// larger than an envelope may be. It makes a handful of system calls and
// no allocation when buf is large enough, for List's sake.
func readSmall(dirfd int, name, path string, buf []byte) ([]byte, error) {
	const flags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	var fd int
	var err error
	for {
		if dirfd >= 0 {
			fd, err = syscall.Openat(dirfd, name, flags, 0)
		} else {
			fd, err = syscall.Open(path, flags, 0)
		}
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return buf, err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return buf, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return buf, errNotRegular
	}
	if st.Size > maxEnvelope {
		return buf, errTooLarge
	}
	buf = slices.Grow(buf[:0], int(st.Size)+1)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > maxEnvelope {
				return buf, errTooLarge
			}
			buf = slices.Grow(buf, 4096)
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// flock applies flock(2) to f, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// setDueHint sets the modification time of the envelope file at path (a
// temporary name of ours) to next, when that is in the future: the due
// hint that [Spool.WalkDue] reads with one stat. It uses utimensat on the
// name, which needs no /proc (futimes does, on Linux). It is best effort:
// without it the file keeps the time it was written, and walks read it as
// one that may be due.
func (s *Spool) setDueHint(path string, next time.Time) {
	if !next.After(s.now()) {
		return
	}
	ts := unix.NsecToTimespec(next.UnixNano())
	unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// changedAt is the age Cleanup judges a file by: its modification time,
// or the time its inode last changed (ctime, which nobody sets) when that
// is earlier, so that the due hint, a modification time in the future,
// does not keep a leftover file from being reaped.
func changedAt(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Unix()); c.Before(fi.ModTime()) {
			return c
		}
	}
	return fi.ModTime()
}
