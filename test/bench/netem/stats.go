package netem

import (
	"encoding/binary"
	"sync"
	"time"
)

// ConnStats describes one TCP connection opened from the client namespace
// to the server namespace, as seen on the wire between them. Times are when
// the forwarder read the packet from the sender's TUN device, that is when
// the sender's kernel sent it, before the delay. Only IPv4 TCP is counted.
type ConnStats struct {
	// ClientPort and ServerPort identify the connection; with the fixed
	// addresses of a Link they are its whole 4-tuple.
	ClientPort, ServerPort uint16

	// SYN is when the client sent its first SYN. A retransmitted SYN does
	// not move it.
	SYN time.Time
	// End is when the first FIN or RST was sent, by either side; zero while
	// neither has been.
	End time.Time
	// Last is when the last packet of the connection was sent, either way,
	// pure ACKs included.
	Last time.Time

	// ClientBytes and ServerBytes add up the TCP payload of every segment
	// the client and the server sent; a retransmission counts again (the
	// link loses nothing, so the kernel rarely retransmits).
	ClientBytes, ServerBytes int64
	// ClientPackets and ServerPackets count every TCP segment each side
	// sent, pure ACKs included.
	ClientPackets, ServerPackets int

	// Flights counts the client's turns: the SYN is the first, and each
	// later one starts with the first client segment that carries payload
	// after the server has sent its SYN-ACK or a segment with payload since
	// the client's previous turn. A sequential exchange of N requests and
	// responses over a fresh connection is N+1 flights; pipelined requests
	// sent before any reply share one. FINs, RSTs and pure ACKs never start
	// a flight.
	Flights int

	// Elapsed is from SYN to the client's last segment that carried
	// payload or a FIN (so zero until the client sends something after its
	// SYN). On a link whose RTT dominates, it is about how many round
	// trips the client spent.
	Elapsed time.Duration
	// ElapsedRTTs is Elapsed divided by the link's RTT; 0 when the RTT is 0.
	ElapsedRTTs float64
}

// Bits of the TCP flags byte (RFC 9293, section 3.1).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// segment is what the tracker needs from a TCP segment.
type segment struct {
	srcPort, dstPort uint16
	flags            byte
	payload          int
}

// parseTCP reads the IPv4 and TCP headers of packet. It reports false for
// anything else: IPv6, other protocols, fragments after the first, and
// truncated headers.
func parseTCP(packet []byte) (segment, bool) {
	if len(packet) < 20 || packet[0]>>4 != 4 {
		return segment{}, false
	}
	ihl := int(packet[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(packet[2:4]))
	fragOffset := binary.BigEndian.Uint16(packet[6:8]) & 0x1fff
	if packet[9] != 6 || fragOffset != 0 || ihl < 20 || total > len(packet) || total < ihl+20 {
		return segment{}, false
	}
	tcp := packet[ihl:total]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return segment{}, false
	}
	return segment{
		srcPort: binary.BigEndian.Uint16(tcp[0:2]),
		dstPort: binary.BigEndian.Uint16(tcp[2:4]),
		flags:   tcp[13],
		payload: len(tcp) - doff,
	}, true
}

type connKey struct{ client, server uint16 }

// conn is a ConnStats being filled in.
type conn struct {
	ConnStats
	serverSpoke bool      // the server sent a SYN-ACK or payload since the client's last flight
	lastClient  time.Time // the client's last SYN, payload or FIN
}

// tracker keeps the ConnStats of a Link.
type tracker struct {
	rtt time.Duration

	mu    sync.Mutex
	conns []*conn
	byKey map[connKey]*conn // the latest connection with each key
}

func newTracker(rtt time.Duration) *tracker {
	return &tracker{rtt: rtt, byKey: map[connKey]*conn{}}
}

// observe counts packet, sent at now by the client if fromClient and by
// the server otherwise.
func (tr *tracker) observe(packet []byte, fromClient bool, now time.Time) {
	s, ok := parseTCP(packet)
	if !ok {
		return
	}
	k := connKey{client: s.dstPort, server: s.srcPort}
	if fromClient {
		k = connKey{client: s.srcPort, server: s.dstPort}
	}
	syn := s.flags&tcpSYN != 0
	fin := s.flags&tcpFIN != 0
	rst := s.flags&tcpRST != 0

	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := tr.byKey[k]
	if fromClient && syn && s.flags&tcpACK == 0 && (c == nil || !c.End.IsZero()) {
		// A new connection; a port reused after the old one ended
		// starts another.
		c = &conn{ConnStats: ConnStats{ClientPort: k.client, ServerPort: k.server, SYN: now, Flights: 1}}
		tr.conns = append(tr.conns, c)
		tr.byKey[k] = c
	}
	if c == nil {
		return // opened before New or ResetConns, or by the server
	}
	c.Last = now
	if (fin || rst) && c.End.IsZero() {
		c.End = now
	}
	if !fromClient {
		c.ServerPackets++
		c.ServerBytes += int64(s.payload)
		if s.payload > 0 || syn {
			c.serverSpoke = true
		}
		return
	}
	c.ClientPackets++
	c.ClientBytes += int64(s.payload)
	if s.payload > 0 || syn {
		if c.serverSpoke {
			c.Flights++
			c.serverSpoke = false
		}
	}
	if s.payload > 0 || syn || fin {
		c.lastClient = now
	}
}

// snapshot returns copies of the connections' statistics in SYN order.
func (tr *tracker) snapshot() []ConnStats {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]ConnStats, len(tr.conns))
	for i, c := range tr.conns {
		cs := c.ConnStats
		cs.Elapsed = c.lastClient.Sub(c.SYN)
		if tr.rtt > 0 {
			cs.ElapsedRTTs = float64(cs.Elapsed) / float64(tr.rtt)
		}
		out[i] = cs
	}
	return out
}

func (tr *tracker) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.conns = nil
	tr.byKey = map[connKey]*conn{}
}
