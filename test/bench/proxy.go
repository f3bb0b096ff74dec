package main

import (
	"io"
	"net"
	"sync"
)

// proxy forwards TCP connections from the network to the smarthost and
// counts how many are open at once. internal/smarthost records what
// happens on each connection but not when it opens or closes, so B2, B3
// and B6 count here: the most open at once, and (B6) how many were
// accepted in all.
//
// A connection counts as open from accept until both directions have
// ended. The proxy copies bytes as they come, with TCP_NODELAY on both legs
// (Go's default), and adds no delay of its own: one more loopback hop, the
// same for every implementation. B1, B4 and B5 do not go through it.
type proxy struct {
	ln net.Listener
	to string
	wg sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	open     int
	peak     int
	accepted int // since resetPeak
}

// startProxy accepts on ln (it takes it over) and forwards to addr.
func startProxy(ln net.Listener, addr string) *proxy {
	p := &proxy{ln: ln, to: addr, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

// resetPeak starts a new measurement: the peak becomes what is open now,
// and the count of connections accepted starts again from 0.
func (p *proxy) resetPeak() {
	p.mu.Lock()
	p.peak = p.open
	p.accepted = 0
	p.mu.Unlock()
}

// openedSince returns how many connections were accepted since resetPeak.
func (p *proxy) openedSince() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// openNow returns how many connections are open.
func (p *proxy) openNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// peakOpen returns the most connections open at once since resetPeak.
func (p *proxy) peakOpen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	defer p.wg.Done()
	p.track(c, +1)
	defer p.track(c, -1)
	s, err := net.Dial("tcp", p.to)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Add(2)
	// Each direction ends with a half-close, so that QUIT's 221 and the
	// client's FIN still pass after the other side is done.
	pipe := func(dst, src net.Conn) {
		defer both.Done()
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	go pipe(s, c)
	go pipe(c, s)
	both.Wait()
	s.Close()
	c.Close()
	p.mu.Lock()
	delete(p.conns, s)
	p.mu.Unlock()
}

// track counts the client connection c in (+1) or out (-1).
func (p *proxy) track(c net.Conn, d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open += d
	if d > 0 {
		p.conns[c] = struct{}{}
		p.peak = max(p.peak, p.open)
		p.accepted++
	} else {
		delete(p.conns, c)
	}
}

// close stops accepting, closes every connection and waits for the
// goroutines.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
