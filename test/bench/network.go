package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"relaymail/internal/smarthost"
	"relaymail/test/bench/netem"
)

// network is the path between the implementations and the smarthosts: it
// makes the listeners they connect to and says which address they dial.
// It is the one place that decides both, so that every benchmark can run
// on each network the benchmark has: loopback (0 ms) now, and later the
// TUN-based link of test/bench/netem (50 ms), whose listeners live in a
// second network namespace reached at netem's ServerIP.
type network interface {
	// label names the network in the table: its round-trip time.
	label() string
	// listen returns a new listener on a free port of the path.
	listen() (net.Listener, error)
	// dialHost is the IP address the implementations connect to.
	dialHost() string
	close()
}

// loopback is 127.0.0.1 inside the benchmark's network namespace: 0 ms
// round-trip time.
type loopback struct{}

func (loopback) label() string                 { return "0 ms" }
func (loopback) listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
func (loopback) dialHost() string              { return "127.0.0.1" }
func (loopback) close()                        {}

// netemNet is test/bench/netem's link: real TCP between this namespace and
// a second one, each packet delayed by half the round-trip time each way.
// The smarthosts' listeners live in the second namespace.
type netemNet struct{ l *netem.Link }

func (n netemNet) label() string { return fmt.Sprintf("%d ms", n.l.RTT().Milliseconds()) }
func (n netemNet) listen() (net.Listener, error) {
	return n.l.Listen("tcp", n.l.ServerIP()+":0")
}
func (n netemNet) dialHost() string { return n.l.ServerIP() }
func (n netemNet) close()           { n.l.Close() }

// wire is a network that sees the packets: it counts the round trips of
// each connection.
type wire interface {
	resetConns()
	conns() []netem.ConnStats
}

func (n netemNet) resetConns()              { n.l.ResetConns() }
func (n netemNet) conns() []netem.ConnStats { return n.l.Conns() }

// stage is everything that depends on the network: a smarthost for
// relaymail and msmtp, one for dma, and the targets each implementation is
// configured with.
type stage struct {
	nw   network
	main *host // relaymail and msmtp
	dma  *host // nil when dma is not measured
}

// host is one smarthost with the counting proxy in front of it.
//
// The smarthost accepts on two listeners: one on the network (the direct
// targets dial it) and one on the local loopback that only the proxy
// dials. The proxy itself listens on the network, so a proxied connection
// crosses the network path once, as a direct one does.
type host struct {
	name    string
	srv     *smarthost.Server
	proxy   *proxy
	direct  *target // B1 and B4: straight to the smarthost
	proxied *target // B2 and B3: through the counting proxy
	// strip is set for dma's smarthost: dma prepends a Received header
	// that verify removes before hashing.
	strip bool

	mu      sync.Mutex
	arrived []time.Time   // when each message was recorded, in order
	wake    chan struct{} // closed and replaced on each arrival
}

// newHost starts a smarthost with opts on nw and a proxy in front of it,
// and writes the CA and the configs of its two targets into dir, with
// names that start with the network's label and name.
func newHost(nw network, name, dir string, opts smarthost.Options) (*host, error) {
	h := &host{name: name, wake: make(chan struct{})}
	netLn, err := nw.listen()
	if err != nil {
		return nil, fmt.Errorf("listen on %s network: %v", nw.label(), err)
	}
	localLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		netLn.Close()
		return nil, err
	}
	ln := merge(netLn, localLn)
	opts.Listener = ln
	opts.Logf = h.logf
	if h.srv, err = smarthost.Start(opts); err != nil {
		ln.Close()
		return nil, err
	}
	prefix := filepath.Join(dir, strings.ReplaceAll(nw.label(), " ", "")+"-"+name)
	ca := prefix + "-ca.pem"
	if err := h.srv.WriteCA(ca); err != nil {
		h.close()
		return nil, err
	}
	pxLn, err := nw.listen()
	if err != nil {
		h.close()
		return nil, fmt.Errorf("listen on %s network: %v", nw.label(), err)
	}
	h.proxy = startProxy(pxLn, localLn.Addr().String())
	if h.direct, err = writeTarget(prefix+"-direct", nw.dialHost(), port(netLn), ca); err != nil {
		h.close()
		return nil, err
	}
	if h.proxied, err = writeTarget(prefix+"-proxied", nw.dialHost(), port(pxLn), ca); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func port(ln net.Listener) int {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func (h *host) close() {
	if h.proxy != nil {
		h.proxy.close()
	}
	h.srv.Close()
}

// logf receives the smarthost's event lines and notes the time of each
// recorded message: "DATAEND 250" is logged, under the server's lock, just
// before the message is recorded (see smarthost.SessionLog), so the n-th
// such line is message n. Waiting for it this way costs nothing, while
// smarthost.WaitMessage would copy a 100 MiB message that dma's smarthost
// keeps before the clock could be read.
func (h *host) logf(format string, args ...any) {
	if !strings.HasSuffix(fmt.Sprintf(format, args...), ": DATAEND 250") {
		return
	}
	now := time.Now()
	h.mu.Lock()
	h.arrived = append(h.arrived, now)
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// count returns how many messages the smarthost has recorded.
func (h *host) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.arrived)
}

// await returns the time message i (counting from 0) was recorded, waiting
// up to timeout for it, and false if it did not arrive in time.
func (h *host) await(i int, timeout time.Duration) (time.Time, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		h.mu.Lock()
		if i < len(h.arrived) {
			at := h.arrived[i]
			h.mu.Unlock()
			return at, true
		}
		wake := h.wake
		h.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return time.Time{}, false
		}
	}
}

// merged accepts on several listeners at once, for a smarthost that serves
// on the network and on the loopback listener its proxy dials. A listener
// that fails (other than by Close) stops contributing connections.
type merged struct {
	lns   []net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func merge(lns ...net.Listener) *merged {
	m := &merged{lns: lns, conns: make(chan net.Conn), done: make(chan struct{})}
	for _, ln := range lns {
		m.wg.Add(1)
		go m.accept(ln)
	}
	return m
}

func (m *merged) accept(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case m.conns <- c:
		case <-m.done:
			c.Close()
			return
		}
	}
}

func (m *merged) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close closes every listener and waits for the goroutines accepting on
// them.
func (m *merged) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			ln.Close()
		}
	})
	m.wg.Wait()
	return nil
}

// Addr is the first listener's address: the one on the network.
func (m *merged) Addr() net.Addr { return m.lns[0].Addr() }
