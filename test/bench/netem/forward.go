package netem

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// maxPacket is the largest IPv4 packet, so a read never truncates one.
const maxPacket = 65535

// packet is one IP packet on its way through the forwarder.
type packet struct {
	data []byte
	due  time.Time // when to write it out
}

// pipe forwards the packets of one direction: every packet read from in
// is written to out delay after it was read.
//
// The delay is the same for every packet, so writing them in the order
// they were read writes each at its due time: read puts them in a FIFO
// queue and drain, a second goroutine, sleeps until the head is due. The
// queue is unbounded, so a slow writer never makes the reader drop packets.
type pipe struct {
	in, out    *os.File
	delay      time.Duration
	fromClient bool // for stats: in is the client's device
	stats      *tracker
	queue      queue
}

func newPipe(in, out *os.File, delay time.Duration, fromClient bool, stats *tracker) *pipe {
	return &pipe{in: in, out: out, delay: delay, fromClient: fromClient, stats: stats,
		queue: queue{wake: make(chan struct{}, 1)}}
}

// read reads packets from p.in, counts them and queues them (or, without
// a delay, writes them at once) until quit is closed. It returns nil once
// quit is closed, or the error that stopped it.
func (p *pipe) read(quit <-chan struct{}) error {
	buf := make([]byte, maxPacket)
	for {
		n, err := p.in.Read(buf)
		if err != nil {
			select {
			case <-quit:
				return nil
			default:
			}
			return fmt.Errorf("netem: read %s: %w", p.in.Name(), err)
		}
		now := time.Now()
		p.stats.observe(buf[:n], p.fromClient, now)
		if p.delay == 0 {
			if err := write(p.out, buf[:n], quit); err != nil {
				return err
			}
			continue
		}
		p.queue.push(packet{data: append([]byte(nil), buf[:n]...), due: now.Add(p.delay)})
	}
}

// drain writes each queued packet to p.out at its due time until quit is
// closed.
func (p *pipe) drain(quit <-chan struct{}) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		pkt, ok := p.queue.pop()
		if !ok {
			select {
			case <-p.queue.wake:
				continue
			case <-quit:
				return nil
			}
		}
		// A timer fires no earlier than asked; the loop is there in case
		// it wakes early anyway, so that no packet ever leaves early.
		for d := time.Until(pkt.due); d > 0; d = time.Until(pkt.due) {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-quit:
				return nil
			}
		}
		if err := write(p.out, pkt.data, quit); err != nil {
			return err
		}
	}
}

// write writes one packet to a TUN device. After quit it reports nothing:
// the device is being closed.
func write(out *os.File, data []byte, quit <-chan struct{}) error {
	if _, err := out.Write(data); err != nil {
		select {
		case <-quit:
			return nil
		default:
		}
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		return fmt.Errorf("netem: write %s: %w", out.Name(), err)
	}
	return nil
}

// queue is the FIFO of packets waiting for their due time.
type queue struct {
	mu      sync.Mutex
	packets []packet
	wake    chan struct{} // signalled when a packet is pushed
}

func (q *queue) push(p packet) {
	q.mu.Lock()
	q.packets = append(q.packets, p)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns the oldest packet, or false if there is none.
func (q *queue) pop() (packet, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.packets) == 0 {
		return packet{}, false
	}
	p := q.packets[0]
	q.packets[0] = packet{}
	q.packets = q.packets[1:]
	return p, true
}
