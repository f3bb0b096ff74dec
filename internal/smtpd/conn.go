package smtpd

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is a net.Conn made of a reader and a writer, for go-smtp.
//
// A plain reader cannot time out (stdin is not pollable unless it is put in
// non-blocking mode, which would change it for the parent process too), so
// reads are made by a goroutine of the conn and Read waits for them at most
// the idle time that SetReadDeadline gave. Each Read gets the whole idle
// time again: the deadline measures silence, not the length of a 50 MB
// DATA. The goroutine reads only when Read asks and it holds no data back,
// so nothing is read ahead of what go-smtp asked for.
//
// Writes go straight to the writer and have no deadline.
type conn struct {
	in  io.Reader
	out io.Writer

	want    chan struct{}   // asks the reader goroutine for one Read
	results chan readResult // its answer; buf stays ours until the next want
	closed  chan struct{}
	once    sync.Once

	// Used by Read only, which go-smtp calls from one goroutine.
	filter  *bareFilter
	raw     []byte // buffer of readRaw
	cooked  []byte // what the filter let through and Read has not returned
	pending []byte // part of the last result not yet returned
	busy    bool   // a read was asked for and not yet received
	rerr    error  // the input's error, returned once pending is empty

	idle     atomic.Int64 // time.Duration of the read deadline; 0 = none
	ended    atomic.Bool  // the input returned io.EOF or failed
	timedOut atomic.Bool
	failure  atomic.Value // error: the first read error other than io.EOF
	// dataStarted is set by the session's Data, which go-smtp calls when
	// it takes a DATA, before it reads the data (see bare.go).
	dataStarted atomic.Bool
}

type readResult struct {
	data []byte
	err  error
}

// readBuf is what one read of the input may return.
const readBuf = 32 << 10

func newConn(in io.Reader, out io.Writer, maxLine int) *conn {
	c := &conn{
		in:      in,
		out:     out,
		filter:  &bareFilter{maxLine: maxLine, marker: newMarker()},
		want:    make(chan struct{}, 1),
		results: make(chan readResult, 1),
		closed:  make(chan struct{}),
	}
	go c.reader()
	return c
}

// reader reads the input when asked. It ends at the input's end or error,
// or when the conn is closed while it waits to be asked; a read that blocks
// past Close ends with the process (or the test closing its pipe).
func (c *conn) reader() {
	buf := make([]byte, readBuf)
	for {
		select {
		case <-c.want:
		case <-c.closed:
			return
		}
		n, err := c.in.Read(buf)
		c.results <- readResult{data: buf[:n], err: err}
		if err != nil {
			return
		}
	}
}

// Read implements net.Conn. It returns the input's bytes as the bare-name
// filter lets them through (bare.go), io.EOF at its end, a timeout error
// after the idle time without input, and net.ErrClosed after Close.
func (c *conn) Read(p []byte) (int, error) {
	for {
		if c.isClosed() {
			// After QUIT or a fatal reply, nothing more is read, even
			// what the filter holds.
			return 0, net.ErrClosed
		}
		if len(c.cooked) > 0 {
			n := copy(p, c.cooked)
			c.cooked = c.cooked[n:]
			return n, nil
		}
		if c.filter.mode == modeDataWait {
			// go-smtp reads again only once it has refused the DATA or
			// called the session's Data.
			c.cooked = c.filter.answered(c.dataStarted.Swap(false))
			continue
		}
		if c.raw == nil {
			c.raw = make([]byte, readBuf)
		}
		n, err := c.readRaw(c.raw)
		c.cooked = c.filter.feed(c.raw[:n])
		if err != nil && c.rerr == nil {
			// A timeout, or Close: go-smtp may abandon a DATA half read,
			// and the filter could no longer tell data from commands.
			c.filter.off()
		}
		if err != nil {
			if c.rerr != nil {
				// The input has ended: what the filter still holds is
				// the last, unfinished line.
				c.cooked = append(c.cooked, c.filter.flush()...)
			}
			if len(c.cooked) == 0 {
				return 0, err
			}
		}
	}
}

// readRaw is one read of the input, unfiltered.
func (c *conn) readRaw(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if !c.busy {
		c.busy = true
		c.want <- struct{}{}
	}
	var timeout <-chan time.Time
	if d := time.Duration(c.idle.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-c.results:
		c.busy = false
		n := copy(p, r.data)
		c.pending = r.data[n:]
		if r.err != nil {
			// A reader may return data and its error together; the error
			// comes after the data, as io.Reader's contract allows.
			c.rerr = r.err
			c.ended.Store(true)
			if r.err != io.EOF {
				c.failure.CompareAndSwap(nil, r.err)
			}
			if n == 0 {
				return 0, r.err
			}
		}
		return n, nil
	case <-timeout:
		c.timedOut.Store(true)
		return 0, timeoutError{}
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

// Write implements net.Conn. It takes the filter's marker out of the
// replies.
func (c *conn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	q := p
	if bytes.Contains(p, c.filter.marker) {
		q = bytes.ReplaceAll(p, c.filter.marker, nil)
	}
	if _, err := c.out.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements net.Conn. It neither closes the reader nor the writer:
// they belong to the caller. It is safe to call more than once.
func (c *conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// isClosed reports whether Close was called.
func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// inputEnded reports whether the input has ended or failed.
func (c *conn) inputEnded() bool { return c.ended.Load() }

// readFailure returns the first read error other than io.EOF, or nil.
func (c *conn) readFailure() error {
	err, _ := c.failure.Load().(error)
	return err
}

// SetReadDeadline sets the idle time of the next reads to the time left
// until t; the zero time means no limit. go-smtp sets it before every
// command.
func (c *conn) SetReadDeadline(t time.Time) error {
	var d time.Duration
	if !t.IsZero() {
		d = max(time.Until(t), time.Millisecond)
	}
	c.idle.Store(int64(d))
	return nil
}

// SetDeadline sets the read deadline; writes have none.
func (c *conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetWriteDeadline does nothing: writes have no deadline.
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

func (c *conn) LocalAddr() net.Addr  { return pipeAddr{} }
func (c *conn) RemoteAddr() net.Addr { return pipeAddr{} }

// pipeAddr is the address of both ends: there is no network.
type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "stdio" }

// timeoutError is what Read returns when the input stays silent for the
// idle time. go-smtp answers it with 421 4.4.2 and ends the session.
type timeoutError struct{}

func (timeoutError) Error() string   { return "read: idle timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// listener hands go-smtp the one conn, then blocks until that conn is
// closed (or the listener is) and reports net.ErrClosed, which ends
// Server.Serve.
type listener struct {
	c      *conn
	given  atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func newListener(c *conn) *listener {
	return &listener{c: c, closed: make(chan struct{})}
}

func (l *listener) Accept() (net.Conn, error) {
	if l.given.CompareAndSwap(false, true) {
		return l.c, nil
	}
	select {
	case <-l.c.closed:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *listener) Addr() net.Addr { return pipeAddr{} }
