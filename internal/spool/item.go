package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"relaymail/internal/sysexits"
)

// Item is a committed message locked for delivery. Only the holder of the
// lock changes a message. An Item is not safe for concurrent use.
type Item struct {
	Env *Envelope // read after the lock was taken; Update writes it back

	s    *Spool
	id   string
	f    *os.File // the data file, opened and locked by Lock; nil once unlocked
	gone bool     // removed or moved to failed/
}

// Lock locks the message id for delivery, without waiting: flock
// LOCK_EX|LOCK_NB on its data file, which is never replaced, and then
// reads the envelope, which may have changed or gone while another process
// held the lock, and checks that the data has the size the envelope
// records.
//
// The error wraps [ErrLocked] ([sysexits.TempFail], 75) when another open
// file holds the lock, in this process or another; [ErrNotFound]
// ([sysexits.NoInput], 66) when there is no such message (it may have been
// delivered meanwhile); otherwise it names the file that could not be read
// (a symbolic link is refused, not followed). The caller must Unlock the
// Item.
func (s *Spool) Lock(id string) (*Item, error) {
	if !validID(id) {
		return nil, notFound(id)
	}
	path := s.path(id, ".msg")
	f, fi, err := openRead(opLock, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, err
	}
	if err := flock(f, lockNB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, sysexits.Wrap(sysexits.TempFail, &fs.PathError{Op: opLock, Path: path, Err: ErrLocked})
		}
		return nil, spoolError(opLock, path, err)
	}
	e, _, err := s.readEnvelope(-1, id, nil)
	if err == nil && e.Size != fi.Size() {
		// The data is never rewritten: a different size is damage, and
		// sending it would deliver a truncated message.
		err = sysexits.Wrap(sysexits.DataErr, &fs.PathError{Op: opLock, Path: path,
			Err: fmt.Errorf("data is %d bytes, its envelope says %d", fi.Size(), e.Size)})
	}
	if err != nil {
		f.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(id)
		}
		return nil, err
	}
	return &Item{Env: e, s: s, id: id, f: f}, nil
}

// usable returns an error when the Item may no longer be used: a bug in
// the caller.
func (it *Item) usable(what string) error {
	switch {
	case it.f == nil:
		return sysexits.Errorf(sysexits.Software, "%s spool message %s: not locked", what, it.id)
	case it.gone:
		return sysexits.Errorf(sysexits.Software, "%s spool message %s: no longer in the queue", what, it.id)
	}
	return nil
}

// Open returns the message data for reading, positioned at its start. It
// is a new open file of its own, which the caller closes; closing it does
// not release the lock, which belongs to the Item's own open file.
func (it *Item) Open() (*os.File, error) {
	if err := it.usable("open"); err != nil {
		return nil, err
	}
	path := it.s.path(it.id, ".msg")
	f, fi, err := openRead(opRead, path)
	if err != nil {
		return nil, err
	}
	// The name still leads to the file we locked, unless someone who
	// ignores the lock replaced it.
	if li, err := it.f.Stat(); err != nil || !os.SameFile(fi, li) {
		f.Close()
		return nil, sysexits.Wrap(sysexits.TempFail, &fs.PathError{Op: opRead, Path: path, Err: errReplaced})
	}
	return f, nil
}

// Update writes it.Env as the message's envelope: to a temporary file,
// fsynced, renamed over <ID>.env, and Dir fsynced. A reader sees the old
// envelope or the new one, never a mix. When Update fails the old
// envelope is left in place and the temporary file removed; the error
// carries [sysexits.DataErr] (65) for an envelope [Encode] refuses (its ID
// must stay the Item's), and otherwise 75 or 73 as Commit's do.
func (it *Item) Update() error {
	if err := it.usable("update"); err != nil {
		return err
	}
	s := it.s
	if it.Env == nil || it.Env.ID != it.id {
		return sysexits.Errorf(sysexits.Software, "update spool message %s: the envelope's id changed", it.id)
	}
	data, err := Encode(it.Env)
	if err != nil {
		return sysexits.Wrap(sysexits.DataErr, fmt.Errorf("update spool message %s: %w", it.id, err))
	}
	f, tmp, err := s.createTemp(it.id)
	if err != nil {
		return err
	}
	defer f.Close()
	err = s.writeAll(f, data)
	if err == nil {
		s.setDueHint(tmp, it.Env.NextAttempt)
		err = s.sync(f)
	}
	if err == nil {
		err = s.inject(opUpdate, s.path(it.id, ".env"))
		if err == nil {
			err = os.Rename(tmp, s.path(it.id, ".env"))
		}
		if err != nil {
			err = spoolError(opUpdate, s.path(it.id, ".env"), err)
		}
	}
	if err != nil {
		s.remove(tmp)
		return err
	}
	return s.syncDir(s.dir)
}

// Remove takes a delivered message out of the queue: it removes the
// envelope first (the commit point of the removal), then the data. It
// does not fsync Dir: a process that dies after Remove leaves nothing
// behind, and a power loss within the file system's writeback interval
// (seconds) may bring back the message, which is then delivered again: a
// duplicate, never a loss, as Postfix's queue manager also accepts. It
// may bring back the envelope alone, which Cleanup removes (see Crashes).
// Should Remove fail after removing the envelope, the data remains without
// it and Cleanup removes it later; the message is gone from the queue
// either way. The Item stays locked until Unlock.
func (it *Item) Remove() error {
	if err := it.usable("remove"); err != nil {
		return err
	}
	s := it.s
	if err := s.remove(s.path(it.id, ".env")); err != nil {
		return err
	}
	it.gone = true
	return s.remove(s.path(it.id, ".msg"))
}

// Fail moves a message that can neither be delivered nor bounced into
// failed/, for the operator: first the envelope (it leaves the queue),
// then the data, fsyncing both directories after each. failed/ is opened
// with O_NOFOLLOW: if it is a symbolic link Fail refuses and the message
// stays queued. Should Fail stop between the two moves, Cleanup finishes
// the second. The Item stays locked until Unlock.
func (it *Item) Fail() error {
	if err := it.usable("fail"); err != nil {
		return err
	}
	s := it.s
	fd, err := s.openFailed()
	if err != nil {
		return err
	}
	defer fd.Close()
	if err := s.moveToFailed(fd, it.id+".env"); err != nil {
		return err
	}
	it.gone = true
	return s.moveToFailed(fd, it.id+".msg")
}

// Unlock releases the lock by closing the Item's open file. It is safe to
// call twice.
func (it *Item) Unlock() {
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
}

// openFailed opens failed/ for renameat and fsync, refusing a symbolic
// link: the directory, unlike Dir, cannot be one, so messages never move
// somewhere else.
func (s *Spool) openFailed() (*os.File, error) {
	f, err := os.OpenFile(s.failed, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		// With O_DIRECTORY, Linux reports a symbolic link as ENOTDIR.
		if fi, lerr := os.Lstat(s.failed); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			err = symlinkError{}
		}
		return nil, spoolError(opMove, s.failed, err)
	}
	return f, nil
}

// moveToFailed renames Dir/name to failed/name, through the open failed/,
// and fsyncs failed/ and then Dir.
func (s *Spool) moveToFailed(failed *os.File, name string) error {
	dst := s.failed + "/" + name
	if err := s.inject(opMove, dst); err != nil {
		return spoolError(opMove, dst, err)
	}
	d, err := os.OpenFile(s.dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return spoolError(opMove, dst, err)
	}
	defer d.Close()
	if err := syscall.Renameat(int(d.Fd()), name, int(failed.Fd()), name); err != nil {
		return spoolError(opMove, dst, err)
	}
	if err := s.sync(failed); err != nil {
		return err
	}
	return s.sync(d)
}

// fileAt reports whether dir holds name, without following a symbolic
// link there.
func fileAt(dir *os.File, name string) (bool, error) {
	fd, err := syscall.Openat(int(dir.Fd()), name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	switch {
	case err == nil:
		syscall.Close(fd)
		return true, nil
	case err == syscall.ENOENT:
		return false, nil
	case err == syscall.ELOOP:
		return true, nil // something is there, and it is not ours to judge
	}
	return false, err
}
