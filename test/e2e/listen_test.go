package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"relaymail/internal/smarthost"
)

// listener is a running "sendmail -bd".
type listener struct {
	addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

// startListener runs sendmail -bd with [listen] on a free port of host
// (and extra [listen] keys), and waits until it accepts connections.
func (s *setup) startListener(host, extra string) *listener {
	s.t.Helper()
	addr := net.JoinHostPort(host, fmt.Sprint(deadPort(s.t)))
	b, err := os.ReadFile(s.conf)
	must(s.t, err)
	must(s.t, os.WriteFile(s.conf, append(b, fmt.Sprintf("\n[listen]\naddresses = [%q]\n%s", addr, extra)...), 0o600))
	l := &listener{addr: addr, cmd: exec.Command(binary, "-C", s.conf, "-bd", "-q1h"), out: &bytes.Buffer{}, done: make(chan error, 1)}
	l.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + s.dir, "LANG=C"}
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	must(s.t, l.cmd.Start())
	go func() { l.done <- l.cmd.Wait() }()
	s.t.Cleanup(func() { l.stop(s.t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return l
		}
		select {
		case err := <-l.done:
			s.t.Fatalf("sendmail -bd exited: %v\n%s", err, l.out)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sendmail -bd does not listen on %s: %v\n%s", addr, err, l.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; the exit must be 0.
func (l *listener) stop(t *testing.T) {
	if l.cmd.ProcessState != nil {
		return
	}
	l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-l.done:
		if err != nil {
			t.Errorf("sendmail -bd after SIGTERM: %v\n%s", err, l.out)
		}
	case <-time.After(20 * time.Second):
		l.cmd.Process.Kill()
		t.Errorf("sendmail -bd did not stop on SIGTERM\n%s", l.out)
	}
}

// TestListener: a client sends two messages on one connection to
// sendmail -bd; each is committed before its 250, and the listener's own
// queue runner delivers both; a client that goes away in the middle of
// DATA leaves nothing queued; SIGTERM stops it with exit 0.
func TestListener(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	l := s.startListener("127.0.0.1", "")
	c, err := smtp.Dial(l.addr)
	must(t, err)
	for i, rcpt := range []string{"a@example.net", "b@example.net"} {
		msg := fmt.Sprintf("From: app@example.com\r\nTo: %s\r\nSubject: listener %d\r\n\r\nbody %d\r\n", rcpt, i, i)
		must(t, c.SendMail("app@example.com", []string{rcpt}, strings.NewReader(msg)))
	}
	must(t, c.Quit())
	msgs := s.delivered(2)
	for i, rcpt := range []string{"a@example.net", "b@example.net"} {
		wantEnvelope(t, msgs[i], "app@example.com", rcpt)
		if !bytes.Contains(msgs[i].Data, []byte(fmt.Sprintf("Subject: listener %d\r\n", i))) {
			t.Errorf("message %d:\n%s", i, msgs[i].Data)
		}
		for _, f := range []string{"Date", "Message-ID"} {
			if !bytes.Contains(msgs[i].Data, []byte("\r\n"+f+": ")) {
				t.Errorf("message %d has no %s", i, f)
			}
		}
	}

	// Gone in the middle of DATA: nothing is queued.
	raw, err := net.Dial("tcp", l.addr)
	must(t, err)
	r := bufio.NewReader(raw)
	for _, cmd := range []string{"", "EHLO x\r\n", "MAIL FROM:<app@example.com>\r\n", "RCPT TO:<c@example.net>\r\n", "DATA\r\n"} {
		if cmd != "" {
			fmt.Fprint(raw, cmd)
		}
		for {
			line, err := r.ReadString('\n')
			must(t, err)
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
	}
	fmt.Fprint(raw, "Subject: cut\r\n\r\nhalf a mess")
	raw.Close()
	time.Sleep(300 * time.Millisecond)
	if files := s.spoolFiles(); len(files) != 0 {
		t.Errorf("a message cut in DATA left %q in the spool", files)
	}
	// An idle client does not hold the shutdown past its grace.
	idle, err := net.Dial("tcp", l.addr)
	must(t, err)
	defer idle.Close()
	bufio.NewReader(idle).ReadString('\n')
	start := time.Now()
	l.stop(t)
	t.Logf("SIGTERM with an idle client: stopped in %v", time.Since(start).Round(time.Millisecond))
	if n := len(s.srv.Messages()); n != 2 {
		t.Errorf("%d messages arrived, want 2", n)
	}
	// Without a syslog socket the daemon logs to its stderr.
	if _, err := os.Stat("/dev/log"); err != nil && !strings.Contains(l.out.String(), "status=listening (SMTP on "+l.addr+")") {
		t.Errorf("no listening line on stderr without syslog:\n%s", l.out)
	}
}

// TestListenerSTARTTLS: with a certificate the listener offers STARTTLS
// and takes the message over it.
func TestListenerSTARTTLS(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	caPEM, cert, key, err := smarthost.ServerCertificate("localhost", "127.0.0.1")
	must(t, err)
	certFile, keyFile := filepath.Join(s.dir, "listen.pem"), filepath.Join(s.dir, "listen.key")
	must(t, os.WriteFile(certFile, cert, 0o600))
	must(t, os.WriteFile(keyFile, key, 0o600))
	l := s.startListener("127.0.0.1", fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c, err := smtp.DialStartTLS(l.addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	must(t, err)
	must(t, c.SendMail("app@example.com", []string{"a@example.net"}, strings.NewReader("Subject: tls\r\n\r\nover TLS\r\n")))
	must(t, c.Quit())
	wantEnvelope(t, s.delivered(1)[0], "app@example.com", "a@example.net")
}

// nonLoopback returns an IPv4 address of this machine that is not
// loopback, to connect from as another machine would; it skips without.
func nonLoopback(t *testing.T) net.IP {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	t.Skip("this machine has no IPv4 address but loopback to connect from")
	return nil
}

// TestListenerRefusesOthers: a client from an address of this machine
// that is not loopback is refused before any command.
func TestListenerRefusesOthers(t *testing.T) {
	ip := nonLoopback(t)
	s := newSetup(t, smarthost.Options{}, "", "")
	l := s.startListener(ip.String(), "")
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: ip}, net.TCPAddrFromAddrPort(mustAddrPort(t, l.addr)))
	must(t, err)
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "554 5.7.1 ") {
		t.Errorf("greeting to %s: %q, want 554 5.7.1", ip, line)
	}
	s.nothingSent()
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	must(t, err)
	return ap
}

// TestListenerSocketActivation: with systemd's sockets ($LISTEN_FDS, as
// systemd-socket-activate passes them) the listener takes them instead of
// [listen] addresses.
func TestListenerSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("no systemd-socket-activate here (package systemd)")
	}
	s := newSetup(t, smarthost.Options{}, "", "")
	addr := fmt.Sprintf("127.0.0.1:%d", deadPort(t))
	// [listen] names a port nothing must open: the socket comes from systemd.
	b, err := os.ReadFile(s.conf)
	must(t, err)
	must(t, os.WriteFile(s.conf, append(b, fmt.Sprintf("\n[listen]\naddresses = [\"127.0.0.1:%d\"]\n", deadPort(t))...), 0o600))
	cmd := exec.Command(activate, "-l", addr, binary, "-C", s.conf, "-bd", "-q1h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	var c *smtp.Client
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err = smtp.Dial(addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing on %s: %v\n%s", addr, err, out.String())
		}
	}
	must(t, c.SendMail("app@example.com", []string{"a@example.net"}, strings.NewReader("Subject: activated\r\n\r\nbody\r\n")))
	must(t, c.Quit())
	wantEnvelope(t, s.delivered(1)[0], "app@example.com", "a@example.net")
}

// TestListenerAuth: with users_file, a client from another machine must
// log in (AUTH PLAIN, offered only after STARTTLS) before MAIL; a wrong
// password gets 535; the right one sends.
func TestListenerAuth(t *testing.T) {
	ip := nonLoopback(t)
	s := newSetup(t, smarthost.Options{}, "", "")
	caPEM, cert, key, err := smarthost.ServerCertificate("localhost", ip.String())
	must(t, err)
	certFile, keyFile, users := filepath.Join(s.dir, "listen.pem"), filepath.Join(s.dir, "listen.key"), filepath.Join(s.dir, "users")
	must(t, os.WriteFile(certFile, cert, 0o600))
	must(t, os.WriteFile(keyFile, key, 0o600))
	hash, err := bcrypt.GenerateFromPassword([]byte("app-secret"), bcrypt.MinCost)
	must(t, err)
	must(t, os.WriteFile(users, []byte("# listener users\napp:"+string(hash)+"\n"), 0o600))
	l := s.startListener(ip.String(), fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\nusers_file = %q\n", certFile, keyFile, users))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dial := func(starttls bool) *smtp.Client {
		nc, err := net.DialTCP("tcp", &net.TCPAddr{IP: ip}, net.TCPAddrFromAddrPort(mustAddrPort(t, l.addr)))
		must(t, err)
		if starttls {
			c, err := smtp.NewClientStartTLS(nc, &tls.Config{RootCAs: pool, ServerName: "localhost"})
			must(t, err)
			return c
		}
		c := smtp.NewClient(nc)
		must(t, c.Hello("client.example"))
		return c
	}

	c := dial(false)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Errorf("AUTH offered before STARTTLS")
	}
	if err := c.Mail("app@example.com", nil); err == nil || !strings.Contains(err.Error(), "530") {
		t.Errorf("MAIL without a login: %v, want 530", err)
	}
	c.Close()

	c = dial(true)
	if err := c.Auth(sasl.NewPlainClient("", "app", "wrong")); err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("a wrong password: %v, want 535", err)
	}
	c.Close()

	c = dial(true)
	must(t, c.Auth(sasl.NewPlainClient("", "app", "app-secret")))
	must(t, c.SendMail("app@example.com", []string{"a@example.net"}, strings.NewReader("Subject: remote\r\n\r\nbody\r\n")))
	must(t, c.Quit())
	wantEnvelope(t, s.delivered(1)[0], "app@example.com", "a@example.net")
}

// TestListenerAllowFrom: the listener runs as root, but its clients are
// not root: [rewrite] allow_from holds for the senders they give.
func TestListenerAllowFrom(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	l := s.startListener("127.0.0.1", "\n[rewrite]\nallow_from = [\"*@example.com\"]\n")
	c, err := smtp.Dial(l.addr)
	must(t, err)
	defer c.Close()
	must(t, c.Hello("client.example"))
	if err := c.Mail("ceo@evil.test", nil); err == nil || !strings.Contains(err.Error(), "5") {
		t.Errorf("MAIL FROM:<ceo@evil.test>: %v, want a refusal", err)
	}
	must(t, c.Reset())
	must(t, c.SendMail("app@example.com", []string{"a@example.net"}, strings.NewReader("Subject: allowed\r\n\r\nbody\r\n")))
	wantEnvelope(t, s.delivered(1)[0], "app@example.com", "a@example.net")
}

// TestMailContentType: bsd-mailx's -a "Content-Type: text/html" makes the
// text HTML.
func TestMailContentType(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	wantCode(t, s.runMail("<p>report</p>\n", "-a", "Content-Type: text/html", "-s", "html", "b@example.net"), 0, "")
	p := parseMessage(t, s.one().Data)
	if ct, _, _ := p.header.ContentType(); ct != "text/html" || len(p.texts) != 1 || p.texts[0] != "<p>report</p>\n" {
		t.Errorf("Content-Type %q, texts %q", ct, p.texts)
	}
}

// TestListenerErrorLimit: a client whose commands keep being refused is
// told 421 and dropped after 20.
func TestListenerErrorLimit(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	l := s.startListener("127.0.0.1", "\n[rewrite]\nallow_from = [\"*@example.com\"]\n")
	c, err := smtp.Dial(l.addr)
	must(t, err)
	defer c.Close()
	must(t, c.Hello("client.example"))
	var last error
	for i := 0; i < 30; i++ {
		if last = c.Mail("probe@evil.test", nil); last != nil && strings.Contains(last.Error(), "421") {
			t.Logf("refused %d times, then: %v", i, last)
			break
		}
		c.Reset()
	}
	if last == nil || !strings.Contains(last.Error(), "421") {
		t.Fatalf("after 30 refusals: %v, want 421 and the end of the session", last)
	}
	time.Sleep(300 * time.Millisecond)
	if err := c.Noop(); err == nil {
		t.Errorf("the session goes on after 421")
	}
}
