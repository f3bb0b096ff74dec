package smarthost

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// listener registers every accepted connection (a SessionLog and the set
// Close closes) before go-smtp sees it, and serves Connect faults itself:
// go-smtp's greeting cannot be changed.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, f, ok := l.s.register(c)
		if !ok {
			c.Close()
			return nil, net.ErrClosed
		}
		if f != nil {
			go l.s.serveConnectFault(tc, f)
			continue
		}
		return tc, nil
	}
}

// register records a new connection. It returns ok == false once Close has
// started, and the Connect fault that applies, if any.
func (s *Server) register(c net.Conn) (tc *trackedConn, f *Fault, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, false
	}
	tc = &trackedConn{Conn: c, s: s, id: len(s.sessions)}
	s.sessions = append(s.sessions, SessionLog{})
	s.conns[tc] = struct{}{}
	s.open++
	s.maxOpen = max(s.maxOpen, s.open)
	if f = s.fault(Connect, ""); f != nil {
		s.workers.Add(1)
	}
	return tc, f, true
}

// serveConnectFault answers a connection with a Connect fault in place of
// go-smtp. RFC 5321 3.1: after a 554 greeting the server "MUST wait for the
// client to send a QUIT command before closing the connection" and answers
// other commands with 503.
func (s *Server) serveConnectFault(tc *trackedConn, f *Fault) {
	defer s.workers.Done()
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(ioTimeout))
	c := net.Conn(tc)
	if s.opts.TLS == ImplicitTLS {
		tlsConn := tls.Server(tc, s.tls)
		if err := tlsConn.Handshake(); err != nil {
			s.logf("smarthost: session %d: TLS handshake: %v", tc.id, err)
			return
		}
		c = tlsConn
	}
	s.mu.Lock()
	s.event(tc.id, "CONNECT "+f.outcome())
	s.mu.Unlock()
	if f.Drop {
		return
	}
	e := f.reply()
	text := e.Message
	if f.Enhanced != [3]int{} {
		text = fmt.Sprintf("%d.%d.%d %s", f.Enhanced[0], f.Enhanced[1], f.Enhanced[2], text)
	}
	if _, err := fmt.Fprintf(c, "%d %s\r\n", f.Code, text); err != nil || f.Code < 500 {
		return
	}
	r := bufio.NewReader(c)
	// A client that never quits is cut off after a few commands.
	for range 20 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.EqualFold(strings.TrimSpace(line), "QUIT") {
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		}
		if _, err := fmt.Fprintf(c, "503 5.5.1 Bad sequence of commands\r\n"); err != nil {
			return
		}
	}
}

// clientHello logs the start of a TLS handshake on raw, the connection the
// listener accepted.
func (s *Server) clientHello(raw net.Conn) {
	tc, ok := raw.(*trackedConn)
	if !ok {
		return
	}
	ev := "STARTTLS"
	if s.opts.TLS == ImplicitTLS {
		ev = "TLS"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.event(tc.id, ev)
}

// trackedConn is an accepted TCP connection. It lets the server find a
// connection's SessionLog from go-smtp's Conn (under TLS, via NetConn), drop
// it, and tell a QUIT from a broken connection (see quit).
type trackedConn struct {
	net.Conn
	s  *Server
	id int // index into Server.sessions

	dropped    atomic.Bool // closed by a Drop fault
	readFailed atomic.Bool // a Read returned an error: EOF, timeout, closed
	lastWrite  atomic.Bool // the last successful operation was a Write
	closed     atomic.Bool
	uncounted  atomic.Bool // no longer counted as open (see uncount)
}

// uncount takes the connection out of the open count, once. Callers hold
// s.mu.
func (c *trackedConn) uncount() {
	if !c.uncounted.Swap(true) {
		c.s.open--
	}
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.readFailed.Store(true)
	} else if n > 0 {
		c.lastWrite.Store(false)
	}
	return n, err
}

// SetReadDeadline counts a failure as a failed read: go-smtp sets the
// deadline before each command and gives up without reading if that
// fails, as it does once Close has closed the connection.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	if err != nil {
		c.readFailed.Store(true)
	}
	return err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil {
		c.lastWrite.Store(true)
	}
	return n, err
}

// Close closes the connection and forgets it; it is safe to call twice.
func (c *trackedConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.uncount()
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// drop closes the connection for a Drop fault. Callers hold s.mu, so it
// leaves forgetting the connection to the Close that go-smtp calls when
// its read fails.
func (c *trackedConn) drop() {
	c.dropped.Store(true)
	c.Conn.Close()
}

// quit reports whether the session is ending because the client sent QUIT.
// go-smtp does not say, but it calls Session.Logout right after writing its
// 221 reply to QUIT, while on any other ending the last operation on the
// connection was a failed read (EOF, a TLS close_notify, a timeout, Close;
// see SetReadDeadline) or a Drop fault. The one miss: go-smtp's "500 Too many errors" before it
// hangs up also looks like a QUIT.
func (c *trackedConn) quit() bool {
	return c.lastWrite.Load() && !c.readFailed.Load() && !c.dropped.Load()
}

// connOf finds the trackedConn under c, which is one the listener returned
// or a *tls.Conn around one.
func connOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}
