package netem

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests that need namespaces run again in a child process, in a new
// network namespace of its own (as the benchmark does), so that they never
// touch the machine's namespace.
const (
	// childEnv holds the name of the test the child process runs.
	childEnv = "NETEM_TEST_CHILD"
	// dialEnv makes the test binary a client: it dials the address in
	// dialEnv, sends "ping\n", copies the reply to stdout and exits.
	dialEnv = "NETEM_TEST_DIAL"

	ping = "ping\n"
	pong = "pong\n"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialEnv); addr != "" {
		os.Exit(dialOnce(addr, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// dialOnce is the client child process: one exchange with the server at
// addr. It returns an exit code.
func dialOnce(addr string, stdout, stderr io.Writer) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "netem test client: %v\n", err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply := make([]byte, len(pong))
	if _, err := io.WriteString(c, ping); err != nil {
		fmt.Fprintf(stderr, "netem test client: %v\n", err)
		return 1
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		fmt.Fprintf(stderr, "netem test client: %v\n", err)
		return 1
	}
	stdout.Write(reply)
	return 0
}

// inNewNetns reports whether the test is running in the child process, in
// the new network namespace made for it. Otherwise it runs the test in such
// a child, fails if the child does, and returns false.
func inNewNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and TUN devices")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=25s")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	t.Logf("child in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("child did not pass %s", t.Name())
	}
	return false
}

// newLink is New for tests, with a listener in the server namespace that
// answers every "ping\n" with "pong\n". It returns the listener's address.
func newLink(t *testing.T, rtt time.Duration) (*Link, string) {
	t.Helper()
	l, err := New(rtt)
	if err != nil {
		t.Fatalf("New(%v): %v", rtt, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ln, err := l.Listen("tcp", l.ServerIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return l, ln.Addr().String()
}

// serve answers each ping with a pong until the client closes.
func serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if line == ping {
			io.WriteString(c, pong)
		}
	}
}

// pingPong sends a ping on c and reads the pong.
func pingPong(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, ping); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, len(pong))
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatal(err)
	}
	if string(reply) != pong {
		t.Fatalf("reply %q, want %q", reply, pong)
	}
}

// waitConns polls l.Conns until there are n connections and the client's
// FIN of the last one has been seen.
func waitConns(t *testing.T, l *Link, n int) []ConnStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs := l.Conns()
		if len(cs) == n && !cs[n-1].End.IsZero() {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("Conns() = %+v, want %d connections, the last one ended", cs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLink measures a TCP connection across a 40 ms link: every step that
// needs a round trip must take at least one, and the forwarder must count
// the exchange exactly.
func TestLink(t *testing.T) {
	if !inNewNetns(t) {
		return
	}
	const rtt = 40 * time.Millisecond
	const exchanges = 3
	l, addr := newLink(t, rtt)

	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	connect := time.Since(start)
	t.Logf("connect took %v", connect)
	if connect < rtt {
		t.Errorf("connect took %v, want at least the RTT %v", connect, rtt)
	}
	for i := range exchanges {
		start := time.Now()
		pingPong(t, c)
		d := time.Since(start)
		t.Logf("ping-pong %d took %v", i+1, d)
		if d < rtt {
			t.Errorf("ping-pong %d took %v, want at least the RTT %v", i+1, d, rtt)
		}
	}
	clientPort := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	c.Close()

	cs := waitConns(t, l, 1)[0]
	t.Logf("stats: %+v", cs)
	_, port, _ := net.SplitHostPort(addr)
	if cs.ClientPort != clientPort || fmt.Sprint(cs.ServerPort) != port {
		t.Errorf("ports %d -> %d, want %d -> %s", cs.ClientPort, cs.ServerPort, clientPort, port)
	}
	// The SYN, then one turn per ping: each is sent after the server's
	// SYN-ACK or previous pong.
	if want := 1 + exchanges; cs.Flights != want {
		t.Errorf("Flights = %d, want %d", cs.Flights, want)
	}
	if want := int64(exchanges * len(ping)); cs.ClientBytes != want {
		t.Errorf("ClientBytes = %d, want %d", cs.ClientBytes, want)
	}
	if want := int64(exchanges * len(pong)); cs.ServerBytes != want {
		t.Errorf("ServerBytes = %d, want %d", cs.ServerBytes, want)
	}
	// At least the SYN, the pings and the FIN; the SYN-ACK and the pongs.
	if cs.ClientPackets < 2+exchanges || cs.ServerPackets < 1+exchanges {
		t.Errorf("ClientPackets, ServerPackets = %d, %d, want at least %d, %d",
			cs.ClientPackets, cs.ServerPackets, 2+exchanges, 1+exchanges)
	}
	// The client's FIN follows the handshake and the exchanges, one RTT
	// each, all measured on the forwarder's clock.
	if want := float64(1 + exchanges); cs.ElapsedRTTs < want {
		t.Errorf("ElapsedRTTs = %.3f, want at least %v", cs.ElapsedRTTs, want)
	}
	if cs.End.Before(cs.SYN) || cs.Last.Before(cs.End) {
		t.Errorf("SYN %v, End %v, Last %v out of order", cs.SYN, cs.End, cs.Last)
	}

	t.Run("child process", func(t *testing.T) {
		// The benchmark's clients are child processes: one started here
		// must be in the client namespace too.
		l.ResetConns()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), dialEnv+"="+addr)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("client process: %v: %s", err, stderr.Bytes())
		}
		t.Logf("client process took %v", time.Since(start))
		if stdout.String() != pong {
			t.Errorf("client process read %q, want %q", stdout.Bytes(), pong)
		}
		cs := waitConns(t, l, 1)[0]
		t.Logf("stats: %+v", cs)
		if cs.Flights != 2 || cs.ClientBytes != int64(len(ping)) || cs.ServerBytes != int64(len(pong)) {
			t.Errorf("Flights, ClientBytes, ServerBytes = %d, %d, %d, want 2, %d, %d",
				cs.Flights, cs.ClientBytes, cs.ServerBytes, len(ping), len(pong))
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		// Each namespace sees only its own device. The server's view
		// comes from a process forked by the server namespace's thread,
		// which must inherit that thread's namespace, not the process's.
		ip, err := exec.LookPath("ip")
		if err != nil {
			t.Skip("no ip command (iproute2)")
		}
		addrs := func() string {
			out, err := exec.Command(ip, "-o", "-4", "addr", "show").CombinedOutput()
			if err != nil {
				t.Fatalf("ip addr: %v: %s", err, out)
			}
			return string(out)
		}
		client := addrs()
		var server string
		if err := l.inServer(func() { server = addrs() }); err != nil {
			t.Fatal(err)
		}
		t.Logf("ip -o -4 addr in the client namespace:\n%s", client)
		t.Logf("ip -o -4 addr forked from the server namespace's thread:\n%s", server)
		for _, tc := range []struct {
			name, out, want, other string
		}{
			{"client", client, "rmc0    inet 10.77.0.1/30", "rms0"},
			{"server", server, "rms0    inet 10.77.0.2/30", "rmc0"},
		} {
			if !strings.Contains(tc.out, tc.want) || strings.Contains(tc.out, tc.other) {
				t.Errorf("%s namespace: ip addr shows\n%s\nwant %q and no %s", tc.name, tc.out, tc.want, tc.other)
			}
			if !strings.Contains(tc.out, "lo    inet 127.0.0.1/8") {
				t.Errorf("%s namespace: lo is not up:\n%s", tc.name, tc.out)
			}
		}
	})
}

// TestLinkZeroRTT checks that a link without delay forwards at once.
func TestLinkZeroRTT(t *testing.T) {
	if !inNewNetns(t) {
		return
	}
	l, addr := newLink(t, 0)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	pingPong(t, c)
	t.Logf("ping-pong took %v", time.Since(start))
	c.Close()
	cs := waitConns(t, l, 1)[0]
	if cs.Flights != 2 || cs.ClientBytes != int64(len(ping)) || cs.ServerBytes != int64(len(pong)) || cs.ElapsedRTTs != 0 {
		t.Errorf("stats %+v, want 2 flights, %d and %d bytes, ElapsedRTTs 0", cs, len(ping), len(pong))
	}
	if l.RTT() != 0 {
		t.Errorf("RTT() = %v, want 0", l.RTT())
	}
}
