package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestFallback: with [smarthost] fallback, a primary that cannot be
// reached or answers 4xx before any mail gives way to the next host, which
// gets the message once; one that refuses the login (5xx) does not.
func TestFallback(t *testing.T) {
	closed := func(t *testing.T) int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return port
	}
	for _, tt := range []struct {
		name     string
		primary  *smarthost.Options // nil: nothing listens
		fallback bool               // the second host gets the message
	}{
		{"unreachable", nil, true},
		{"421 at the greeting", &smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Connect, Code: 421, Text: "too busy"}}}, true},
		{"454 at AUTH", &smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Auth, Code: 454, Text: "try later"}}}, true},
		{"535 at AUTH", &smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Auth, Code: 535, Text: "bad login"}}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			second := smarthost.New(t, smarthost.Options{Users: map[string]string{user: password}, AuthRequired: true})
			var s *setup
			port := 0
			if tt.primary != nil {
				s = newSetup(t, *tt.primary, "", "")
				port = s.srv.Port()
			} else {
				s = newSetup(t, smarthost.Options{}, "", "")
				port = closed(t)
			}
			// Trust both CAs; point the config at the primary, the second
			// as its fallback.
			ca := filepath.Join(s.dir, "ca.pem")
			b, err := os.ReadFile(ca)
			must(t, err)
			must(t, os.WriteFile(ca, append(b, second.CAPEM()...), 0o644))
			conf, err := os.ReadFile(s.conf)
			must(t, err)
			text := strings.Replace(string(conf), fmt.Sprintf("port = %d\n", s.srv.Port()), "port = "+strconv.Itoa(port)+"\n", 1)
			must(t, os.WriteFile(s.conf, []byte(text), 0o600))
			appendSmarthost(t, s.conf, fmt.Sprintf("fallback = [\"127.0.0.1:%d\"]\n", second.Port()))

			o := s.run(simple, "-odi", "-f", "a@example.com", "b@example.net")
			if !tt.fallback {
				wantQueued(t, o, "535")
				if n := len(second.Sessions()); n != 0 {
					t.Errorf("the fallback host saw %d sessions after a refused login", n)
				}
				return
			}
			wantCode(t, o, 0, "")
			if c := s.run("", "--check"); !strings.Contains(c.stdout, "warning: 127.0.0.1:"+strconv.Itoa(port)) ||
				!strings.Contains(c.stdout, fmt.Sprintf("ok: mail can be relayed through the fallback 127.0.0.1:%d", second.Port())) {
				t.Errorf("--check does not say the fallback answered:\n%s%s", c.stdout, c.stderr)
			}
			msgs, err := second.WaitMessages(1, 10*time.Second)
			must(t, err)
			wantEnvelope(t, msgs[0], "a@example.com", "b@example.net")
			waitRunners(filepath.Join(s.dir, "spool"))
			if n := len(second.Messages()); n != 1 {
				t.Errorf("the fallback host got %d messages, want 1", n)
			}
			if n := len(s.srv.Messages()); n != 0 {
				t.Errorf("the primary got %d messages too", n)
			}
		})
	}
}

// TestFallbackAllDown: when every host fails, the error names each one's
// trouble, the first host's too.
func TestFallbackAllDown(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{{Stage: smarthost.Connect, Code: 421, Text: "too busy"}}}, "", "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := l.Addr().String()
	l.Close()
	appendSmarthost(t, s.conf, fmt.Sprintf("fallback = [%q]\n", dead))
	o := s.run("", "--check")
	wantCode(t, o, 75, dead+" (after 127.0.0.1:"+strconv.Itoa(s.srv.Port())+": greeting: 421 too busy): cannot connect")
}
