package netem

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// sent is one packet for the tracker, sent by the client or the server.
type sent struct {
	fromClient bool
	packet     []byte
}

// tcpPacket builds an IPv4 packet with a TCP segment between client port
// 40000 and server port 25, carrying n bytes of payload.
func tcpPacket(fromClient bool, flags byte, n int) sent {
	p := make([]byte, 20+20+n)
	p[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[9] = 6 // TCP
	src, dst := uint16(40000), uint16(25)
	if !fromClient {
		src, dst = dst, src
	}
	binary.BigEndian.PutUint16(p[20:], src)
	binary.BigEndian.PutUint16(p[22:], dst)
	p[32] = 5 << 4 // 20-byte header
	p[33] = flags
	return sent{fromClient, p}
}

func c(flags byte, n int) sent { return tcpPacket(true, flags, n) }
func s(flags byte, n int) sent { return tcpPacket(false, flags, n) }

// summary is what a case checks of a ConnStats; End and Last are offsets
// from the first packet, End 0 meaning no FIN or RST.
type summary struct {
	Flights                      int
	ClientBytes, ServerBytes     int64
	ClientPackets, ServerPackets int
	End, Last                    time.Duration
	ElapsedRTTs                  float64
}

func TestTracker(t *testing.T) {
	const (
		step = 10 * time.Millisecond // between packets
		rtt  = 20 * time.Millisecond
	)
	udp := c(0, 4)
	udp.packet[9] = 17
	ipv6 := c(0, 4)
	ipv6.packet[0] = 0x60
	tests := []struct {
		name    string
		packets []sent
		want    []summary
	}{
		{
			name: "sequential exchanges",
			packets: []sent{
				c(tcpSYN, 0), s(tcpSYN|tcpACK, 0), c(tcpACK, 0),
				c(tcpACK, 5), s(tcpACK, 5),
				c(tcpACK, 5), s(tcpACK, 5),
				c(tcpACK, 5), s(tcpACK, 5),
				c(tcpFIN|tcpACK, 0), s(tcpFIN|tcpACK, 0), c(tcpACK, 0),
			},
			// The SYN and three requests; the last client FIN is at 90 ms.
			want: []summary{{Flights: 4, ClientBytes: 15, ServerBytes: 15, ClientPackets: 7, ServerPackets: 5,
				End: 9 * step, Last: 11 * step, ElapsedRTTs: 4.5}},
		},
		{
			name: "SMTP: the server speaks first, RCPT pipelined",
			packets: []sent{
				c(tcpSYN, 0), s(tcpSYN|tcpACK, 0), c(tcpACK, 0),
				s(tcpACK, 30),                // 220 greeting
				c(tcpACK, 12), s(tcpACK, 50), // EHLO, 250
				c(tcpACK, 20), c(tcpACK, 20), // MAIL, RCPT in one flight
				s(tcpACK, 8), s(tcpACK, 8),
				c(tcpFIN|tcpACK, 0),
			},
			want: []summary{{Flights: 3, ClientBytes: 52, ServerBytes: 96, ClientPackets: 6, ServerPackets: 5,
				End: 10 * step, Last: 10 * step, ElapsedRTTs: 5}},
		},
		{
			name: "retransmitted SYN, reset",
			packets: []sent{
				c(tcpSYN, 0), c(tcpSYN, 0), s(tcpSYN|tcpACK, 0), c(tcpACK, 0),
				c(tcpACK, 5), s(tcpACK, 5), c(tcpRST, 0),
			},
			// A RST is no payload or FIN: Elapsed ends with the request.
			want: []summary{{Flights: 2, ClientBytes: 5, ServerBytes: 5, ClientPackets: 5, ServerPackets: 2,
				End: 6 * step, Last: 6 * step, ElapsedRTTs: 2}},
		},
		{
			name: "port reused after the connection ended",
			packets: []sent{
				c(tcpSYN, 0), s(tcpSYN|tcpACK, 0), c(tcpFIN|tcpACK, 0),
				c(tcpSYN, 0), s(tcpSYN|tcpACK, 0),
			},
			want: []summary{
				{Flights: 1, ClientPackets: 2, ServerPackets: 1, End: 2 * step, Last: 2 * step, ElapsedRTTs: 1},
				{Flights: 1, ClientPackets: 1, ServerPackets: 1, Last: 4 * step},
			},
		},
		{
			name:    "connection opened before tracking",
			packets: []sent{c(tcpACK, 5), s(tcpACK, 5), c(tcpFIN|tcpACK, 0)},
		},
		{
			name:    "opened by the server",
			packets: []sent{s(tcpSYN, 0), c(tcpSYN|tcpACK, 0)},
		},
		{
			name:    "not IPv4 TCP",
			packets: []sent{udp, ipv6, {true, []byte{0x45, 0}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(rtt)
			base := time.Now()
			for i, p := range tt.packets {
				tr.observe(p.packet, p.fromClient, base.Add(time.Duration(i)*step))
			}
			var got []summary
			for _, cs := range tr.snapshot() {
				if cs.ClientPort != 40000 || cs.ServerPort != 25 {
					t.Errorf("ports %d -> %d, want 40000 -> 25", cs.ClientPort, cs.ServerPort)
				}
				sum := summary{
					Flights: cs.Flights, ClientBytes: cs.ClientBytes, ServerBytes: cs.ServerBytes,
					ClientPackets: cs.ClientPackets, ServerPackets: cs.ServerPackets,
					Last: cs.Last.Sub(base), ElapsedRTTs: cs.ElapsedRTTs,
				}
				if !cs.End.IsZero() {
					sum.End = cs.End.Sub(base)
				}
				got = append(got, sum)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			tr.reset()
			if cs := tr.snapshot(); len(cs) != 0 {
				t.Errorf("after reset: %+v, want none", cs)
			}
		})
	}
}
