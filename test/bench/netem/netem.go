// Package netem puts a fixed round-trip time between two network
// namespaces, so that benchmarks can measure SMTP clients over real kernel
// TCP as if the smarthost were far away.
//
// # Why TUN and a userspace delay
//
// The usual tools are missing on the benchmark machine: the kernel has no
// sch_netem qdisc and cannot create veth pairs. A delaying TCP proxy would
// be no substitute, because it terminates TCP: it would coalesce and split
// writes, answer ACKs itself and so hide exactly what a round trip costs a
// client (Nagle's algorithm waiting for an ACK, the peer's delayed ACK,
// slow start). Instead each namespace gets a TUN device, and a forwarder in
// this process copies every IP packet from one device to the other
// unchanged, rtt/2 after it read it. Both ends are the kernel's own TCP.
//
// # Namespaces
//
// The caller must already run in a private network namespace of its own
// (for example, a process started with Cloneflags CLONE_NEWNET): New
// changes that namespace, never the machine's root one. It calls that
// namespace the client namespace: lo is brought up there and TUN device
// rmc0 gets 10.77.0.1/30. New then dedicates one OS thread to a second,
// server namespace made with unshare(CLONE_NEWNET): it has its own lo and
// TUN device rms0 with 10.77.0.2/30. Every other thread of the process, and
// every child process it starts, stays in the client namespace.
//
//	client namespace                         server namespace
//	(the process)                            (one locked thread)
//	rmc0 10.77.0.1/30 --[ rtt/2 delay ]--> rms0 10.77.0.2/30
//	                  <--[ rtt/2 delay ]--
//
// Only one Link can exist per client namespace at a time: the device names
// and addresses are fixed, and a second New fails with "device or resource
// busy".
//
// # Use
//
//	l, err := netem.New(50 * time.Millisecond)
//	...
//	defer l.Close()
//	ln, err := l.Listen("tcp", l.ServerIP()+":0") // socket in the server namespace
//	// serve on ln; clients, in-process or child processes, dial ln.Addr()
//	for _, c := range l.Conns() { ... c.Flights, c.ElapsedRTTs ... }
//
// # Faithfulness
//
// Every packet is delayed by the same amount, so packets leave in the order
// they arrived; none is dropped or reordered and there is no bandwidth
// limit. The devices keep the TUN default MTU of 1500 bytes, as on an
// Ethernet path, so segment sizes and the initial congestion window behave
// as on a real network; TUN without a virtio header gets no GSO, so every
// packet is at most one MTU.
package netem

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The two ends of a Link. The /30 prefix gives each namespace a route to
// the other's address through its TUN device.
const (
	clientDev  = "rmc0"
	serverDev  = "rms0"
	clientAddr = "10.77.0.1"
	serverAddr = "10.77.0.2"
	prefixLen  = 30
)

// Link is a pair of TUN devices, one in the client namespace and one in the
// server namespace, joined by a forwarder that delays every packet. Its
// methods are safe for concurrent use.
type Link struct {
	rtt      time.Duration
	client   *os.File // rmc0: packets the client namespace sends
	server   *os.File // rms0: packets the server namespace sends
	stats    *tracker
	calls    chan func() // run on the server namespace's thread
	quit     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// New joins the current network namespace (the client namespace, which
// must be private to the caller: see the package documentation) to a new
// server namespace, with rtt as the round-trip time between them: packets
// from the client are delayed by rtt/2, packets from the server by the
// rest of rtt. With rtt 0 packets are forwarded as soon as they are read.
//
// New brings lo up in the client namespace if it is down and creates TUN
// device rmc0 (10.77.0.1/30) there. It needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN) and /dev/net/tun. On error nothing is left behind but lo,
// which stays up; errors wrap the syscall.Errno that caused them, so
// errors.Is(err, fs.ErrPermission) tells a missing privilege.
func New(rtt time.Duration) (*Link, error) {
	if rtt < 0 {
		return nil, fmt.Errorf("netem: negative round-trip time %v", rtt)
	}
	if err := linkUp("lo"); err != nil {
		return nil, fmt.Errorf("netem: bring up lo in the client namespace: %w", err)
	}
	client, err := createTUN(clientDev, clientAddr)
	if err != nil {
		return nil, err
	}
	l := &Link{
		rtt:    rtt,
		client: client,
		stats:  newTracker(rtt),
		calls:  make(chan func()),
		quit:   make(chan struct{}),
	}
	ready := make(chan error, 1)
	go l.serve(ready)
	if err := <-ready; err != nil {
		close(l.quit)
		client.Close()
		return nil, err
	}
	up := rtt / 2
	for _, p := range []*pipe{
		newPipe(l.client, l.server, up, true, l.stats),
		newPipe(l.server, l.client, rtt-up, false, l.stats),
	} {
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			l.fail(p.read(l.quit))
		}()
		go func() {
			defer l.wg.Done()
			l.fail(p.drain(l.quit))
		}()
	}
	return l, nil
}

// serve makes the calling goroutine's thread the server namespace, reports
// on ready whether that worked, and then runs the functions sent on l.calls
// until l.quit is closed.
func (l *Link) serve(ready chan<- error) {
	// Never unlocked: the thread's namespace differs from the process's, so
	// when this goroutine returns Go must end the thread instead of reusing
	// it for other goroutines. While it is locked, no other goroutine runs
	// on it, and threads the runtime starts meanwhile are cloned from a
	// clean template thread, not from this one. Processes forked here (by
	// os/exec) do inherit this thread's namespace: the test checks that.
	runtime.LockOSThread()
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		ready <- fmt.Errorf("netem: create server network namespace: unshare: %w", needsRoot(err))
		return
	}
	if err := linkUp("lo"); err != nil {
		ready <- fmt.Errorf("netem: bring up lo in the server namespace: %w", err)
		return
	}
	server, err := createTUN(serverDev, serverAddr)
	if err != nil {
		ready <- err
		return
	}
	l.server = server
	ready <- nil
	for {
		select {
		case fn := <-l.calls:
			fn()
		case <-l.quit:
			return
		}
	}
}

// inServer runs fn on the server namespace's thread and waits for it.
func (l *Link) inServer(fn func()) error {
	done := make(chan struct{})
	select {
	case l.calls <- func() { defer close(done); fn() }:
		<-done
		return nil
	case <-l.quit:
		return errors.New("netem: link closed")
	}
}

// Listen announces on a local address in the server namespace, as
// net.Listen does; address is usually ServerIP()+":0". The listener may be
// used from any goroutine and outlives Close, though nothing reaches it
// through the link after that.
func (l *Link) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	var err error
	if cerr := l.inServer(func() { ln, err = net.Listen(network, address) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("netem: listen in the server namespace: %w", err)
	}
	return ln, nil
}

// ServerIP returns the server namespace's address, "10.77.0.2".
func (l *Link) ServerIP() string { return serverAddr }

// RTT returns the round-trip time the link adds.
func (l *Link) RTT() time.Duration { return l.rtt }

// Conns returns the TCP connections seen since New or the last ResetConns,
// in the order of their clients' SYNs. It is a copy: counts of connections
// still open go on changing in the link, not in the result.
func (l *Link) Conns() []ConnStats { return l.stats.snapshot() }

// ResetConns forgets every connection seen so far. Packets of connections
// that were open then are not counted afterwards; only connections whose
// SYN comes later are.
func (l *Link) ResetConns() { l.stats.reset() }

// fail records the first error that stopped a forwarder, for Close.
func (l *Link) fail(err error) {
	if err == nil {
		return
	}
	l.closeMu.Lock()
	if l.closeErr == nil && !l.closed {
		l.closeErr = err
	}
	l.closeMu.Unlock()
}

// Close stops the forwarder and closes both TUN devices, which removes
// them; the server namespace's thread ends. Listeners from Listen stay
// open. Close returns an error if a forwarder had stopped early because
// reading or writing a device failed. Calling Close again does nothing.
func (l *Link) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	err := l.closeErr
	l.closeMu.Unlock()

	close(l.quit)
	// Closing the files interrupts the readers blocked on them.
	errs := []error{err, l.client.Close(), l.server.Close()}
	l.wg.Wait()
	return errors.Join(errs...)
}
