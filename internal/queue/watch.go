package queue

import (
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// arrivals tells a runner that a message was committed to the spool: it
// watches the spool directory with inotify(7) for new envelope names
// (Commit links <ID>.env into place, an IN_CREATE). Envelope updates are
// renames (IN_MOVED_TO) and are not arrivals.
type arrivals struct{ f *os.File }

// watchArrivals starts watching dir. The error is for a system without
// inotify or out of watches; the caller then does without.
func watchArrivals(dir string) (*arrivals, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_ONLYDIR); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch", err)
	}
	// A non-blocking descriptor goes through the runtime's poller, so a
	// read deadline bounds the wait.
	return &arrivals{f: os.NewFile(uintptr(fd), "inotify")}, nil
}

// wait returns true as soon as an envelope was created since the last
// call (or since the watch began), false when d passes without one.
func (a *arrivals) wait(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	deadline := time.Now().Add(d)
	buf := make([]byte, 16<<10)
	for {
		a.f.SetReadDeadline(deadline)
		n, err := a.f.Read(buf)
		if err != nil {
			return false // the deadline, or a broken watch: stop waiting
		}
		if envelopeCreated(buf[:n]) {
			return true
		}
	}
}

// envelopeCreated reports whether the inotify events in b name an .env.
func envelopeCreated(b []byte) bool {
	const header = syscall.SizeofInotifyEvent // not unsafe.Sizeof: Go pads the trailing Name [0]uint8
	for len(b) >= header {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := header + int(ev.Len)
		if end > len(b) {
			return false
		}
		name := strings.TrimRight(string(b[header:end]), "\x00")
		if ev.Mask&syscall.IN_CREATE != 0 && strings.HasSuffix(name, ".env") {
			return true
		}
		b = b[end:]
	}
	return false
}

func (a *arrivals) close() { a.f.Close() }
