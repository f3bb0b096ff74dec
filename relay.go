package main

// relay.go owns one smarthost session: dial, STARTTLS or implicit TLS with
// certificate verification, AUTH, then MAIL, RCPT and DATA, giving one result
// per recipient. It knows nothing of files or of the spool: the message
// arrives as an io.Reader of CRLF lines, already complete.
//
// Rules it keeps whatever the server says:
//   - With tls = "starttls" nothing but EHLO and STARTTLS is sent before TLS
//     is up and the certificate verified; a server that does not offer
//     STARTTLS gets no AUTH and no MAIL.
//   - AUTH is never sent over a connection without TLS unless the config
//     explicitly allows it (config validation refuses the rest).
//   - Bytes the server sends after its reply to STARTTLS and before the TLS
//     handshake are refused (response injection, CVE-2011-0411).

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"relaymail/internal/hint"
	"relaymail/internal/secret"
	"relaymail/internal/trust"
	"relaymail/internal/xoauth2"
)

// relayOptions are the settings of one smarthost session. main builds them
// from the Config.
type relayOptions struct {
	Addr       string // host:port to dial
	TLS        TLSMode
	ServerName string         // name the certificate must carry
	RootCAs    *x509.CertPool // extra roots (ca_file); the system's are used too
	// CertFiles and CertDirs replace the system's bundle files and
	// certificate directories ($SSL_CERT_FILE, $SSL_CERT_DIR); nil for
	// the defaults.
	CertFiles, CertDirs []string
	// Pins replace the CA and name check (tls_fingerprint).
	Pins [][sha256.Size]byte
	// ClientCert is presented when the server asks for one, or nil.
	ClientCert *tls.Certificate
	MinVersion uint16 // tls.VersionTLS12 when 0
	// PlaintextAuth lets AUTH go without TLS to a relay that is not on
	// this machine (allow_plaintext_auth).
	PlaintextAuth bool
	// Fallback are host:port addresses tried in turn when Addr has
	// temporary trouble before any mail (see dial), with the same
	// settings; each one's certificate must carry its own name unless
	// FixedServerName (tls_server_name) says otherwise.
	Fallback        []string
	FixedServerName bool
	Auth            AuthMode
	Username        string
	Secret          secret.Source
	Hostname        string        // EHLO name
	Timeout         time.Duration // connect, and each read or write
	// DataTimeout bounds the wait for the reply to the final dot, which a
	// server may spend scanning a large message (RFC 5321 4.5.3.2.6: 10 min).
	DataTimeout time.Duration
	Debug       io.Writer // the SMTP conversation for -v, or nil
	// NoPipelining sends one command at a time even when the server
	// offers PIPELINING, and NoChunking uses DATA even when it offers
	// CHUNKING (tests use them to cover every path).
	NoPipelining bool
	NoChunking   bool
	// SkipQuitReply closes after QUIT without reading the reply: for a
	// caller who waits. Background runners read it, so that a connection
	// is over, for the server too, before the runner's slot is free.
	SkipQuitReply bool
	// Dial opens the TCP connection; nil means a net.Dialer with Timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Paused says until when a host (host:port) asked us to slow down:
	// dial skips it for the next fallback meanwhile. nil: never paused.
	Paused func(addr string) (until time.Time, reason string)
}

// envelope is what MAIL and RCPT say about one message.
type envelope struct {
	From     string   // "" is the null sender <>
	Rcpts    []string // each once
	Body     string   // "7BIT", "8BITMIME" or "" (from -B)
	EightBit bool     // the content has bytes >= 0x80
	Size     int64
	Notify   []string // DSN NOTIFY values (-N)
	// RcptNotify holds the NOTIFY of recipients that have their own (a
	// queued message, -bs), over Notify.
	RcptNotify map[string][]string
	Return     string // DSN RET (-R)
	EnvID      string // DSN ENVID (-V)
}

// notify returns the DSN NOTIFY values for rcpt.
func (e envelope) notify(rcpt string) []string {
	if n, ok := e.RcptNotify[rcpt]; ok {
		return n
	}
	return e.Notify
}

// result is the fate of one recipient in one session. Code 0 means no reply
// was received (network trouble): temporary, like 4xx.
type result struct {
	Rcpt     string
	Code     int
	Enhanced smtp.EnhancedCode
	Text     string
}

// Sent reports whether the smarthost took responsibility for the recipient.
func (r result) Sent() bool { return r.Code/100 == 2 }

// Permanent reports a 5xx refusal: retrying will not help.
func (r result) Permanent() bool { return r.Code/100 == 5 }

// enhanced writes an enhanced status code as "4.7.0"; "" when there is
// none.
func enhanced(e smtp.EnhancedCode) string {
	if e == (smtp.EnhancedCode{}) || e == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// Reply is the server's reply, or our reason, on one line.
func (r result) Reply() string {
	text := oneLine(r.Text)
	if r.Code == 0 {
		return text
	}
	if e := enhanced(r.Enhanced); e != "" {
		return fmt.Sprintf("%d %s %s", r.Code, e, text)
	}
	return fmt.Sprintf("%d %s", r.Code, text)
}

// relayError is a failure of the whole session before any recipient could be
// accepted: connect, TLS, AUTH, MAIL, or the message as a whole.
type relayError struct {
	Addr  string
	Stage string // what failed, in words: "connect", "STARTTLS", "authentication failed"
	// Code, Enhanced and Text hold the server's reply when there was one.
	Code     int
	Enhanced smtp.EnhancedCode
	Text     string
	Err      error  // the cause when there was no reply
	Perm     bool   // retrying cannot help
	Hint     string // how to fix it, when we know
	// Until is the end of the throttle pause that kept the host from
	// being dialled (Stage "paused"); zero otherwise.
	Until time.Time
}

func (e *relayError) Error() string {
	r := result{Code: e.Code, Enhanced: e.Enhanced, Text: e.Text}
	if e.Code == 0 {
		r.Text = errText(e.Err)
	}
	return fmt.Sprintf("%s: %s: %s", e.Addr, e.Stage, r.Reply())
}

func (e *relayError) Unwrap() error { return e.Err }

// errText drops the "dial tcp 127.0.0.1:587:" prefix of network errors:
// the address is already in the message.
func errText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		err = sys.Err
	}
	return fmt.Sprint(err)
}

// result gives every recipient the session's failure.
func (e *relayError) result(rcpt string) result {
	r := result{Rcpt: rcpt, Code: e.Code, Enhanced: e.Enhanced, Text: e.Text}
	if e.Code == 0 {
		r.Text = e.Stage + ": " + errText(e.Err)
		if e.Perm {
			r.Code = 554
		}
	}
	if e.Code/100 == 5 && !e.Perm {
		// AUTH and TLS refusals are kept for retry, as Postfix's
		// smtp_sasl_auth_soft_bounce does: a changed password must not bounce
		// every message in the queue.
		r.Code = 454
	}
	return r
}

// session is one smarthost connection, after TLS and AUTH, that can carry
// several messages (RSET between them).
type session struct {
	o      relayOptions
	c      *smtp.Client
	conn   net.Conn // what c talks through (TLS when in use)
	ic     *idleConn
	used   int    // messages attempted on this connection
	broken bool   // the connection is unusable; dial a new one
	mech   string // the SASL mechanism that logged in, or ""
	// skipped holds what the hosts tried before this one (fallback) said.
	skipped []string
}

// dial connects, secures and authenticates a session, with the fallback
// hosts in turn while the trouble is temporary and before any mail: no
// connection, no reply, or a 4xx at the greeting, EHLO, STARTTLS or AUTH.
// A 5xx there (a refused login, say) is the same on every host. It returns
// a *relayError on failure, the last host's.
func dial(ctx context.Context, o relayOptions) (*session, error) {
	s, err := dialUnpaused(ctx, o)
	var skipped []string // what the hosts before the one that answered said
	var paused time.Time // the end of the first pause among them
	for _, addr := range o.Fallback {
		var re *relayError
		if err == nil || !errors.As(err, &re) || re.Perm || re.Code >= 500 {
			break
		}
		if !re.Until.IsZero() && (paused.IsZero() || re.Until.Before(paused)) {
			paused = re.Until
		}
		skipped = append(skipped, err.Error())
		next := o
		next.Addr, next.Fallback = addr, nil
		if !o.FixedServerName {
			next.ServerName, _, _ = net.SplitHostPort(addr)
		}
		s, err = dialUnpaused(ctx, next)
	}
	var re *relayError
	if errors.As(err, &re) {
		re.addHint(o, 0)
		// Some host was paused and none took the mail: it waits for the
		// first pause to end, not a retry after trouble.
		if !paused.IsZero() && !re.Perm && re.Code < 500 && (re.Until.IsZero() || paused.Before(re.Until)) {
			re.Until = paused
		}
	}
	switch {
	case err == nil:
		s.skipped = skipped
	case len(skipped) > 0 && re != nil:
		// Every host failed: the first ones' trouble must not vanish.
		re.Addr += " (after " + strings.Join(skipped, "; ") + ")"
	}
	return s, err
}

// dialUnpaused is dialHost unless o.Addr is paused: then its error says
// until when, with the pause's end in Until.
func dialUnpaused(ctx context.Context, o relayOptions) (*session, error) {
	if o.Paused != nil {
		if until, reason := o.Paused(o.Addr); !until.IsZero() {
			return nil, &relayError{Addr: o.Addr, Stage: "paused", Until: until,
				Err:  fmt.Errorf("it asked us to slow down (%s); next attempt at %s", reason, until.Format("15:04:05")),
				Hint: "the smarthost limits how fast this account may send: set rate (and daily_limit) in [smarthost] to its published limits, so that mail waits here instead"}
		}
	}
	return dialHost(ctx, o)
}

// dialHost is dial for o.Addr alone.
func dialHost(ctx context.Context, o relayOptions) (*session, error) {
	c, conn, ic, rerr := connect(ctx, o)
	if rerr != nil {
		rerr.Addr = o.Addr
		return nil, rerr
	}
	if o.TLS == TLSNone && o.Username != "" && o.Auth != AuthNone && !o.PlaintextAuth {
		// The config allowed it for a loopback host by name; what was
		// dialled decides.
		if a, ok := ic.RemoteAddr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			c.Close()
			return nil, &relayError{Addr: o.Addr, Stage: "authentication",
				Err:  fmt.Errorf("refusing to send the password unencrypted to %s, which is not this machine", ic.RemoteAddr()),
				Hint: `use tls = "starttls" or "tls", or set allow_plaintext_auth = true if the network to the smarthost is trusted`}
		}
	}
	mech, rerr := authenticate(ctx, c, o)
	if rerr != nil {
		c.Close()
		rerr.Addr = o.Addr
		return nil, rerr
	}
	return &session{o: o, c: c, conn: conn, ic: ic, mech: mech}, nil
}

// checkReport is what a check learned of the smarthost.
type checkReport struct {
	Addr       string               // the host that answered: o.Addr, or a fallback
	Skipped    []string             // why the hosts before it did not
	TLS        *tls.ConnectionState // nil without TLS
	Extensions []string             // as offered after TLS: "SIZE 35882577", "PIPELINING"
	Mechanism  string               // the SASL mechanism that logged in; "" without a login
}

// checkExtensions are the EHLO keywords a check reports.
var checkExtensions = []string{"SIZE", "PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "REQUIRETLS", "AUTH", "LIMITS"}

// check connects, secures the connection and logs in exactly as a
// delivery does, then says QUIT without sending anything (sendmail
// --check). Its error is a *relayError.
func check(ctx context.Context, o relayOptions) (checkReport, error) {
	var r checkReport
	s, err := dial(ctx, o)
	if err != nil {
		return r, err
	}
	defer s.close()
	conn := s.conn
	if pc, ok := conn.(*prefixConn); ok {
		conn = pc.Conn
	}
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		r.TLS = &st
	}
	for _, name := range checkExtensions {
		if ok, params := s.c.Extension(name); ok {
			r.Extensions = append(r.Extensions, strings.TrimSpace(name+" "+params))
		}
	}
	r.Mechanism = s.mech
	r.Addr, r.Skipped = s.o.Addr, s.skipped
	return r, nil
}

// close says QUIT when the connection is healthy and closes it. With
// SkipQuitReply it does not wait for the reply: every outcome is recorded
// by then, so the reply would only cost the waiting caller a round trip
// (Postfix's smtp_skip_quit_response does the same). go-smtp flushes each
// command, so writing here cannot interleave with one.
func (s *session) close() {
	if !s.broken {
		io.WriteString(s.conn, "QUIT\r\n")
		var debug io.Writer = io.Discard
		if s.o.Debug != nil {
			io.WriteString(s.o.Debug, "QUIT\r\n")
			debug = s.o.Debug
		}
		if !s.o.SkipQuitReply {
			// Read the 221 and wait for the server to close, briefly: then
			// the connection is over for the server too (RFC 5321 3.8).
			s.ic.readTimeout = 2 * time.Second
			io.Copy(debug, io.LimitReader(s.conn, 4096))
		}
	}
	s.c.Close()
}

// relay delivers one message on a session of its own, and says which host
// (o.Addr or a fallback) took it.
func relay(ctx context.Context, o relayOptions, env envelope, msg io.Reader) ([]result, string, error) {
	s, err := dial(ctx, o)
	if err != nil {
		var rerr *relayError
		errors.As(err, &rerr)
		results := make([]result, len(env.Rcpts))
		for i, rcpt := range env.Rcpts {
			results[i] = rerr.result(rcpt)
		}
		return results, o.Addr, err
	}
	defer s.close()
	results, err := s.send(env, msg)
	return results, s.o.Addr, err
}

// send delivers one message; see sendOnce. Replies are made safe to
// record: a code outside 200-599 counts as no reply.
func (s *session) send(env envelope, msg io.Reader) ([]result, error) {
	results, err := s.sendOnce(env, msg)
	for i := range results {
		results[i] = safeResult(results[i])
	}
	return results, s.hinted(err)
}

// hinted gives a *relayError without a hint the catalogue's
// (internal/hint), with the SIZE the server announced.
func (s *session) hinted(err error) error {
	var re *relayError
	if errors.As(err, &re) {
		var size int64
		if s.c != nil {
			if ok, v := s.c.Extension("SIZE"); ok {
				size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		re.addHint(s.o, size)
	}
	return err
}

// addHint fills e.Hint from the catalogue when the code that made e knew
// none: by the reply, or for a failure without one by what the network
// said.
func (e *relayError) addHint(o relayOptions, size int64) {
	if e.Hint != "" {
		return
	}
	stage := hintStage(e.Stage)
	if e.Code != 0 {
		host, _, _ := net.SplitHostPort(e.Addr)
		if host == "" {
			host, _, _ = net.SplitHostPort(o.Addr)
		}
		e.Hint = hint.Reply(hint.Situation{Stage: stage, Code: e.Code, Enhanced: enhanced(e.Enhanced), Text: e.Text,
			Host: host, TLS: string(o.TLS), Size: size})
		return
	}
	if e.Err == nil {
		return
	}
	var dnsErr *net.DNSError
	var ne net.Error
	timeout := errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.As(e.Err, &ne) && ne.Timeout()
	addr := e.Addr
	if addr == "" {
		addr = o.Addr
	}
	if i := strings.Index(addr, " (after"); i >= 0 {
		addr = addr[:i]
	}
	e.Hint = hint.Network(stage, addr, errors.Is(e.Err, syscall.ECONNREFUSED), timeout, errors.As(e.Err, &dnsErr) && dnsErr.IsNotFound)
}

// hintStage is a relayError's stage as internal/hint names it.
func hintStage(stage string) string {
	switch {
	case strings.HasPrefix(stage, "authentication"):
		return "AUTH"
	case strings.HasPrefix(stage, "MAIL FROM"):
		return "MAIL"
	case strings.HasPrefix(stage, "RCPT"):
		return "RCPT"
	case stage == "cannot connect":
		return "connect"
	case strings.HasPrefix(stage, "BDAT"), strings.HasPrefix(stage, "DATA"), strings.HasPrefix(stage, "message"):
		return "DATA"
	}
	return stage
}

// safeResult turns a code outside 200-599 into no reply and makes the
// text one line.
func safeResult(r result) result {
	if r.Code < 200 || r.Code > 599 {
		if r.Code != 0 {
			r.Text = fmt.Sprintf("unexpected reply code %d: %s", r.Code, r.Text)
		}
		r.Code = 0
	}
	r.Text = oneLine(r.Text)
	return r
}

// failFunc gives every recipient of a message one failure, returns the
// results and the failure, and marks the session broken when the failure
// leaves it unusable.
type failFunc func(*relayError) ([]result, error)

// newResults returns the results of env's recipients, to be filled, and
// the failFunc that fills them all at once.
func (s *session) newResults(env envelope) ([]result, failFunc) {
	results := make([]result, len(env.Rcpts))
	for i, rcpt := range env.Rcpts {
		results[i].Rcpt = rcpt
	}
	fail := func(err *relayError) ([]result, error) {
		err.Addr = s.o.Addr
		if err.Code == 0 && !err.Perm || err.Code == 421 {
			s.broken = true
		}
		for i := range results {
			results[i] = err.result(results[i].Rcpt)
		}
		return results, err
	}
	return results, fail
}

// sendOnce delivers one message. It returns one result per recipient of env,
// in order, and a *relayError when the message failed as a whole before
// RCPT; then every result carries that failure. After an error the session
// may be broken (see s.broken).
func (s *session) sendOnce(env envelope, msg io.Reader) ([]result, error) {
	results, fail := s.newResults(env)
	if s.broken {
		return fail(&relayError{Stage: "session", Err: errors.New("connection already broken")})
	}
	c := s.c
	mailOpts, rerr := s.mailOptions(env)
	if rerr != nil {
		return fail(rerr)
	}
	rset := s.used > 0 // RFC 5321 4.1.1.5: start the next transaction from a clean state
	if ok, _ := c.Extension("PIPELINING"); ok && !s.o.NoPipelining {
		s.used++
		return s.sendPipelined(env, mailOpts, msg, results, fail, rset)
	}
	if rset {
		if err := c.Reset(); err != nil {
			// A server that refuses RSET cannot be trusted with the next
			// transaction: this message waits for a new connection.
			s.broken = true
			return fail(&relayError{Stage: "RSET", Err: errors.New(oneLine(err.Error()))})
		}
	}
	s.used++
	if err := c.Mail(env.From, mailOpts); err != nil {
		rerr := replyError("MAIL FROM:<"+env.From+"> refused", err)
		if authRequired(rerr.Code, rerr.Enhanced) {
			rerr.Perm = false // its hint comes from the catalogue
		}
		return fail(rerr)
	}

	var accepted []int
	for i, rcpt := range env.Rcpts {
		var rcptOpts *smtp.RcptOptions
		if notify := env.notify(rcpt); len(notify) > 0 {
			rcptOpts = &smtp.RcptOptions{}
			for _, n := range notify {
				rcptOpts.Notify = append(rcptOpts.Notify, smtp.DSNNotify(n))
			}
		}
		err := c.Rcpt(rcpt, rcptOpts)
		if err == nil {
			results[i].Code = 250
			accepted = append(accepted, i)
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The connection is gone: nobody got the message.
			return fail(&relayError{Stage: "RCPT TO:<" + rcpt + ">", Err: err})
		}
		results[i].Code, results[i].Enhanced, results[i].Text = se.Code, se.EnhancedCode, se.Message
		if authRequired(se.Code, se.EnhancedCode) {
			results[i].Code = 454 // kept for retry, as above
		}
	}
	if len(accepted) == 0 {
		return results, nil
	}

	setAccepted := func(code int, enh smtp.EnhancedCode, text string) {
		for _, i := range accepted {
			results[i].Code, results[i].Enhanced, results[i].Text = code, enh, text
		}
	}
	w, err := c.Data()
	if err != nil {
		rerr := replyError("DATA refused", err)
		r := rerr.result("")
		setAccepted(r.Code, r.Enhanced, r.Text)
		if r.Code == 0 || r.Code == 421 {
			s.broken = true
		}
		return results, nil
	}
	if _, err := io.Copy(w, msg); err != nil {
		// A read error on our side or a write error on the wire: in both
		// cases the server never saw the final dot, so nothing was accepted.
		setAccepted(0, smtp.EnhancedCode{}, fmt.Sprintf("sending message: %v", err))
		s.broken = true
		return results, nil
	}
	s.ic.readTimeout = max(s.o.DataTimeout, s.o.Timeout)
	resp, err := w.CloseWithResponse()
	s.ic.readTimeout = s.o.Timeout
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			setAccepted(se.Code, se.EnhancedCode, se.Message)
			if se.Code == 421 {
				s.broken = true
			}
		} else {
			s.broken = true
			// RFC 5321 6.1: without the reply to the final dot we cannot know
			// whether the server took the message; retrying risks a
			// duplicate, dropping risks a loss. We retry.
			setAccepted(0, smtp.EnhancedCode{}, fmt.Sprintf("connection lost after sending the message: %v", err))
		}
		return results, nil
	}
	code, enh, text := 250, smtp.EnhancedCode{}, resp.StatusText
	if e, rest, ok := splitEnhanced(text); ok {
		enh, text = e, rest
	}
	setAccepted(code, enh, text)
	return results, nil
}

// mailOptions are MAIL FROM's parameters for env, or the reason the
// message cannot go to this server at all (permanent: an address needs
// SMTPUTF8, or the message exceeds the server's SIZE).
func (s *session) mailOptions(env envelope) (*smtp.MailOptions, *relayError) {
	mo := &smtp.MailOptions{Size: env.Size, EnvelopeID: env.EnvID}
	if env.Body != "" {
		mo.Body = smtp.BodyType(env.Body)
	}
	if env.Return != "" {
		mo.Return = smtp.DSNReturn(env.Return)
	}
	if needsUTF8(env) {
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			return nil, &relayError{Stage: "message refused", Perm: true,
				Err: errors.New("an address is not ASCII and the smarthost does not offer SMTPUTF8 (RFC 6531)")}
		}
		mo.UTF8 = true
	}
	if limit, ok := s.c.MaxMessageSize(); ok && limit > 0 && env.Size > int64(limit) {
		return nil, &relayError{Stage: "message refused", Perm: true,
			Err:  fmt.Errorf("message size %d exceeds the smarthost's limit of %d bytes", env.Size, limit),
			Hint: hint.Reply(hint.Situation{Stage: "MAIL", Code: 552, Enhanced: "5.3.4", Size: int64(limit)})}
	}
	return mo, nil
}

func needsUTF8(env envelope) bool {
	if hasNonASCII(env.From) {
		return true
	}
	return slices.ContainsFunc(env.Rcpts, hasNonASCII)
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// connect dials the smarthost and returns a client that has said EHLO over
// TLS (unless tls = "none").
func connect(ctx context.Context, o relayOptions) (*smtp.Client, net.Conn, *idleConn, *relayError) {
	dial := o.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: o.Timeout}
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, nil, nil, &relayError{Stage: "cannot connect", Err: err}
	}
	ic := &idleConn{Conn: raw, timeout: o.Timeout, readTimeout: o.Timeout}
	// crypto/tls's own verification would parse every system root first
	// (20-30 ms); the Verifier reads only those the chain can use, with
	// the same result (see internal/trust). InsecureSkipVerify only turns
	// off the built-in check that VerifyConnection replaces.
	v := &trust.Verifier{ServerName: o.ServerName, Extra: o.RootCAs, System: true, Files: o.CertFiles, Dirs: o.CertDirs, Pins: o.Pins}
	tlsConfig := &tls.Config{
		ServerName:         o.ServerName,
		InsecureSkipVerify: true,
		VerifyConnection:   v.VerifyConnection,
		MinVersion:         cmp.Or(o.MinVersion, tls.VersionTLS12),
	}
	if o.ClientCert != nil {
		tlsConfig.Certificates = []tls.Certificate{*o.ClientCert}
	}

	var conn net.Conn = ic
	skip := 0 // bytes of synthetic greeting the transcript must not show
	switch o.TLS {
	case TLSImplicit:
		tc := tls.Client(ic, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, nil, nil, tlsError(err, o)
		}
		conn = tc
	case TLSStartTLS:
		tc, greeting, rerr := startTLS(ctx, ic, o, tlsConfig)
		if rerr != nil {
			raw.Close()
			return nil, nil, nil, rerr
		}
		// go-smtp's client expects a greeting. After STARTTLS there is none
		// (RFC 3207 4.2), so it reads the one the server sent before TLS.
		conn = &prefixConn{Conn: tc, r: io.MultiReader(strings.NewReader(greeting), tc)}
		skip = len(greeting)
	}

	c := smtp.NewClient(conn)
	c.CommandTimeout = o.Timeout
	c.SubmissionTimeout = max(o.DataTimeout, o.Timeout)
	if o.Debug != nil {
		c.DebugWriter = &skipWriter{w: o.Debug, skip: skip}
	}
	if err := c.Hello(o.Hostname); err != nil {
		c.Close()
		if isRemoteTLSAlert(err) {
			// TLS 1.3: the server refuses our certificate (or its
			// absence) only after the client's side of the handshake.
			return nil, nil, nil, tlsError(err, o)
		}
		return nil, nil, nil, replyError("EHLO refused", err)
	}
	return c, conn, ic, nil
}

// startTLS runs the plaintext part of the session by hand, so that the EHLO
// name is ours and nothing but EHLO and STARTTLS is ever sent in the clear.
// It returns the TLS connection and the server's greeting line.
func startTLS(ctx context.Context, conn net.Conn, o relayOptions, cfg *tls.Config) (*tls.Conn, string, *relayError) {
	var in io.Reader = conn
	var out io.Writer = conn
	if o.Debug != nil {
		in = io.TeeReader(conn, o.Debug)
		out = io.MultiWriter(conn, o.Debug)
	}
	br := bufio.NewReader(in)
	tr := textproto.NewReader(br)
	protoErr := func(stage string, err error) *relayError {
		var pe *textproto.Error
		if errors.As(err, &pe) {
			return &relayError{Stage: stage, Code: pe.Code, Text: pe.Msg, Perm: pe.Code/100 == 5}
		}
		return &relayError{Stage: stage, Err: err}
	}

	code, msg, err := tr.ReadResponse(220)
	if err != nil {
		return nil, "", protoErr("greeting", err)
	}
	greeting := fmt.Sprintf("%d %s\r\n", code, strings.ReplaceAll(msg, "\n", " "))
	if _, err := fmt.Fprintf(out, "EHLO %s\r\n", o.Hostname); err != nil {
		return nil, "", &relayError{Stage: "EHLO", Err: err}
	}
	_, msg, err = tr.ReadResponse(250)
	if err != nil {
		return nil, "", protoErr("EHLO refused", err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		fmt.Fprintf(out, "QUIT\r\n")
		return nil, "", &relayError{Stage: "STARTTLS", Err: errors.New("the server does not offer STARTTLS; nothing was sent"),
			Hint: `the smarthost may expect implicit TLS (tls = "tls", usually port 465); use tls = "none" only for a relay on a trusted network`}
	}
	if _, err := fmt.Fprintf(out, "STARTTLS\r\n"); err != nil {
		return nil, "", &relayError{Stage: "STARTTLS", Err: err}
	}
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, "", protoErr("STARTTLS refused", err)
	}
	if br.Buffered() > 0 {
		return nil, "", &relayError{Stage: "STARTTLS", Err: errors.New("the server sent data before the TLS handshake (possible injection attack)")}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, "", tlsError(err, o)
	}
	return tc, greeting, nil
}

func tlsError(err error, o relayOptions) *relayError {
	e := &relayError{Stage: "TLS handshake", Err: err}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var pin string // how to pin the certificate the server presented
	var te *trust.Error
	if errors.As(err, &te) {
		cert, key := trust.Fingerprints(te.Leaf)
		pin = fmt.Sprintf("SHA-256 %s (public key %s)", trust.Hex(cert), trust.Hex(key))
	}
	switch {
	case isRemoteTLSAlert(err) && strings.Contains(err.Error(), " certificate"):
		// The server's alert about ours: certificate_required,
		// bad_certificate, unknown_ca, certificate_unknown (RFC 8446 6.2).
		e.Stage = "client certificate refused"
		e.Hint = "the relay asks for a client certificate: set tls_cert_file and tls_key_file, to one it trusts"
	case errors.Is(err, trust.ErrPinMismatch):
		e.Stage = "certificate fingerprint mismatch"
		e.Hint = fmt.Sprintf("the relay presented a certificate with %s; if its certificate changed on purpose, put the new value in tls_fingerprint, else someone may be in the middle", pin)
	case errors.As(err, &unknown):
		e.Stage = "certificate not trusted"
		e.Hint = "if the smarthost uses a private CA, set ca_file to its PEM certificate in the [smarthost] section"
		if pin != "" {
			e.Hint += fmt.Sprintf("; for a self-signed relay, compare its certificate's %s with the relay itself, then set tls_fingerprint to it", pin)
		}
	case errors.As(err, &host):
		e.Stage = "certificate name mismatch"
		e.Hint = fmt.Sprintf("the certificate is not valid for %q; set host to the name in the certificate, or tls_server_name", o.ServerName)
	case errors.As(err, &invalid):
		e.Stage = "certificate invalid"
		e.Hint = "check the smarthost's certificate dates and this machine's clock"
	}
	// Name the certificate, so that the person reading can tell the
	// smarthost's from a stranger's.
	var leaf *x509.Certificate
	switch {
	case te != nil:
		leaf = te.Leaf
	case unknown.Cert != nil:
		leaf = unknown.Cert
	case host.Certificate != nil:
		leaf = host.Certificate
	case invalid.Cert != nil:
		leaf = invalid.Cert
	}
	if leaf != nil && e.Hint != "" {
		e.Hint += "; " + describeCert(leaf)
	}
	return e
}

// describeCert names a certificate by subject, issuer and dates.
func describeCert(c *x509.Certificate) string {
	subject := c.Subject.CommonName
	if len(c.DNSNames) > 0 {
		subject = strings.Join(c.DNSNames, ", ")
	}
	return fmt.Sprintf("the server's certificate is for %q, issued by %q, valid from %s until %s",
		subject, c.Issuer.CommonName, c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"))
}

// isRemoteTLSAlert reports an alert the server sent. crypto/tls reports
// one as a net.OpError "remote error" around an unexported type, so the
// text is all there is to go by.
func isRemoteTLSAlert(err error) bool {
	return strings.Contains(err.Error(), "remote error: tls: ")
}

// authenticate logs in when a username is configured.
func authenticate(ctx context.Context, c *smtp.Client, o relayOptions) (string, *relayError) {
	if o.Auth == AuthNone || o.Username == "" {
		return "", nil
	}
	ok, params := c.Extension("AUTH")
	if !ok {
		hint := "set auth = \"none\" if this relay needs no login"
		if o.TLS == TLSNone {
			hint = "servers usually offer AUTH only over TLS: set tls = \"starttls\" or \"tls\""
		}
		return "", &relayError{Stage: "authentication", Err: errors.New("the server does not offer AUTH"), Hint: hint}
	}
	offered := strings.Fields(strings.ToUpper(params))
	mech, err := chooseMechanism(o.Auth, offered)
	if err != nil {
		return "", &relayError{Stage: "authentication", Err: err}
	}
	pw, err := o.Secret.Get(ctx)
	if err != nil {
		return "", &relayError{Stage: "authentication", Err: err}
	}
	var sc sasl.Client
	switch mech {
	case "PLAIN":
		sc = sasl.NewPlainClient("", o.Username, pw)
	case "LOGIN":
		sc = sasl.NewLoginClient(o.Username, pw)
	case "XOAUTH2":
		sc = xoauth2.NewClient(o.Username, pw)
	case "OAUTHBEARER":
		sc = sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: o.Username, Token: pw})
	}
	if err := c.Auth(sc); err != nil {
		e := replyError("authentication failed", err)
		e.Perm = false
		return "", e
	}
	return mech, nil
}

// chooseMechanism picks the SASL mechanism: the configured one, or with
// auth = "auto" the best the server offers among those that take a password.
func chooseMechanism(want AuthMode, offered []string) (string, error) {
	var candidates []string
	switch want {
	case AuthPlain:
		candidates = []string{"PLAIN"}
	case AuthLogin:
		candidates = []string{"LOGIN"}
	case AuthXOAUTH2:
		candidates = []string{"XOAUTH2"}
	case AuthOAUTHBEARER:
		candidates = []string{"OAUTHBEARER"}
	default:
		// PLAIN is one round trip; LOGIN is what Microsoft 365 offers.
		candidates = []string{"PLAIN", "LOGIN"}
	}
	for _, m := range candidates {
		if slices.Contains(offered, m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("the server offers AUTH %s, none of which relaymail can use with auth = %q",
		strings.Join(offered, " "), want)
}

// replyError turns a go-smtp error into a relayError, keeping the reply.
func replyError(stage string, err error) *relayError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &relayError{Stage: stage, Code: se.Code, Enhanced: se.EnhancedCode, Text: se.Message, Perm: se.Code/100 == 5}
	}
	return &relayError{Stage: stage, Err: err}
}

// splitEnhanced splits "2.0.0 Ok" into its enhanced code and text.
func splitEnhanced(s string) (smtp.EnhancedCode, string, bool) {
	var e smtp.EnhancedCode
	code, rest, _ := strings.Cut(s, " ")
	if n, err := fmt.Sscanf(code, "%d.%d.%d", &e[0], &e[1], &e[2]); n != 3 || err != nil {
		return e, s, false
	}
	return e, rest, true
}

// oneLine makes text from a server or an error safe for one log line and
// one envelope field: control bytes (NUL included) become spaces and runs
// of white space one space.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// authRequired reports a refusal that means "log in first" or "use TLS
// first" (RFC 4954 6: 530 5.7.0, 5.7.8, 5.7.11; RFC 3207: 530 must issue
// STARTTLS). It is a configuration problem, not a verdict on the message:
// like a failed AUTH it is kept for retry instead of bounced.
func authRequired(code int, enh smtp.EnhancedCode) bool {
	if code == 530 {
		return true
	}
	return code/100 == 5 && enh[0] == 5 && enh[1] == 7 && (enh[2] == 0 || enh[2] == 8 || enh[2] == 11)
}

// idleConn puts a deadline on every read and write, so a server that stops
// talking cannot hold a caller forever. go-smtp's own deadlines are ignored:
// it clears them while the message body is written.
type idleConn struct {
	net.Conn
	timeout     time.Duration
	readTimeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.readTimeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.readTimeout))
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}

func (c *idleConn) SetDeadline(time.Time) error      { return nil }
func (c *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (c *idleConn) SetWriteDeadline(time.Time) error { return nil }

// prefixConn reads r (a saved greeting, then the connection) instead of
// the connection alone.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// skipWriter drops the first skip bytes written to it.
type skipWriter struct {
	w    io.Writer
	skip int
}

func (s *skipWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.skip > 0 {
		k := min(s.skip, len(p))
		s.skip -= k
		p = p[k:]
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return n, err
		}
	}
	return n, nil
}

// sendPipelined sends MAIL, every RCPT and DATA in one flight (RFC 2920),
// then reads their replies in order: one round trip instead of one per
// command. With rset, RSET leads the flight. go-smtp's client cannot
// pipeline, so the commands go straight to the connection; its own reader
// is idle between commands, so nothing it buffered can be lost.
func (s *session) sendPipelined(env envelope, mo *smtp.MailOptions, msg io.Reader, results []result, fail failFunc, rset bool) ([]result, error) {
	bw, read := s.pipe()
	// With CHUNKING (RFC 3030) the message follows in the same flight as
	// one BDAT LAST chunk, without dot-stuffing: one round trip for the
	// whole transaction. The server takes the chunk even when it refuses
	// every recipient, and then refuses the chunk too.
	chunking := s.chunking() && env.Size > 0
	if err := s.writeTx(bw, env, mo, msg, rset, chunking); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(&relayError{Stage: "MAIL FROM", Err: err})
	}
	if chunking {
		return s.readTx(read, env, results, fail, rset)
	}
	mcode, menh, mtext, accepted, rerr := s.readEnvelopeReplies(read, env, results, rset)
	if rerr != nil {
		return fail(rerr)
	}
	return s.finishData(bw, read, env, msg, results, fail, mcode, menh, mtext, accepted)
}

// sendBatch sends several messages in one flight when the server offers
// PIPELINING and CHUNKING: for each, RSET (but before the session's first),
// MAIL, the RCPTs and the message as BDAT LAST, all written before any reply
// is read. RFC 2920 3.1 lets every one of these commands but the last be
// followed by more, and RFC 3030 2 lets BDAT be pipelined, so a queue run
// sends a burst of messages in one round trip. Without both extensions,
// or for a message of size 0, messages go one by one. It returns each
// message's results and error, as send does.
func (s *session) sendBatch(envs []envelope, msgs []io.Reader) ([][]result, []error) {
	all, errs := s.sendBatchOnce(envs, msgs)
	for i := range errs {
		errs[i] = s.hinted(errs[i])
	}
	return all, errs
}

// sendBatchOnce is sendBatch without the hints.
func (s *session) sendBatchOnce(envs []envelope, msgs []io.Reader) ([][]result, []error) {
	all := make([][]result, len(envs))
	errs := make([]error, len(envs))
	piped, _ := s.c.Extension("PIPELINING")
	if len(envs) < 2 || !piped || s.o.NoPipelining || !s.chunking() {
		for i := range envs {
			all[i], errs[i] = s.send(envs[i], msgs[i])
		}
		return all, errs
	}
	type tx struct {
		i       int
		results []result
		fail    failFunc
		rset    bool
	}
	var flight, later []tx
	bw, read := s.pipe()
	for i, env := range envs {
		results, fail := s.newResults(env)
		t := tx{i: i, results: results, fail: fail}
		if s.broken {
			all[i], errs[i] = fail(&relayError{Stage: "session", Err: errors.New("connection lost before the message was sent")})
			continue
		}
		mo, rerr := s.mailOptions(env)
		switch {
		case rerr != nil:
			all[i], errs[i] = fail(rerr)
			continue
		case env.Size <= 0:
			later = append(later, t)
			continue
		}
		t.rset = s.used > 0
		s.used++
		if err := s.writeTx(bw, env, mo, msgs[i], t.rset, true); err != nil {
			// The chunk is short, so the server waits for its missing
			// bytes: nothing more can go on this connection. The replies
			// to what went before still come.
			all[i], errs[i] = fail(err)
			continue
		}
		flight = append(flight, t)
	}
	if err := bw.Flush(); err != nil {
		// Some of the flight may have gone: read what replies there are;
		// the first missing one fails its message and the rest, all kept
		// for retry.
		s.broken = true
	}
	for _, t := range flight {
		all[t.i], errs[t.i] = s.readTx(read, envs[t.i], t.results, t.fail, t.rset)
	}
	for _, t := range later {
		all[t.i], errs[t.i] = s.send(envs[t.i], msgs[t.i])
	}
	for i := range all {
		for k := range all[i] {
			all[i][k] = safeResult(all[i][k])
		}
	}
	return all, errs
}

// chunking reports whether messages go as BDAT.
func (s *session) chunking() bool {
	ok, _ := s.c.Extension("CHUNKING")
	return ok && !s.o.NoChunking
}

// replyFunc reads one reply of a pipelined flight.
type replyFunc func() (int, smtp.EnhancedCode, string, error)

// pipe returns a buffered writer to the connection and a reader of
// replies, both copied to the -v transcript. The reader must be used for
// every reply of what the writer sent, and for nothing after it.
func (s *session) pipe() (*bufio.Writer, replyFunc) {
	var out io.Writer = s.conn
	var in io.Reader = s.conn
	if s.o.Debug != nil {
		out = io.MultiWriter(s.conn, s.o.Debug)
		in = io.TeeReader(s.conn, s.o.Debug)
	}
	tr := textproto.NewReader(bufio.NewReader(in))
	read := func() (int, smtp.EnhancedCode, string, error) {
		code, text, err := tr.ReadResponse(0)
		if err != nil {
			return 0, smtp.EnhancedCode{}, "", err
		}
		if enh, rest, ok := splitEnhanced(text); ok {
			return code, enh, rest, nil
		}
		return code, smtp.EnhancedCode{}, text, nil
	}
	return bufio.NewWriterSize(out, 32<<10), read
}

// writeTx writes one transaction's commands: RSET with rset, MAIL, the
// RCPTs, and then either the whole message as BDAT LAST (chunking) or
// DATA. Its error is for a message shorter than its size: the session is
// then broken.
func (s *session) writeTx(bw *bufio.Writer, env envelope, mo *smtp.MailOptions, msg io.Reader, rset, chunking bool) *relayError {
	if rset {
		bw.WriteString("RSET\r\n")
	}
	fmt.Fprintf(bw, "MAIL FROM:<%s>%s\r\n", env.From, s.mailParams(mo))
	for _, rcpt := range env.Rcpts {
		fmt.Fprintf(bw, "RCPT TO:<%s>%s\r\n", rcpt, s.rcptParams(env.notify(rcpt)))
	}
	if !chunking {
		bw.WriteString("DATA\r\n")
		return nil
	}
	fmt.Fprintf(bw, "BDAT %d LAST\r\n", env.Size)
	if n, err := io.CopyN(bw, msg, env.Size); err != nil {
		// Short or unreadable: the chunk cannot be completed, so the
		// connection cannot be used again.
		s.broken = true
		return &relayError{Stage: "BDAT", Err: fmt.Errorf("message has %d of %d bytes: %v", n, env.Size, err)}
	}
	return nil
}

// readTx reads the replies to what writeTx sent with chunking.
func (s *session) readTx(read replyFunc, env envelope, results []result, fail failFunc, rset bool) ([]result, error) {
	mcode, menh, mtext, accepted, rerr := s.readEnvelopeReplies(read, env, results, rset)
	if rerr != nil {
		return fail(rerr)
	}
	return s.finishChunk(read, mcode, menh, mtext, env, accepted, results, fail)
}

// readEnvelopeReplies reads the replies to RSET (with rset), MAIL and the
// RCPTs, and fills in the results of the recipients: 250 for the accepted
// ones, listed in accepted, the refusal for the others. rerr is a lost
// connection. Should the server have refused the RSET, the session is
// broken and every refusal of this transaction becomes temporary.
func (s *session) readEnvelopeReplies(read replyFunc, env envelope, results []result, rset bool) (mcode int, menh smtp.EnhancedCode, mtext string, accepted []int, rerr *relayError) {
	var rsetText string
	if rset {
		code, _, text, err := read()
		if err != nil {
			return 0, menh, "", nil, &relayError{Stage: "RSET", Err: err}
		}
		if code/100 != 2 {
			rsetText = fmt.Sprintf("RSET refused: %d %s", code, text)
		}
	}
	mcode, menh, mtext, err := read()
	if err != nil {
		return 0, menh, "", nil, &relayError{Stage: "MAIL FROM", Err: err}
	}
	for i := range env.Rcpts {
		code, enh, text, err := read()
		if err != nil {
			return 0, menh, "", nil, &relayError{Stage: "RCPT TO:<" + env.Rcpts[i] + ">", Err: err}
		}
		switch {
		case code/100 == 2:
			results[i].Code = 250
			accepted = append(accepted, i)
		case authRequired(code, enh):
			results[i].Code, results[i].Enhanced, results[i].Text = 454, enh, text // kept for retry
		default:
			results[i].Code, results[i].Enhanced, results[i].Text = code, enh, text
		}
	}
	if rsetText != "" {
		// The server could not clear the previous transaction, so its
		// refusals here may say only that ("503 nested MAIL"): none of
		// them may bounce the message. What it accepted stands.
		s.broken = true
		for i := range results {
			if results[i].Code/100 != 2 {
				results[i].Code, results[i].Enhanced, results[i].Text = 0, smtp.EnhancedCode{}, rsetText
			}
		}
		if mcode/100 != 2 {
			mcode, menh, mtext = 0, smtp.EnhancedCode{}, rsetText
		}
	}
	return mcode, menh, mtext, accepted, nil
}

// finishData ends a pipelined transaction that used DATA: it reads the
// reply to DATA, sends the message after a 354 and reads the final reply.
func (s *session) finishData(bw *bufio.Writer, read replyFunc, env envelope, msg io.Reader, results []result, fail failFunc,
	mcode int, menh smtp.EnhancedCode, mtext string, accepted []int) ([]result, error) {
	lost := func(stage string, err error) ([]result, error) {
		return fail(&relayError{Stage: stage, Err: err})
	}
	dcode, denh, dtext, err := read()
	if err != nil {
		return lost("DATA", err)
	}
	if dcode == 354 && (mcode/100 != 2 || len(accepted) == 0) {
		// RFC 2920 3.1: the server took DATA although nobody can receive
		// the message: end it empty, so that nothing is delivered.
		bw.WriteString(".\r\n")
		if err := bw.Flush(); err != nil {
			return lost("DATA", err)
		}
		if _, _, _, err := read(); err != nil {
			return lost("DATA", err)
		}
	}
	if mcode/100 != 2 {
		return fail(mailRefused(env, mcode, menh, mtext))
	}
	if len(accepted) == 0 {
		return results, nil
	}
	setAccepted := func(code int, enh smtp.EnhancedCode, text string) {
		for _, i := range accepted {
			results[i].Code, results[i].Enhanced, results[i].Text = code, enh, text
		}
	}
	if dcode != 354 {
		r := (&relayError{Code: dcode, Enhanced: denh, Text: dtext, Perm: dcode/100 == 5}).result("")
		setAccepted(r.Code, r.Enhanced, r.Text)
		if dcode == 421 {
			s.broken = true
		}
		return results, nil
	}
	dw := textproto.NewWriter(bw).DotWriter()
	if _, err := io.Copy(dw, msg); err != nil {
		setAccepted(0, smtp.EnhancedCode{}, fmt.Sprintf("sending message: %v", err))
		s.broken = true
		return results, nil
	}
	if err := dw.Close(); err != nil {
		setAccepted(0, smtp.EnhancedCode{}, fmt.Sprintf("sending message: %v", err))
		s.broken = true
		return results, nil
	}
	s.ic.readTimeout = max(s.o.DataTimeout, s.o.Timeout)
	code, enh, text, err := read()
	s.ic.readTimeout = s.o.Timeout
	if err != nil {
		// As in sendOnce: no reply to the final dot, so retry (RFC 5321 6.1).
		setAccepted(0, smtp.EnhancedCode{}, fmt.Sprintf("connection lost after sending the message: %v", err))
		s.broken = true
		return results, nil
	}
	if code == 421 {
		s.broken = true
	}
	setAccepted(code, enh, text)
	return results, nil
}

// mailRefused is the failure of a transaction whose MAIL FROM was refused
// (code 0: an RSET the server refused, see readEnvelopeReplies).
func mailRefused(env envelope, code int, enh smtp.EnhancedCode, text string) *relayError {
	rerr := &relayError{Stage: "MAIL FROM:<" + env.From + "> refused", Code: code, Enhanced: enh, Text: text, Perm: code/100 == 5}
	if code == 0 {
		rerr.Stage, rerr.Err = "MAIL FROM", errors.New(text)
	}
	if authRequired(code, enh) {
		rerr.Perm = false // its hint comes from the catalogue
	}
	return rerr
}

// finishChunk reads the reply to BDAT LAST, the final reply of the
// transaction, and records it for the accepted recipients.
func (s *session) finishChunk(read replyFunc, mcode int, menh smtp.EnhancedCode, mtext string,
	env envelope, accepted []int, results []result, fail failFunc) ([]result, error) {
	s.ic.readTimeout = max(s.o.DataTimeout, s.o.Timeout)
	code, enh, text, err := read()
	s.ic.readTimeout = s.o.Timeout
	if mcode/100 != 2 {
		if err != nil {
			s.broken = true
		}
		return fail(mailRefused(env, mcode, menh, mtext))
	}
	if err != nil {
		s.broken = true
		for _, i := range accepted {
			// No reply to the chunk: as after a lost final dot, retry.
			results[i].Code, results[i].Enhanced, results[i].Text = 0, smtp.EnhancedCode{}, fmt.Sprintf("connection lost after sending the message: %v", err)
		}
		return results, nil
	}
	if len(accepted) == 0 {
		return results, nil // the chunk's refusal says only that nobody took it
	}
	r := (&relayError{Code: code, Enhanced: enh, Text: text, Perm: code/100 == 5}).result("")
	if code/100 == 2 {
		r = result{Code: code, Enhanced: enh, Text: text}
	}
	for _, i := range accepted {
		results[i].Code, results[i].Enhanced, results[i].Text = r.Code, r.Enhanced, r.Text
	}
	if code == 421 {
		s.broken = true
	}
	return results, nil
}

// mailParams are the MAIL FROM parameters go-smtp's Client.Mail would send
// for o: BODY, SIZE, SMTPUTF8, and RET and ENVID when the server offers DSN.
func (s *session) mailParams(o *smtp.MailOptions) string {
	var b strings.Builder
	if ok, _ := s.c.Extension("8BITMIME"); ok {
		b.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := s.c.Extension("SIZE"); ok && o.Size != 0 {
		fmt.Fprintf(&b, " SIZE=%d", o.Size)
	}
	if o.UTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if ok, _ := s.c.Extension("DSN"); ok {
		if o.Return != "" {
			fmt.Fprintf(&b, " RET=%s", o.Return)
		}
		if o.EnvelopeID != "" {
			fmt.Fprintf(&b, " ENVID=%s", xtext(o.EnvelopeID))
		}
	}
	return b.String()
}

// rcptParams is NOTIFY when the server offers DSN.
func (s *session) rcptParams(notify []string) string {
	if ok, _ := s.c.Extension("DSN"); !ok || len(notify) == 0 {
		return ""
	}
	return " NOTIFY=" + strings.Join(notify, ",")
}

// xtext encodes s as RFC 3461 4 xtext.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
