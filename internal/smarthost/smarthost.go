// Package smarthost is the SMTP server that the unit tests, the end-to-end
// tests, make demo and make bench send mail to. It serves go-smtp on
// 127.0.0.1 with a CA generated for the run, over STARTTLS, implicit TLS or
// plaintext, offers AUTH PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER, injects
// faults at any stage of the dialogue, and records every connection and
// every accepted message under one mutex so that tests can assert the exact
// envelope and bytes.
//
// # Recording rules
//
//   - A SessionLog is added for every accepted TCP connection, before the
//     greeting, so a test can tell that a client never connected.
//   - A Message is recorded only when the server is about to answer the final
//     dot with 250. A message refused or dropped at any stage leaves no
//     Message behind.
//   - Events are appended before the reply they describe is sent, so once a
//     client has seen a reply the matching event is visible. QUIT is the one
//     exception: go-smtp ends the session just after its 221 reply, so call
//     Close (it is idempotent) before looking for QUIT.
//   - Passwords and tokens are never recorded or logged.
//
// # Limits
//
// Every read and write has a 60 s timeout (during DATA it is renewed on
// every read, so a 50 MB message only needs to keep moving), a transaction
// takes at most 1000 recipients, and lines longer than 2000 bytes end the
// connection (go-smtp's default). Close stops the listener, closes every
// connection and waits for every goroutine the server started.
package smarthost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Limits applied to every connection.
const (
	ioTimeout     = 60 * time.Second
	maxRecipients = 1000
	// closeTimeout bounds how long Close waits for session goroutines once
	// their connections are closed; they normally end at once.
	closeTimeout = 30 * time.Second
)

// DefaultHostname is the greeting domain when Options.Hostname is empty. The
// server certificate always covers it.
const DefaultHostname = "smarthost.test"

// TLSMode says how clients reach TLS.
type TLSMode int

const (
	// StartTLS serves plaintext and offers STARTTLS (RFC 3207), as port
	// 587 does.
	StartTLS TLSMode = iota
	// ImplicitTLS starts TLS on connect (RFC 8314), as port 465 does.
	ImplicitTLS
	// NoTLS serves plaintext only; AUTH is then allowed without TLS.
	NoTLS
)

// String returns the spelling relaymail's config uses for the mode:
// "starttls", "tls" or "none".
func (m TLSMode) String() string {
	switch m {
	case StartTLS:
		return "starttls"
	case ImplicitTLS:
		return "tls"
	case NoTLS:
		return "none"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// Stage is a point of the SMTP dialogue where a Fault can strike.
type Stage int

// Stages start at 1 so that a Fault without a Stage is rejected by Start.
const (
	Connect Stage = iota + 1 // the greeting
	Hello                    // reply to EHLO or HELO
	Auth                     // reply to AUTH, once the credentials are read
	Mail                     // reply to MAIL FROM
	Rcpt                     // reply to RCPT TO
	Data                     // the DATA command (see Fault for what go-smtp allows)
	DataEnd                  // reply after the final dot
)

var stageNames = map[Stage]string{
	Connect: "Connect", Hello: "Hello", Auth: "Auth", Mail: "Mail",
	Rcpt: "Rcpt", Data: "Data", DataEnd: "DataEnd",
}

func (s Stage) String() string {
	if n, ok := stageNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Fault makes the server misbehave at one point of the dialogue. The first
// fault in Options.Faults that matches an event applies; the others are not
// consulted for that event.
//
// What each stage does:
//
//   - Connect: the greeting is Code and Text instead of 220 (with implicit
//     TLS, after the handshake). After a 5xx greeting the server waits for
//     QUIT and answers other commands with 503, as RFC 5321 3.1 says; after
//     a 4xx greeting it closes the connection. Drop closes the connection
//     without a greeting.
//   - Hello: Match is the EHLO/HELO name. The EHLO after STARTTLS is an
//     event of its own, so it counts against Times too.
//   - Auth: applied once the client has sent its credentials, before they
//     are checked; Match is the user name.
//   - Mail: Match is the sender ("" matches any, including <>).
//   - Rcpt: Match is the recipient.
//   - Data: go-smtp writes "354" before the backend hears of DATA, so the
//     DATA command itself cannot be refused. With Drop the connection is
//     closed right after the 354, before any data is read ("drop mid-DATA").
//     Without Drop the data is read and discarded and Code is the reply
//     after the final dot, which is what a client sees from DataEnd too.
//   - DataEnd: Drop reads the whole message, then closes the connection
//     instead of replying: the client cannot tell whether the message was
//     delivered. Nothing is recorded.
//
// Matches are case-insensitive and compare the whole address or name.
type Fault struct {
	Stage    Stage
	Match    string // see above; only for Hello, Auth, Mail and Rcpt
	Code     int    // 4xx or 5xx; ignored with Drop
	Enhanced [3]int // optional enhanced status code (RFC 3463); zero: X.0.0
	Text     string // reply text; default "Injected <stage> fault"
	Drop     bool   // close the TCP connection instead of replying
	Times    int    // apply to the first Times matching events only; 0 = always
}

// Throttle, with Messages > 0, accepts at most Messages MAIL commands in
// any Window (all connections together); the next MAIL gets Code (default
// 451), Enhanced (default 4.7.0) and Text (default "Too many messages,
// slow down"). A throttled MAIL does not count against the window.
// With Code 421 the server closes the connection after the reply, as
// RFC 5321 3.8 says.
type Throttle struct {
	Messages int
	Window   time.Duration
	Code     int
	Enhanced [3]int
	Text     string
}

// Options configures a Server. The zero value is a STARTTLS server without
// AUTH that accepts every message.
type Options struct {
	TLS TLSMode
	// NoStartTLS, with StartTLS, does not offer STARTTLS (and so, without
	// TLS, no AUTH either): a relay a client must refuse to use.
	NoStartTLS bool
	// BadCert serves a certificate that the CA returned by CAPEM did not
	// sign (a client trusting that CA fails with x509.UnknownAuthorityError).
	BadCert bool
	// WrongName serves a certificate signed by the CA but only for the name
	// "wrong.example" (x509.HostnameError).
	WrongName bool
	// MaxTLSVersion caps the TLS version the server speaks (a
	// tls.VersionTLS constant); 0 is crypto/tls's newest.
	MaxTLSVersion uint16
	// ClientCAPEM, when set, makes the server require a client certificate
	// signed by this CA (see ClientCertificate); the handshake fails
	// without one. SessionLog.ClientCert names the one it got.
	ClientCAPEM []byte

	// Users maps user names to passwords for AUTH PLAIN and LOGIN; empty
	// means neither is offered.
	Users map[string]string
	// Tokens maps user names to bearer tokens for XOAUTH2 and OAUTHBEARER;
	// empty means neither is offered.
	Tokens map[string]string
	// AuthRequired refuses MAIL with 530 5.7.0 until the client has
	// authenticated. It needs Users or Tokens.
	AuthRequired bool
	// Mechanisms restricts the advertised SASL mechanisms, e.g. {"LOGIN"};
	// nil means all that Users and Tokens make possible, an empty slice none.
	// Naming a mechanism that Users or Tokens cannot serve is an error.
	Mechanisms []string
	// DSN advertises DSN (RFC 3461) and accepts RET, ENVID, NOTIFY and ORCPT.
	DSN bool
	// SMTPUTF8 advertises SMTPUTF8 (RFC 6531) and accepts MAIL ... SMTPUTF8.
	SMTPUTF8 bool
	// EightBitMIME has no effect: go-smtp always advertises 8BITMIME and
	// accepts BODY=7BIT and BODY=8BITMIME, so a server without 8BITMIME
	// cannot be built on it. The field documents the caller's intent.
	EightBitMIME bool
	// MaxMessageBytes advertises "SIZE n", refuses MAIL with a larger SIZE=
	// and refuses a longer message after the final dot, all with 552 5.3.4.
	// 0 advertises SIZE without a limit.
	MaxMessageBytes int64
	// HashOnly stores only the size and SHA-256 of each message (Data stays
	// nil), for 50 MB messages and benchmarks.
	HashOnly bool

	// DataDelay is how long the server waits after the final dot before
	// it replies: a slow relay, for concurrency tests and benchmarks.
	DataDelay time.Duration

	Faults []Fault
	// Throttle makes the server refuse a sender that goes too fast, as
	// SES, Gmail and Microsoft 365 do.
	Throttle Throttle
	// Hostname is the greeting domain; default DefaultHostname.
	Hostname string
	// Listener, if set, is where the server accepts connections instead
	// of a new listener on 127.0.0.1:0: make bench passes one reached
	// through a delaying network path. Its Addr must be a *net.TCPAddr
	// (Addr, Host and Port report it). Start takes it over, and Close
	// closes it; if Start fails, the caller still owns it. The server's
	// certificate covers only 127.0.0.1, localhost and DefaultHostname,
	// so a client reaching another address verifies DefaultHostname.
	Listener net.Listener
	// Logf, if set, receives one line per recorded event and every error
	// go-smtp reports. It is called with the server's lock held, so it must
	// not call the Server's methods, and never after Close returns.
	Logf func(format string, args ...any)
}

// Message is one message the server accepted.
type Message struct {
	From     string             // MAIL FROM address; "" for <>
	MailOpts smtp.MailOptions   // BODY, SIZE, SMTPUTF8, RET, ENVID, AUTH as received
	Rcpts    []string           // recipients accepted with 250, in order
	RcptOpts []smtp.RcptOptions // NOTIFY, ORCPT per accepted recipient
	// Data is the message after dot-unstuffing, with the line endings it
	// had on the wire (CRLF from a correct client); nil with HashOnly.
	Data     []byte
	Size     int64
	SHA256   [32]byte
	AuthUser string // "" if not authenticated
	AuthMech string // "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER" or ""
	TLS      bool   // the message arrived over TLS
	Helo     string // EHLO/HELO name
	Session  int    // index into Sessions()
}

// SessionLog is what happened on one connection.
type SessionLog struct {
	Helo string // the last EHLO/HELO name
	TLS  bool   // a TLS handshake completed on the connection
	// ClientCert is the common name of the client certificate verified
	// in the handshake, or "".
	ClientCert string
	// Events, in order. Where a reply code is shown, it is the server's
	// reply; "drop" means the server closed the connection instead:
	//
	//	CONNECT 421 | CONNECT drop           only with a Connect fault
	//	STARTTLS                             the client started a TLS handshake after STARTTLS
	//	TLS                                  the same on an implicit TLS connection
	//	EHLO name                            (also for HELO: go-smtp does not tell which)
	//	EHLO name 421 | EHLO name drop       with a Hello fault
	//	AUTH PLAIN user=alice ok | failed | 454 | drop
	//	AUTH LOGIN malformed                 undecodable SASL response
	//	MAIL FROM:<a@b> BODY=8BITMIME        accepted; refused ones end in the code
	//	RCPT TO:<c@d> NOTIFY=FAILURE 250     always with the code
	//	DATA | DATA 554 | DATA drop          after go-smtp's 354
	//	DATAEND 250 | DATAEND 552 | DATAEND drop | DATAEND aborted
	//	RSET                                 an accepted MAIL was abandoned (RSET, or EHLO again)
	//	QUIT                                 the client said QUIT (see the package doc)
	//
	// MAIL and RCPT parameters are shown in a fixed order, not as sent.
	// Commands that go-smtp refuses by itself (bad syntax, AUTH before TLS,
	// SIZE too large at MAIL, too many recipients) leave no event.
	Events []string
}

// Server is a running smarthost. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	mechs []string // advertised SASL mechanisms
	host  string
	port  int
	caPEM []byte
	cert  *x509.Certificate // the server's
	tls   *tls.Config       // nil with NoTLS
	raw   net.Listener
	srv   *smtp.Server

	serveDone chan struct{} // closed when srv.Serve returns
	closing   chan struct{} // closed when Close starts
	closeOnce sync.Once
	closeErr  error
	quiet     atomic.Bool // set once Close is done: Logf is no longer called

	// workers counts connect-fault connections and Session.Data calls,
	// which go-smtp's Shutdown does not wait for (BDAT runs Data in a
	// goroutine of its own). Add only under mu while !closed.
	workers sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	conns     map[*trackedConn]struct{}
	open      int // connections open now (see trackedConn.uncount)
	maxOpen   int // the most connections open at once
	sessions  []SessionLog
	messages  []Message
	faultHits []int
	arrived   chan struct{} // closed and replaced when a message is recorded
	mails     []time.Time   // when each MAIL the throttle counted came
	throttled int           // MAIL commands the throttle refused
}

// Start listens on 127.0.0.1 on a free port, or on Options.Listener, and
// serves until Close. It generates a fresh CA and a server certificate for
// 127.0.0.1, localhost and smarthost.test (ECDSA P-256, valid from an hour
// ago for a day). It returns an error if opts is inconsistent or the port
// cannot be opened; nothing is left running then.
func Start(opts Options) (*Server, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("smarthost: %w", err)
	}
	opts = opts.clone()
	if opts.Hostname == "" {
		opts.Hostname = DefaultHostname
	}
	s := &Server{
		opts:      opts,
		mechs:     opts.mechanisms(),
		serveDone: make(chan struct{}),
		closing:   make(chan struct{}),
		conns:     make(map[*trackedConn]struct{}),
		faultHits: make([]int, len(opts.Faults)),
		arrived:   make(chan struct{}),
	}

	c, err := newCerts(opts.BadCert, opts.WrongName, time.Now())
	if err != nil {
		return nil, fmt.Errorf("smarthost: generate certificates: %v", err)
	}
	s.caPEM = c.caPEM
	if s.cert, err = x509.ParseCertificate(c.server.Certificate[0]); err != nil {
		return nil, fmt.Errorf("smarthost: %v", err)
	}
	if opts.TLS != NoTLS {
		s.tls = &tls.Config{
			Certificates: []tls.Certificate{c.server},
			MinVersion:   tls.VersionTLS12,
			MaxVersion:   opts.MaxTLSVersion,
			GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
				s.clientHello(hi.Conn)
				return nil, nil
			},
		}
		if opts.ClientCAPEM != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(opts.ClientCAPEM) {
				return nil, fmt.Errorf("smarthost: ClientCAPEM holds no certificate")
			}
			s.tls.ClientCAs = pool
			s.tls.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}

	raw := opts.Listener
	if raw == nil {
		if raw, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("smarthost: listen: %v", err)
		}
	}
	addr, ok := raw.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("smarthost: Listener address %s is not TCP", raw.Addr())
	}
	s.raw = raw
	s.host, s.port = addr.IP.String(), addr.Port

	srv := smtp.NewServer(backend{s})
	srv.Domain = opts.Hostname
	srv.MaxRecipients = maxRecipients
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.ReadTimeout = ioTimeout
	srv.WriteTimeout = ioTimeout
	srv.EnableDSN = opts.DSN
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.ErrorLog = errorLog{s}
	var ln net.Listener = &listener{Listener: raw, s: s}
	switch opts.TLS {
	case StartTLS:
		if !opts.NoStartTLS {
			srv.TLSConfig = s.tls
		}
	case ImplicitTLS:
		ln = tls.NewListener(ln, s.tls)
	case NoTLS:
		srv.AllowInsecureAuth = true
	}
	s.srv = srv

	go func() {
		defer close(s.serveDone)
		// Serve returns once the listener is closed, by Close.
		srv.Serve(ln)
	}()
	return s, nil
}

// New starts a server for a test: it calls t.Fatal if Start fails and
// closes the server in t.Cleanup, reporting a failed Close with t.Error.
// Unless opts.Logf is set, the server logs with t.Logf, which shows only
// for failed tests and with -v.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Addr returns "127.0.0.1:port", or Options.Listener's address.
func (s *Server) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// Host returns "127.0.0.1", or Options.Listener's IP address.
func (s *Server) Host() string { return s.host }

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.port }

// TLSMode returns the server's TLS mode.
func (s *Server) TLSMode() TLSMode { return s.opts.TLS }

// CAPEM returns the PEM of the CA a client should trust. With BadCert the
// server's certificate is not signed by it.
func (s *Server) CAPEM() []byte { return slices.Clone(s.caPEM) }

// Certificate returns the certificate the server presents.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// Messages returns copies of the accepted messages, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = m.clone()
	}
	return out
}

// WaitMessages waits until at least n messages have arrived or timeout has
// passed, and returns copies of all messages that arrived (possibly more
// than n). It returns an error, with the messages so far, on timeout or if
// the server is closed first.
func (s *Server) WaitMessages(n int, timeout time.Duration) ([]Message, error) {
	if err := s.wait(n, timeout); err != nil {
		return s.Messages(), err
	}
	return s.Messages(), nil
}

// WaitMessage waits for the message with index i (0 for the first) and
// returns a copy of it. Unlike WaitMessages it copies one message, so a
// caller printing messages as they arrive stays cheap when thousands do.
// It returns an error on timeout or if the server is closed first.
func (s *Server) WaitMessage(i int, timeout time.Duration) (Message, error) {
	if i < 0 {
		return Message{}, fmt.Errorf("smarthost: no message %d", i)
	}
	if err := s.wait(i+1, timeout); err != nil {
		return Message{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages[i].clone(), nil
}

func (s *Server) wait(n int, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, arrived := len(s.messages), s.arrived
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-s.closing:
			s.mu.Lock()
			got = len(s.messages)
			s.mu.Unlock()
			if got >= n {
				return nil
			}
			return fmt.Errorf("smarthost: server closed after %d of %d messages", got, n)
		case <-timer.C:
			return fmt.Errorf("smarthost: %d of %d messages arrived within %v", got, n, timeout)
		}
	}
}

// MaxConcurrent returns the largest number of connections that were open
// at once, as the server saw them: a connection counts from its accept
// until QUIT is answered or, without QUIT, until the server closes it.
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxOpen
}

// Sessions returns copies of the logs of all connections so far, in the
// order they were accepted, including those that carried no message.
func (s *Server) Sessions() []SessionLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionLog, len(s.sessions))
	for i, l := range s.sessions {
		out[i] = l
		out[i].Events = slices.Clone(l.Events)
	}
	return out
}

// Close stops the listener, closes every open connection and waits for the
// goroutines serving them. Messages and Sessions stay readable. Close is
// idempotent; later calls return the first call's result. It returns an
// error only if sessions did not end within 30 s of their connections being
// closed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*trackedConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		close(s.closing)

		s.raw.Close()
		for _, c := range conns {
			c.Close()
		}
		// Serve adds each connection to go-smtp's WaitGroup before it
		// accepts the next one, so once Serve has returned, Shutdown
		// waits for every session goroutine.
		<-s.serveDone
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := s.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			s.closeErr = fmt.Errorf("smarthost: sessions still running %v after close", closeTimeout)
		}
		s.workers.Wait()
		s.quiet.Store(true)
	})
	return s.closeErr
}

// logf calls Options.Logf unless Close has finished.
func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil && !s.quiet.Load() {
		s.opts.Logf(format, args...)
	}
}

// event appends ev to session id's log. The caller holds s.mu.
func (s *Server) event(id int, ev string) {
	s.sessions[id].Events = append(s.sessions[id].Events, ev)
	s.logf("smarthost: session %d: %s", id, ev)
}

// fault returns the fault that applies to an event at stage for match, and
// counts it against its Times. The caller holds s.mu.
func (s *Server) fault(stage Stage, match string) *Fault {
	for i := range s.opts.Faults {
		f := &s.opts.Faults[i]
		if f.Stage != stage || (f.Match != "" && !strings.EqualFold(f.Match, match)) {
			continue
		}
		if f.Times > 0 && s.faultHits[i] >= f.Times {
			continue
		}
		s.faultHits[i]++
		return f
	}
	return nil
}

// throttle counts a MAIL against Options.Throttle and returns its refusal
// when the window is full. Under mu.
func (s *Server) throttle() *smtp.SMTPError {
	t := s.opts.Throttle
	if t.Messages <= 0 {
		return nil
	}
	now := time.Now()
	for len(s.mails) > 0 && now.Sub(s.mails[0]) >= t.Window {
		s.mails = s.mails[1:]
	}
	if len(s.mails) < t.Messages {
		s.mails = append(s.mails, now)
		return nil
	}
	s.throttled++
	code, enh, text := t.Code, t.Enhanced, t.Text
	if code == 0 {
		code = 451
	}
	if enh == [3]int{} {
		enh = [3]int{4, 7, 0}
	}
	if text == "" {
		text = "Too many messages, slow down"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}

// Throttled returns how many MAIL commands Options.Throttle refused.
func (s *Server) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// reply returns the SMTP error a non-Drop fault answers with.
func (f *Fault) reply() *smtp.SMTPError {
	text := f.Text
	if text == "" {
		text = "Injected " + f.Stage.String() + " fault"
	}
	return &smtp.SMTPError{Code: f.Code, EnhancedCode: smtp.EnhancedCode(f.Enhanced), Message: text}
}

// outcome is how a fault shows in an event: its code, or "drop".
func (f *Fault) outcome() string {
	if f.Drop {
		return "drop"
	}
	return fmt.Sprint(f.Code)
}

// record stores a finished message and wakes waiters. The caller holds s.mu.
func (s *Server) record(m Message) {
	s.messages = append(s.messages, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// errorLog passes go-smtp's internal errors (failed handshakes, broken
// connections) to Logf instead of stderr.
type errorLog struct{ s *Server }

func (l errorLog) Printf(format string, args ...any) {
	l.s.logf("smarthost: go-smtp: "+format, args...)
}
func (l errorLog) Println(args ...any) {
	l.s.logf("smarthost: go-smtp: %s", strings.TrimSuffix(fmt.Sprintln(args...), "\n"))
}

var mechanismNames = []string{"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}

// check reports the first inconsistency in o.
func (o *Options) check() error {
	if o.TLS < StartTLS || o.TLS > NoTLS {
		return fmt.Errorf("unknown TLS mode %d", int(o.TLS))
	}
	if o.NoStartTLS && o.TLS != StartTLS {
		return fmt.Errorf("NoStartTLS needs TLS mode StartTLS, not %s", o.TLS)
	}
	if (o.BadCert || o.WrongName) && (o.TLS == NoTLS || o.NoStartTLS) {
		return errors.New("BadCert and WrongName need a TLS mode that serves a certificate")
	}
	if o.AuthRequired && len(o.Users) == 0 && len(o.Tokens) == 0 {
		return errors.New("AuthRequired needs Users or Tokens")
	}
	for _, m := range o.Mechanisms {
		switch strings.ToUpper(m) {
		case "PLAIN", "LOGIN":
			if len(o.Users) == 0 {
				return fmt.Errorf("mechanism %q needs Users", m)
			}
		case "XOAUTH2", "OAUTHBEARER":
			if len(o.Tokens) == 0 {
				return fmt.Errorf("mechanism %q needs Tokens", m)
			}
		default:
			return fmt.Errorf("unknown mechanism %q; known: %s", m, strings.Join(mechanismNames, ", "))
		}
	}
	if o.MaxMessageBytes < 0 {
		return fmt.Errorf("MaxMessageBytes %d is negative", o.MaxMessageBytes)
	}
	for i, f := range o.Faults {
		if _, ok := stageNames[f.Stage]; !ok {
			return fmt.Errorf("fault %d: unknown stage %d", i, int(f.Stage))
		}
		if !f.Drop && (f.Code < 400 || f.Code > 599) {
			return fmt.Errorf("fault %d: code %d is not 4xx or 5xx (or set Drop)", i, f.Code)
		}
		if f.Match != "" && f.Stage != Hello && f.Stage != Auth && f.Stage != Mail && f.Stage != Rcpt {
			return fmt.Errorf("fault %d: Match is only for Hello, Auth, Mail and Rcpt, not %s", i, f.Stage)
		}
		if f.Times < 0 {
			return fmt.Errorf("fault %d: Times %d is negative", i, f.Times)
		}
		if strings.ContainsAny(f.Text, "\r\n") {
			return fmt.Errorf("fault %d: Text contains a line break", i)
		}
	}
	return nil
}

// clone copies the maps and slices of o so that the caller may change them.
func (o Options) clone() Options {
	o.Users = cloneMap(o.Users)
	o.Tokens = cloneMap(o.Tokens)
	if o.Mechanisms != nil {
		o.Mechanisms = slices.Clone(o.Mechanisms)
	}
	o.Faults = slices.Clone(o.Faults)
	return o
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// mechanisms lists what AUTH offers, in a fixed order.
func (o *Options) mechanisms() []string {
	var out []string
	for _, m := range mechanismNames {
		usable := len(o.Users) > 0
		if m == "XOAUTH2" || m == "OAUTHBEARER" {
			usable = len(o.Tokens) > 0
		}
		wanted := o.Mechanisms == nil || slices.ContainsFunc(o.Mechanisms, func(w string) bool { return strings.EqualFold(w, m) })
		if usable && wanted {
			out = append(out, m)
		}
	}
	return out
}

// clone deep-copies m so that callers cannot reach the server's state.
func (m Message) clone() Message {
	m.Rcpts = slices.Clone(m.Rcpts)
	m.Data = slices.Clone(m.Data)
	m.MailOpts = cloneMailOptions(m.MailOpts)
	if m.RcptOpts != nil {
		opts := make([]smtp.RcptOptions, len(m.RcptOpts))
		for i, o := range m.RcptOpts {
			opts[i] = cloneRcptOptions(o)
		}
		m.RcptOpts = opts
	}
	return m
}

func cloneMailOptions(o smtp.MailOptions) smtp.MailOptions {
	if o.Auth != nil {
		a := *o.Auth
		o.Auth = &a
	}
	return o
}

func cloneRcptOptions(o smtp.RcptOptions) smtp.RcptOptions {
	o.Notify = slices.Clone(o.Notify)
	if o.DeliverBy != nil {
		d := *o.DeliverBy
		o.DeliverBy = &d
	}
	if o.MTPriority != nil {
		p := *o.MTPriority
		o.MTPriority = &p
	}
	return o
}
