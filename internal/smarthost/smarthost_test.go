package smarthost

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	alice   = "alice"
	alicePW = "alice-secret-pw"
	token   = "ya29.alice-token"
)

var users = map[string]string{alice: alicePW, "bob": "bob-pw"}

// clientTLS trusts s's CA and expects the certificate to carry name.
func clientTLS(t *testing.T, s *Server, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: name}
}

// dial connects the way s's TLS mode needs, saying EHLO client.test when
// it can choose (go-smtp's STARTTLS helper always says localhost).
func dial(t *testing.T, s *Server) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	switch s.TLSMode() {
	case StartTLS:
		c, err = smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
	case ImplicitTLS:
		c, err = smtp.DialTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
	case NoTLS:
		c, err = smtp.Dial(s.Addr())
	}
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	if s.TLSMode() != StartTLS {
		if err := c.Hello("client.test"); err != nil {
			t.Fatalf("EHLO: %v", err)
		}
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// transaction is one client dialogue; run stops at the first error and
// says which step failed.
type transaction struct {
	auth  sasl.Client
	from  string
	mopts *smtp.MailOptions
	rcpts []string
	ropts *smtp.RcptOptions
	data  string
}

func (tr transaction) run(c *smtp.Client) (step string, err error) {
	if tr.auth != nil {
		if err := c.Auth(tr.auth); err != nil {
			return "AUTH", err
		}
	}
	if err := c.Mail(tr.from, tr.mopts); err != nil {
		return "MAIL", err
	}
	for _, r := range tr.rcpts {
		if err := c.Rcpt(r, tr.ropts); err != nil {
			return "RCPT " + r, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if _, err := io.WriteString(w, tr.data); err != nil {
		w.Close()
		return "DATA write", err
	}
	if err := w.Close(); err != nil {
		return "DATAEND", err
	}
	return "", nil
}

func simpleTx() transaction {
	return transaction{
		auth:  sasl.NewPlainClient("", alice, alicePW),
		from:  "sender@example.com",
		rcpts: []string{"rcpt@example.net"},
		data:  "Subject: hi\r\n\r\nbody\r\n",
	}
}

func mustRun(t *testing.T, c *smtp.Client, tr transaction) {
	t.Helper()
	if step, err := tr.run(c); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

func wantEvents(t *testing.T, s *Server, session int, want ...string) {
	t.Helper()
	sessions := s.Sessions()
	if session >= len(sessions) {
		t.Fatalf("%d sessions, want session %d", len(sessions), session)
	}
	if got := sessions[session].Events; !slices.Equal(got, want) {
		t.Errorf("session %d events:\n got %q\nwant %q", session, got, want)
	}
}

func wantCode(t *testing.T, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want an SMTP %d reply", err, err, code)
	}
	if se.Code != code || (enhanced != smtp.EnhancedCode{} && se.EnhancedCode != enhanced) {
		t.Errorf("reply = %d %v %q, want %d %v", se.Code, se.EnhancedCode, se.Message, code, enhanced)
	}
}

func TestDeliveryRecordedExactly(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users})
	c := dial(t, s)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH extension = %v %q, want PLAIN LOGIN", ok, mechs)
	}
	// A leading dot is stuffed by the client and must come back unstuffed;
	// UTF-8 and CRLF must come back byte for byte.
	data := "From: s@example.com\r\nSubject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\r\n\r\n.leading dot\r\nGrüße\r\n..two dots\r\n"
	mustRun(t, c, transaction{
		auth:  sasl.NewPlainClient("", alice, alicePW),
		from:  "sender@example.com",
		rcpts: []string{"a@example.net", "b@example.org"},
		data:  data,
	})
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	s.Close() // so that the QUIT event is in

	want := Message{
		From:     "sender@example.com",
		MailOpts: smtp.MailOptions{Body: smtp.Body8BitMIME},
		Rcpts:    []string{"a@example.net", "b@example.org"},
		RcptOpts: []smtp.RcptOptions{{}, {}},
		Data:     []byte(data),
		Size:     int64(len(data)),
		SHA256:   sha256.Sum256([]byte(data)),
		AuthUser: alice,
		AuthMech: "PLAIN",
		TLS:      true,
		Helo:     "localhost",
		Session:  0,
	}
	msgs := s.Messages()
	if len(msgs) != 1 || !reflect.DeepEqual(msgs[0], want) {
		t.Fatalf("messages = %+v\nwant [%+v]", msgs, want)
	}
	wantEvents(t, s, 0,
		"EHLO localhost", "STARTTLS", "EHLO localhost",
		"AUTH PLAIN user=alice ok",
		"MAIL FROM:<sender@example.com> BODY=8BITMIME",
		"RCPT TO:<a@example.net> 250", "RCPT TO:<b@example.org> 250",
		"DATA", "DATAEND 250", "QUIT")
	if l := s.Sessions()[0]; !l.TLS || l.Helo != "localhost" {
		t.Errorf("session = %+v, want TLS from localhost", l)
	}

	// Messages returns copies.
	msgs[0].Data[0] = 'X'
	msgs[0].Rcpts[0] = "changed"
	if m := s.Messages()[0]; m.Data[0] != 'F' || m.Rcpts[0] != "a@example.net" {
		t.Errorf("changing a returned Message changed the server's record")
	}
}

func TestCertificateCoversNames(t *testing.T) {
	t.Parallel()
	s := New(t, Options{})
	for _, name := range []string{"127.0.0.1", "localhost", "smarthost.test"} {
		c, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, name))
		if err == nil {
			err = c.Noop()
			c.Close()
		}
		if err != nil {
			t.Errorf("STARTTLS verifying %s: %v", name, err)
		}
	}
}

// xoauth2Client and oauthBearerClient answer the server's error challenge
// as RFC 7628 and Google say, so that a bad token ends in a 535 reply.
// go-sasl's OAUTHBEARER client cancels with "*" instead.
type xoauth2Client struct{ user, token string }

func (x xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}
func (x xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }

type oauthBearerClient struct{ authz, token string }

func (o oauthBearerClient) Start() (string, []byte, error) {
	return "OAUTHBEARER", []byte("n," + o.authz + ",\x01host=x\x01auth=Bearer " + o.token + "\x01\x01"), nil
}
func (o oauthBearerClient) Next([]byte) ([]byte, error) { return []byte{1}, nil }

func TestAuthMechanisms(t *testing.T) {
	t.Parallel()
	tokens := map[string]string{alice: token}
	tests := []struct {
		name      string
		opts      Options
		offered   string
		client    sasl.Client
		wantMech  string // "" = AUTH must fail with 535
		wantEvent string
	}{
		{"PLAIN", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewPlainClient("", alice, alicePW), "PLAIN", "AUTH PLAIN user=alice ok"},
		{"PLAIN with same authzid", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewPlainClient(alice, alice, alicePW), "PLAIN", "AUTH PLAIN user=alice ok"},
		{"PLAIN acting for another user", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewPlainClient("bob", alice, alicePW), "", "AUTH PLAIN user=alice failed"},
		{"PLAIN wrong password", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewPlainClient("", alice, "wrong"), "", "AUTH PLAIN user=alice failed"},
		{"PLAIN unknown user", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewPlainClient("", "mallory", alicePW), "", "AUTH PLAIN user=mallory failed"},
		{"LOGIN only", Options{Users: users, Mechanisms: []string{"login"}}, "LOGIN",
			sasl.NewLoginClient(alice, alicePW), "LOGIN", "AUTH LOGIN user=alice ok"},
		{"LOGIN wrong password", Options{Users: users}, "PLAIN LOGIN",
			sasl.NewLoginClient(alice, "wrong"), "", "AUTH LOGIN user=alice failed"},
		{"XOAUTH2", Options{Tokens: tokens}, "XOAUTH2 OAUTHBEARER",
			xoauth2Client{alice, token}, "XOAUTH2", "AUTH XOAUTH2 user=alice ok"},
		{"XOAUTH2 bad token", Options{Tokens: tokens}, "XOAUTH2 OAUTHBEARER",
			xoauth2Client{alice, "expired"}, "", "AUTH XOAUTH2 user=alice failed"},
		{"XOAUTH2 token is not a password", Options{Users: users, Tokens: tokens}, "PLAIN LOGIN XOAUTH2 OAUTHBEARER",
			xoauth2Client{alice, alicePW}, "", "AUTH XOAUTH2 user=alice failed"},
		{"OAUTHBEARER go-sasl client", Options{Tokens: tokens, Mechanisms: []string{"OAUTHBEARER"}}, "OAUTHBEARER",
			sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: alice, Token: token}), "OAUTHBEARER", "AUTH OAUTHBEARER user=alice ok"},
		{"OAUTHBEARER without authzid", Options{Tokens: tokens}, "XOAUTH2 OAUTHBEARER",
			oauthBearerClient{"", token}, "OAUTHBEARER", "AUTH OAUTHBEARER user=alice ok"},
		{"OAUTHBEARER bad token", Options{Tokens: tokens}, "XOAUTH2 OAUTHBEARER",
			oauthBearerClient{"a=alice", "expired"}, "", "AUTH OAUTHBEARER user=alice failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(t, tt.opts)
			c := dial(t, s)
			if _, offered := c.Extension("AUTH"); offered != tt.offered {
				t.Errorf("AUTH offers %q, want %q", offered, tt.offered)
			}
			tr := simpleTx()
			tr.auth = tt.client
			step, err := tr.run(c)
			if tt.wantMech == "" {
				if step != "AUTH" {
					t.Fatalf("step %q error %v, want AUTH to fail", step, err)
				}
				wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
			} else if err != nil {
				t.Fatalf("%s: %v", step, err)
			} else if m := s.Messages()[0]; m.AuthMech != tt.wantMech || m.AuthUser != alice {
				t.Errorf("message AUTH %s as %q, want %s as %q", m.AuthMech, m.AuthUser, tt.wantMech, alice)
			}
			if events := s.Sessions()[0].Events; !slices.Contains(events, tt.wantEvent) {
				t.Errorf("events %q lack %q", events, tt.wantEvent)
			}
			for _, ev := range s.Sessions()[0].Events {
				for _, secret := range []string{alicePW, token} {
					if strings.Contains(ev, secret) {
						t.Errorf("event %q shows a secret", ev)
					}
				}
			}
		})
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	s := New(t, Options{TLS: ImplicitTLS, Users: users})
	c := dial(t, s)
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("implicit TLS server offers STARTTLS")
	}
	mustRun(t, c, simpleTx())
	c.Quit()
	s.Close()
	if m := s.Messages(); len(m) != 1 || !m[0].TLS || m[0].Helo != "client.test" {
		t.Fatalf("messages = %+v, want one over TLS from client.test", m)
	}
	wantEvents(t, s, 0, "TLS", "EHLO client.test", "AUTH PLAIN user=alice ok",
		"MAIL FROM:<sender@example.com> BODY=8BITMIME", "RCPT TO:<rcpt@example.net> 250",
		"DATA", "DATAEND 250", "QUIT")
}

func TestNoTLSAllowsPlaintextAuth(t *testing.T) {
	t.Parallel()
	s := New(t, Options{TLS: NoTLS, Users: users})
	c := dial(t, s)
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("NoTLS server offers STARTTLS")
	}
	mustRun(t, c, simpleTx())
	if m := s.Messages()[0]; m.TLS || m.AuthUser != alice {
		t.Errorf("message TLS %v AUTH %q, want plaintext as alice", m.TLS, m.AuthUser)
	}
}

func TestNoStartTLS(t *testing.T) {
	t.Parallel()
	s := New(t, Options{NoStartTLS: true, Users: users})
	_, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("DialStartTLS error = %v, want STARTTLS not supported", err)
	}
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered without TLS")
	}
	wantCode(t, c.Auth(sasl.NewPlainClient("", alice, alicePW)), 523, smtp.EnhancedCode{5, 7, 10})
	c.Quit()
	s.Close()
	wantEvents(t, s, 1, "EHLO client.test", "QUIT")
}

func TestCertificateFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want any // pointer to the error type the client must see
	}{
		{"untrusted STARTTLS", Options{BadCert: true}, &x509.UnknownAuthorityError{}},
		{"untrusted implicit", Options{TLS: ImplicitTLS, BadCert: true}, &x509.UnknownAuthorityError{}},
		{"wrong name STARTTLS", Options{WrongName: true}, &x509.HostnameError{}},
		{"wrong name implicit", Options{TLS: ImplicitTLS, WrongName: true}, &x509.HostnameError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Users = users
			s := New(t, tt.opts)
			var c *smtp.Client
			var err error
			if tt.opts.TLS == ImplicitTLS {
				c, err = smtp.DialTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
			} else if c, err = smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname)); err == nil {
				// go-smtp's client handshakes on the first command after STARTTLS.
				err = c.Noop()
			}
			if c != nil {
				c.Close()
			}
			if err == nil {
				t.Fatal("TLS handshake succeeded, want a verification error")
			}
			if !errors.As(err, tt.want) {
				t.Fatalf("error = %v, want %T", err, reflect.ValueOf(tt.want).Elem().Interface())
			}
			s.Close()
			if len(s.Messages()) != 0 || s.Sessions()[0].TLS {
				t.Errorf("after a failed handshake: %+v %+v", s.Messages(), s.Sessions())
			}
		})
	}

	// The wrong-name certificate is signed by the CA: only the name is wrong.
	s := New(t, Options{WrongName: true})
	c, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, "wrong.example"))
	if err == nil {
		err = c.Noop()
		c.Close()
	}
	if err != nil {
		t.Errorf("verifying the WrongName certificate as wrong.example: %v", err)
	}
}

func TestRecipientFault(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, Faults: []Fault{
		{Stage: Rcpt, Match: "Nobody@Example.NET", Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "user unknown"},
	}})
	c := dial(t, s)
	tr := simpleTx()
	tr.rcpts = []string{"good@example.net"}
	if err := c.Auth(tr.auth); err != nil {
		t.Fatal(err)
	}
	tr.auth = nil
	if err := c.Mail(tr.from, nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("nobody@example.net", nil)
	wantCode(t, err, 550, smtp.EnhancedCode{5, 1, 1})
	if se := (*smtp.SMTPError)(nil); errors.As(err, &se) && se.Message != "user unknown" {
		t.Errorf("reply text = %q, want user unknown", se.Message)
	}
	if err := c.Rcpt("good@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, tr.data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := s.Messages(); len(m) != 1 || !slices.Equal(m[0].Rcpts, []string{"good@example.net"}) {
		t.Fatalf("messages = %+v, want one to good@example.net", m)
	}
	wantEvents(t, s, 0, "EHLO localhost", "STARTTLS", "EHLO localhost", "AUTH PLAIN user=alice ok",
		"MAIL FROM:<sender@example.com> BODY=8BITMIME",
		"RCPT TO:<nobody@example.net> 550", "RCPT TO:<good@example.net> 250",
		"DATA", "DATAEND 250")
}

// TestFaults injects a fault at each stage and checks what the client
// sees, the last event, and that no message is recorded.
func TestFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     Fault
		wantStep  string
		wantCode  int // 0: the connection is dropped
		lastEvent string
	}{
		{"421 greeting", Fault{Stage: Connect, Code: 421, Text: "busy"}, "EHLO", 421, "CONNECT 421"},
		{"554 greeting", Fault{Stage: Connect, Code: 554, Enhanced: [3]int{5, 3, 2}}, "EHLO", 554, "CONNECT 554"},
		{"drop on connect", Fault{Stage: Connect, Drop: true}, "EHLO", 0, "CONNECT drop"},
		{"EHLO refused", Fault{Stage: Hello, Match: "CLIENT.test", Code: 421}, "EHLO", 421, "EHLO client.test 421"},
		{"EHLO dropped", Fault{Stage: Hello, Drop: true}, "EHLO", 0, "EHLO client.test drop"},
		{"AUTH temporary", Fault{Stage: Auth, Match: alice, Code: 454, Enhanced: [3]int{4, 7, 0}}, "AUTH", 454, "AUTH PLAIN user=alice 454"},
		{"AUTH dropped", Fault{Stage: Auth, Drop: true}, "AUTH", 0, "AUTH PLAIN user=alice drop"},
		{"MAIL refused", Fault{Stage: Mail, Match: "sender@example.com", Code: 451}, "MAIL", 451, "MAIL FROM:<sender@example.com> BODY=8BITMIME 451"},
		{"MAIL dropped", Fault{Stage: Mail, Drop: true}, "MAIL", 0, "MAIL FROM:<sender@example.com> BODY=8BITMIME drop"},
		{"RCPT dropped", Fault{Stage: Rcpt, Drop: true}, "RCPT rcpt@example.net", 0, "RCPT TO:<rcpt@example.net> drop"},
		{"DATA refused", Fault{Stage: Data, Code: 554, Text: "no"}, "DATAEND", 554, "DATA 554"},
		{"dropped mid-DATA", Fault{Stage: Data, Drop: true}, "DATAEND", 0, "DATA drop"},
		{"452 after the dot", Fault{Stage: DataEnd, Code: 452, Enhanced: [3]int{4, 3, 1}}, "DATAEND", 452, "DATAEND 452"},
		{"dropped after the dot", Fault{Stage: DataEnd, Drop: true}, "DATAEND", 0, "DATAEND drop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(t, Options{TLS: ImplicitTLS, Users: users, Faults: []Fault{tt.fault}})
			c, err := smtp.DialTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			step, err := "EHLO", c.Hello("client.test")
			if err == nil {
				step, err = simpleTx().run(c)
			}
			if step != tt.wantStep {
				t.Fatalf("step %q failed with %v, want %s to fail", step, err, tt.wantStep)
			}
			if tt.wantCode != 0 {
				wantCode(t, err, tt.wantCode, smtp.EnhancedCode(tt.fault.Enhanced))
			} else if se := (*smtp.SMTPError)(nil); errors.As(err, &se) {
				t.Fatalf("error = %v, want a broken connection", err)
			}
			s.Close()
			if m := s.Messages(); len(m) != 0 {
				t.Errorf("messages = %+v, want none", m)
			}
			if ev := s.Sessions()[0].Events; len(ev) == 0 || ev[len(ev)-1] != tt.lastEvent {
				t.Errorf("events = %q, want them to end with %q", ev, tt.lastEvent)
			}
		})
	}
}

func TestConnect554WaitsForQuit(t *testing.T) {
	t.Parallel()
	s := New(t, Options{TLS: NoTLS, Faults: []Fault{{Stage: Connect, Code: 554, Text: "no service"}}})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, step := range []struct{ send, want string }{
		{"", "554 no service\r\n"},
		{"EHLO client.test\r\n", "503 5.5.1 Bad sequence of commands\r\n"},
		{"QUIT\r\n", "221 2.0.0 Bye\r\n"},
	} {
		io.WriteString(conn, step.send)
		if line, err := r.ReadString('\n'); line != step.want {
			t.Fatalf("after %q: read %q, %v; want %q", step.send, line, err, step.want)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after 221: %v, want EOF", err)
	}
}

func TestFaultTimes(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, Faults: []Fault{{Stage: DataEnd, Drop: true, Times: 1}}})
	if step, err := simpleTx().run(dial(t, s)); step != "DATAEND" {
		t.Fatalf("first attempt: step %q error %v, want DATAEND to fail", step, err)
	}
	mustRun(t, dial(t, s), simpleTx())
	msgs, err := s.WaitMessages(1, 10*time.Second)
	if err != nil || len(msgs) != 1 || msgs[0].Session != 1 {
		t.Fatalf("messages = %+v, %v; want one from session 1", msgs, err)
	}
}

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, AuthRequired: true})
	c := dial(t, s)
	wantCode(t, c.Mail("sender@example.com", nil), 530, smtp.EnhancedCode{5, 7, 0})
	mustRun(t, c, simpleTx())
	if m := s.Messages(); len(m) != 1 || m[0].AuthUser != alice {
		t.Fatalf("messages = %+v, want one from alice", m)
	}
	if ev := s.Sessions()[0].Events; ev[3] != "MAIL FROM:<sender@example.com> BODY=8BITMIME 530" {
		t.Errorf("events = %q, want the 530 as the fourth", ev)
	}
}

func TestHashOnly(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, HashOnly: true})
	var b strings.Builder
	b.WriteString("Subject: big\r\n\r\n")
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "line %d of a large message, long enough to add up quickly\r\n", i)
	}
	tr := simpleTx()
	tr.data = b.String()
	mustRun(t, dial(t, s), tr)
	m := s.Messages()[0]
	if m.Data != nil || m.Size != int64(b.Len()) || m.SHA256 != sha256.Sum256([]byte(b.String())) {
		t.Errorf("message has %d data bytes, size %d, sha256 %x; want no data, size %d and the message's hash",
			len(m.Data), m.Size, m.SHA256, b.Len())
	}
}

func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, MaxMessageBytes: 1000})
	c := dial(t, s)
	if _, size := c.Extension("SIZE"); size != "1000" {
		t.Errorf("SIZE = %q, want 1000", size)
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Mail("sender@example.com", &smtp.MailOptions{Size: 2000}), 552, smtp.EnhancedCode{5, 3, 4})
	tr := simpleTx()
	tr.auth = nil
	tr.data = "Subject: x\r\n\r\n" + strings.Repeat("0123456789\r\n", 100)
	step, err := tr.run(c)
	if step != "DATAEND" {
		t.Fatalf("step %q error %v, want DATAEND to fail", step, err)
	}
	wantCode(t, err, 552, smtp.EnhancedCode{5, 3, 4})
	if len(s.Messages()) != 0 {
		t.Error("oversized message recorded")
	}
	if ev := s.Sessions()[0].Events; ev[len(ev)-1] != "DATAEND 552" {
		t.Errorf("events = %q, want DATAEND 552 last", ev)
	}
}

func TestDSNAndSMTPUTF8(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users, DSN: true, SMTPUTF8: true})
	c := dial(t, s)
	for _, ext := range []string{"DSN", "SMTPUTF8", "8BITMIME"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("%s not advertised", ext)
		}
	}
	tr := simpleTx()
	tr.from = "jörg@example.com"
	tr.mopts = &smtp.MailOptions{UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "env+1"}
	tr.ropts = &smtp.RcptOptions{
		Notify:                []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822,
		OriginalRecipient:     "rcpt@example.net",
	}
	mustRun(t, c, tr)
	m := s.Messages()[0]
	wantMail := smtp.MailOptions{Body: smtp.Body8BitMIME, UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "env+1"}
	if m.From != tr.from || !reflect.DeepEqual(m.MailOpts, wantMail) || !reflect.DeepEqual(m.RcptOpts, []smtp.RcptOptions{*tr.ropts}) {
		t.Errorf("message from %q %+v %+v; want %q %+v [%+v]", m.From, m.MailOpts, m.RcptOpts, tr.from, wantMail, *tr.ropts)
	}
	ev := s.Sessions()[0].Events
	for _, want := range []string{
		"MAIL FROM:<jörg@example.com> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=env+1",
		"RCPT TO:<rcpt@example.net> NOTIFY=FAILURE,DELAY ORCPT=RFC822;rcpt@example.net 250",
	} {
		if !slices.Contains(ev, want) {
			t.Errorf("events %q lack %q", ev, want)
		}
	}
}

func TestTwoTransactionsAndRset(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users})
	c := dial(t, s)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("first@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("dropped@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"", "third@example.com"} {
		tr := simpleTx()
		tr.auth, tr.from = nil, from
		mustRun(t, c, tr)
	}
	msgs := s.Messages()
	if len(msgs) != 2 || msgs[0].From != "" || msgs[1].From != "third@example.com" ||
		!slices.Equal(msgs[0].Rcpts, []string{"rcpt@example.net"}) || msgs[1].Session != 0 {
		t.Fatalf("messages = %+v", msgs)
	}
	wantEvents(t, s, 0, "EHLO localhost", "STARTTLS", "EHLO localhost", "AUTH PLAIN user=alice ok",
		"MAIL FROM:<first@example.com> BODY=8BITMIME", "RCPT TO:<dropped@example.net> 250", "RSET",
		"MAIL FROM:<> BODY=8BITMIME", "RCPT TO:<rcpt@example.net> 250", "DATA", "DATAEND 250",
		"MAIL FROM:<third@example.com> BODY=8BITMIME", "RCPT TO:<rcpt@example.net> 250", "DATA", "DATAEND 250")
}

func TestDisconnectIsNotQuit(t *testing.T) {
	t.Parallel()
	for _, mode := range []TLSMode{StartTLS, ImplicitTLS, NoTLS} {
		s := New(t, Options{TLS: mode})
		c := dial(t, s)
		c.Noop()
		c.Close()
		c = dial(t, s)
		c.Quit()
		s.Close()
		for i, wantQuit := range []bool{false, true} {
			ev := s.Sessions()[i].Events
			if got := slices.Contains(ev, "QUIT"); got != wantQuit {
				t.Errorf("%s session %d: events %q, want QUIT %v", mode, i, ev, wantQuit)
			}
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			tr := simpleTx()
			tr.from = fmt.Sprintf("s%d@example.com", i)
			if step, err := tr.run(c); err != nil {
				t.Errorf("client %d: %s: %v", i, step, err)
			}
			c.Quit()
		})
	}
	msgs, err := s.WaitMessages(n, 30*time.Second)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Sessions()) != n {
		t.Errorf("%d sessions, want %d", len(s.Sessions()), n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.From] = true
		if !strings.HasPrefix(s.Sessions()[m.Session].Events[0], "EHLO") {
			t.Errorf("message %q points at session %d: %q", m.From, m.Session, s.Sessions()[m.Session].Events)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct senders, want %d", len(seen), n)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Users: users})
	if _, err := s.WaitMessages(1, 20*time.Millisecond); err == nil {
		t.Error("WaitMessages on an idle server returned no error")
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		c, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		tr := simpleTx()
		for range 2 {
			step, err := tr.run(c)
			tr.auth = nil
			if err != nil {
				t.Errorf("%s: %v", step, err)
			}
		}
	}()
	m, err := s.WaitMessage(1, 10*time.Second)
	if err != nil || m.From != "sender@example.com" {
		t.Fatalf("WaitMessage(1) = %+v, %v", m, err)
	}
	<-sent
	done := make(chan error)
	go func() { _, err := s.WaitMessages(3, time.Minute); done <- err }()
	s.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("WaitMessages after Close: %v, want server closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake WaitMessages")
	}
}

// TestCloseLeavesNothingRunning is not parallel: it counts goroutines.
func TestCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(Options{Users: users, Faults: []Fault{{Stage: Connect, Code: 554, Times: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	// A connect-fault connection waiting for QUIT, a bare TCP connection,
	// an idle session and one stopped in the middle of DATA.
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	idle, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
	if err != nil {
		t.Fatal(err)
	}
	busy, err := smtp.DialStartTLS(s.Addr(), clientTLS(t, s, DefaultHostname))
	if err != nil {
		t.Fatal(err)
	}
	tr := simpleTx()
	if err := busy.Auth(tr.auth); err != nil {
		t.Fatal(err)
	}
	busy.Mail(tr.from, nil)
	busy.Rcpt(tr.rcpts[0], nil)
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: never finished\r\n")
	waitFor(t, func() bool { l := s.Sessions(); return len(l) == 4 && slices.Contains(l[3].Events, "DATA") })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := idle.Noop(); err == nil {
		t.Error("idle client still served after Close")
	}
	if err := w.Close(); err == nil {
		t.Error("message finished after Close")
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("reading a connection after Close: %v, want EOF", err)
		}
		c.Close()
	}
	idle.Close()
	busy.Close()
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("server still accepts connections after Close")
	}
	if n := len(s.Sessions()); n != 4 || len(s.Messages()) != 0 {
		t.Errorf("%d sessions and %d messages after Close, want 4 and 0", n, len(s.Messages()))
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("condition not met within 10s; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"unknown TLS mode", Options{TLS: 7}, "unknown TLS mode"},
		{"NoStartTLS with implicit TLS", Options{TLS: ImplicitTLS, NoStartTLS: true}, "NoStartTLS"},
		{"BadCert without TLS", Options{TLS: NoTLS, BadCert: true}, "BadCert"},
		{"AuthRequired without users", Options{AuthRequired: true}, "AuthRequired"},
		{"LOGIN without users", Options{Tokens: map[string]string{"a": "t"}, Mechanisms: []string{"LOGIN"}}, `"LOGIN" needs Users`},
		{"unknown mechanism", Options{Users: users, Mechanisms: []string{"CRAM-MD5"}}, "CRAM-MD5"},
		{"fault without stage", Options{Faults: []Fault{{Code: 550}}}, "unknown stage"},
		{"fault without code", Options{Faults: []Fault{{Stage: Rcpt}}}, "code 0"},
		{"fault with 2xx", Options{Faults: []Fault{{Stage: Rcpt, Code: 250}}}, "code 250"},
		{"Match on DataEnd", Options{Faults: []Fault{{Stage: DataEnd, Code: 554, Match: "x"}}}, "Match"},
		{"line break in text", Options{Faults: []Fault{{Stage: Mail, Code: 554, Text: "a\r\n250 ok"}}}, "line break"},
	}
	for _, tt := range tests {
		s, err := Start(tt.opts)
		if err == nil {
			s.Close()
			t.Errorf("%s: Start succeeded, want an error containing %q", tt.name, tt.want)
		} else if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "smarthost: ") {
			t.Errorf("%s: error %q, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestWriteConfig(t *testing.T) {
	t.Parallel()
	type config struct {
		Hostname  string            `toml:"hostname"`
		Domain    string            `toml:"domain"`
		From      string            `toml:"from"`
		Aliases   map[string]string `toml:"aliases"`
		Smarthost struct {
			Host          string `toml:"host"`
			Port          int    `toml:"port"`
			TLS           string `toml:"tls"`
			TLSServerName string `toml:"tls_server_name"`
			CAFile        string `toml:"ca_file"`
			Username      string `toml:"username"`
			Password      string `toml:"password"`
			Auth          string `toml:"auth"`
			Insecure      bool   `toml:"insecure_plaintext_auth"`
		} `toml:"smarthost"`
		Queue struct {
			Dir string `toml:"dir"`
		} `toml:"queue"`
	}
	dir := t.TempDir()
	read := func(t *testing.T, path string) config {
		t.Helper()
		var c config
		md, err := toml.DecodeFile(path, &c)
		if err != nil {
			t.Fatal(err)
		}
		if u := md.Undecoded(); len(u) != 0 {
			t.Errorf("unexpected keys %v", u)
		}
		return c
	}

	t.Run("STARTTLS with extra", func(t *testing.T) {
		s := New(t, Options{Users: users})
		path := filepath.Join(dir, "a.conf")
		extra := "hostname = \"app01.example.com\"\nfrom = \"cron@example.com\"\n[aliases]\nroot = \"ops@example.com\""
		if err := s.WriteConfig(path, extra); err != nil {
			t.Fatal(err)
		}
		c := read(t, path)
		if c.Hostname != "app01.example.com" || c.Domain != "relaymail.test" || c.From != "cron@example.com" || c.Aliases["root"] != "ops@example.com" {
			t.Errorf("top level = %q %q %q %v", c.Hostname, c.Domain, c.From, c.Aliases)
		}
		sh := c.Smarthost
		if sh.Host != "127.0.0.1" || sh.Port != s.Port() || sh.TLS != "starttls" || sh.TLSServerName != "smarthost.test" ||
			sh.CAFile != path+".ca.pem" || sh.Username != alice || sh.Password != alicePW || sh.Auth != "" || sh.Insecure {
			t.Errorf("[smarthost] = %+v", sh)
		}
		if c.Queue.Dir != path+".spool" {
			t.Errorf("[queue] dir = %q", c.Queue.Dir)
		}
		ca, err := os.ReadFile(sh.CAFile)
		if err != nil || !bytes.Equal(ca, s.CAPEM()) {
			t.Errorf("CA file: %v", err)
		}
		for file, mode := range map[string]os.FileMode{path: 0o600, sh.CAFile: 0o644} {
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %v, %v; want %v", file, fi.Mode().Perm(), err, mode)
			}
		}
		// The config and CA must let a client in.
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cl, err := smtp.DialStartTLS(net.JoinHostPort(sh.Host, fmt.Sprint(sh.Port)), &tls.Config{RootCAs: pool, ServerName: sh.TLSServerName})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Auth(sasl.NewPlainClient("", sh.Username, sh.Password)); err != nil {
			t.Errorf("AUTH with the config's login: %v", err)
		}
	})

	t.Run("no TLS", func(t *testing.T) {
		s := New(t, Options{TLS: NoTLS, Users: map[string]string{"u\"q": "p\\w\x01"}})
		path := filepath.Join(dir, "b.conf")
		if err := s.WriteConfig(path, ""); err != nil {
			t.Fatal(err)
		}
		sh := read(t, path).Smarthost
		if sh.TLS != "none" || sh.CAFile != "" || sh.TLSServerName != "" || !sh.Insecure || sh.Username != "u\"q" || sh.Password != "p\\w\x01" {
			t.Errorf("[smarthost] = %+v", sh)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		s := New(t, Options{TLS: ImplicitTLS, Tokens: map[string]string{alice: token}, Mechanisms: []string{"OAUTHBEARER"}})
		path := filepath.Join(dir, "c.conf")
		if err := s.WriteConfig(path, ""); err != nil {
			t.Fatal(err)
		}
		sh := read(t, path).Smarthost
		if sh.TLS != "tls" || sh.Auth != "oauthbearer" || sh.Username != alice || sh.Password != token {
			t.Errorf("[smarthost] = %+v", sh)
		}
	})

	t.Run("no AUTH", func(t *testing.T) {
		s := New(t, Options{})
		path := filepath.Join(dir, "d.conf")
		if err := s.WriteConfig(path, ""); err != nil {
			t.Fatal(err)
		}
		if sh := read(t, path).Smarthost; sh.Username != "" || sh.Password != "" {
			t.Errorf("[smarthost] = %+v, want no login", sh)
		}
	})

	t.Run("unwritable", func(t *testing.T) {
		s := New(t, Options{})
		err := s.WriteConfig(filepath.Join(dir, "missing", "e.conf"), "")
		if err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("error = %v, want one naming the path", err)
		}
	})
}

// TestSASLServers drives the mechanisms directly with what clients send.
func TestSASLServers(t *testing.T) {
	t.Parallel()
	type got struct {
		user, secret string
		malformed    bool
	}
	tests := []struct {
		name      string
		mech      func(checkFunc) sasl.Server
		responses []string // nil entry: no initial response
		challenge []string // expected challenges, one per response that is not the last
		want      got
	}{
		{"PLAIN initial response", plain, []string{"\x00u\x00p"}, nil, got{"u", "p", false}},
		{"PLAIN after challenge", plain, []string{"\xff", "\x00u\x00p"}, []string{""}, got{"u", "p", false}},
		{"PLAIN two fields", plain, []string{"u\x00p"}, nil, got{malformed: true}},
		{"PLAIN empty user", plain, []string{"\x00\x00p"}, nil, got{malformed: true}},
		{"LOGIN prompts", login, []string{"\xff", "u", "p"}, []string{"Username:", "Password:"}, got{"u", "p", false}},
		{"LOGIN initial user", login, []string{"u", "p"}, []string{"Password:"}, got{"u", "p", false}},
		{"XOAUTH2", xoauth2, []string{"user=u\x01auth=Bearer t\x01\x01"}, nil, got{"u", "t", false}},
		{"XOAUTH2 lower-case scheme", xoauth2, []string{"user=u\x01auth=bearer t\x01\x01"}, nil, got{"u", "t", false}},
		{"XOAUTH2 no terminator", xoauth2, []string{"user=u\x01auth=Bearer t"}, nil, got{malformed: true}},
		{"XOAUTH2 no token", xoauth2, []string{"user=u\x01\x01"}, nil, got{malformed: true}},
		{"OAUTHBEARER", bearer, []string{"n,a=u=2Cx=3D,\x01host=h\x01port=587\x01auth=Bearer t\x01\x01"}, nil, got{"u,x=", "t", false}},
		{"OAUTHBEARER no gs2 header", bearer, []string{"\x01auth=Bearer t\x01\x01"}, nil, got{malformed: true}},
		{"OAUTHBEARER no token", bearer, []string{"n,,\x01host=h\x01\x01"}, nil, got{malformed: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g got
			calls := 0
			srv := tt.mech(func(user, secret string, malformed bool) error {
				calls++
				g = got{user, secret, malformed}
				return nil
			})
			for i, r := range tt.responses {
				resp := []byte(r)
				if r == "\xff" {
					resp = nil // stands for "no initial response"
				}
				ch, done, err := srv.Next(resp)
				if i < len(tt.responses)-1 {
					if done || err != nil || string(ch) != tt.challenge[i] {
						t.Fatalf("step %d: challenge %q done %v err %v, want challenge %q", i, ch, done, err, tt.challenge[i])
					}
				} else if !done || err != nil {
					t.Fatalf("last step: done %v err %v", done, err)
				}
			}
			if calls != 1 || g != tt.want {
				t.Errorf("check called %d times with %+v, want once with %+v", calls, g, tt.want)
			}
			if _, _, err := srv.Next([]byte("more")); err == nil {
				t.Error("a response after the end was accepted")
			}
		})
	}
}

func plain(c checkFunc) sasl.Server   { return &plainServer{check: c} }
func login(c checkFunc) sasl.Server   { return &loginServer{check: c} }
func xoauth2(c checkFunc) sasl.Server { return &xoauth2Server{check: c} }
func bearer(c checkFunc) sasl.Server  { return &oauthBearerServer{check: c} }

// TestBDAT covers CHUNKING, which go-smtp always offers and runs through a
// goroutine of its own.
func TestBDAT(t *testing.T) {
	t.Parallel()
	s := New(t, Options{TLS: NoTLS})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, code) {
				t.Fatalf("read %q, %v; want %s", line, err, code)
			}
			if line[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	for _, step := range []struct{ send, code string }{
		{"EHLO client.test\r\n", "250"},
		{"MAIL FROM:<a@example.com>\r\n", "250"},
		{"RCPT TO:<b@example.net>\r\n", "250"},
		{"BDAT 12\r\nSubject: x\r\n", "250"},
		{"BDAT 6 LAST\r\n\r\nbody", "250"},
		{"QUIT\r\n", "221"},
	} {
		io.WriteString(conn, step.send)
		expect(step.code)
	}
	s.Close()
	if m := s.Messages(); len(m) != 1 || string(m[0].Data) != "Subject: x\r\n\r\nbody" {
		t.Fatalf("messages = %+v", m)
	}
	wantEvents(t, s, 0, "EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.net> 250", "DATA", "DATAEND 250", "QUIT")
}
