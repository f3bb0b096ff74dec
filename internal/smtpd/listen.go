package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"relaymail/internal/sysexits"
)

// # Listening (sendmail -bd)
//
// Listen serves sessions on listeners, each one Serve's on a network
// connection (ServeConn). It bounds what a client can hold:
//
//   - MaxConnections sessions at once; more are told 421 and closed;
//   - a client from other than loopback gets Remote's session (AUTH
//     first), or 554 when Remote is nil;
//   - 20 refused commands end a session with 421 (Postfix's
//     smtpd_hard_error_limit);
//   - a session lasts at most 30 minutes, a write to a client at most a
//     minute (one that stops reading must not hold a session);
//   - when ctx ends, listening stops and sessions get 10 seconds to finish
//     the message they are on.

// ListenOptions configure Listen.
type ListenOptions struct {
	Local          Options  // sessions of loopback clients
	Remote         *Options // sessions of other clients; nil: refused
	TLS            *tls.Config
	MaxConnections int
	Hostname       string // in the refusals
	// Log receives one line per connection event: status ("refused",
	// "disconnect", "error") and text.
	Log func(status, text string)
	// Committed is called after a session that committed mail.
	Committed func()
}

const (
	maxErrors     = 20
	maxSession    = 30 * time.Minute
	writeTimeout  = time.Minute
	shutdownGrace = 10 * time.Second
)

// Listen serves until ctx ends, then closes the listeners and returns
// once the sessions are over.
func Listen(ctx context.Context, listeners []net.Listener, o ListenOptions) {
	sem := make(chan struct{}, max(o.MaxConnections, 1))
	var active connSet
	var sessions, accepting sync.WaitGroup
	for _, l := range listeners {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			for {
				nc, err := l.Accept()
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					return
				}
				if err != nil {
					// Out of descriptors, say: said, and tried again.
					o.Log("error", "accept: "+err.Error())
					time.Sleep(time.Second)
					continue
				}
				peer := nc.RemoteAddr().String()
				local := loopbackPeer(nc.RemoteAddr())
				if !local && o.Remote == nil {
					fmt.Fprintf(nc, "554 5.7.1 %s takes mail from this machine only\r\n", o.Hostname)
					nc.Close()
					o.Log("refused", "connection from "+peer+": not this machine")
					continue
				}
				select {
				case sem <- struct{}{}:
				default:
					fmt.Fprintf(nc, "421 4.7.0 %s has too many sessions, try again later\r\n", o.Hostname)
					nc.Close()
					o.Log("refused", fmt.Sprintf("connection from %s: %d sessions already (max_connections)", peer, o.MaxConnections))
					continue
				}
				sessions.Add(1)
				dc := &deadlineConn{Conn: nc}
				active.add(dc)
				go func() {
					defer sessions.Done()
					defer func() { <-sem }()
					defer active.remove(dc)
					limit := time.AfterFunc(maxSession, func() { dc.Close() })
					defer limit.Stop()
					so := o.Local
					if !local {
						so = *o.Remote // AUTH first
					}
					so.MaxErrors, so.Abort = maxErrors, func() { dc.Close() }
					ids, err := ServeConn(dc, so, o.TLS)
					text := fmt.Sprintf("session from %s: %d message(s) queued", peer, len(ids))
					if err != nil {
						text += "; " + oneLine(err.Error())
					}
					o.Log("disconnect", text)
					if len(ids) > 0 && o.Committed != nil {
						o.Committed()
					}
				}()
			}
		}()
	}
	<-ctx.Done()
	for _, l := range listeners {
		l.Close()
	}
	accepting.Wait()
	// Sessions get a moment to finish the message they are on; then their
	// connections close (a message not committed was never accepted).
	active.deadline(time.Now().Add(shutdownGrace))
	sessions.Wait()
}

// deadlineConn puts writeTimeout on every write.
type deadlineConn struct{ net.Conn }

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Conn.Write(b)
}

// connSet is the open connections.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[net.Conn]bool{}
	}
	s.conns[c] = true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// deadline ends every open connection's reads and writes at t.
func (s *connSet) deadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.SetDeadline(t)
	}
}

// Listeners opens the listeners of addrs, or takes them from systemd (socket
// activation: $LISTEN_FDS descriptors from 3). An address that cannot be
// had is an error, except [::1] on a machine without IPv6.
func Listeners(addrs []string) ([]net.Listener, error) {
	if n, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err == nil && n > 0 && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDNAMES")
		var ls []net.Listener
		for fd := 3; fd < 3+n; fd++ {
			syscall.CloseOnExec(fd) // not for password_command's children
			l, err := net.FileListener(os.NewFile(uintptr(fd), "systemd socket"))
			if err != nil {
				return nil, sysexits.Errorf(sysexits.OSErr, "socket from systemd: %v", err)
			}
			ls = append(ls, l)
		}
		return ls, nil
	}
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			host, _, _ := net.SplitHostPort(a)
			if ip := net.ParseIP(host); ip != nil && ip.To4() == nil && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
				continue // no IPv6 here
			}
			for _, l := range ls {
				l.Close()
			}
			return nil, sysexits.Errorf(sysexits.OSErr, "listen on %s: %v", a, err)
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, sysexits.Errorf(sysexits.OSErr, "no address to listen on")
	}
	return ls, nil
}

// loopbackPeer reports whether a client connects from this machine.
func loopbackPeer(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
