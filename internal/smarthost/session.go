package smarthost

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// errDropped is returned to go-smtp after a Drop fault closed the
// connection; no client ever sees it.
var errDropped = errors.New("smarthost: connection dropped by fault")

var errAuthRequired = &smtp.SMTPError{
	Code:         530,
	EnhancedCode: smtp.EnhancedCode{5, 7, 0},
	Message:      "Authentication required",
}

// backend gives go-smtp a session per EHLO/HELO. go-smtp creates a new one
// after STARTTLS, on the next EHLO.
type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := b.s
	tc := connOf(c.Conn())
	if tc == nil {
		// Not a connection from our listener; cannot happen.
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error"}
	}
	state, isTLS := c.TLSConnectionState()
	helo := c.Hostname()

	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.sessions[tc.id]
	l.Helo = helo
	l.TLS = l.TLS || isTLS
	if isTLS && len(state.PeerCertificates) > 0 {
		l.ClientCert = state.PeerCertificates[0].Subject.CommonName
	}
	if f := s.fault(Hello, helo); f != nil {
		s.event(tc.id, "EHLO "+helo+" "+f.outcome())
		if f.Drop {
			tc.drop()
			return nil, errDropped
		}
		return nil, f.reply()
	}
	s.event(tc.id, "EHLO "+helo)
	return &session{s: s, conn: c, tc: tc, id: tc.id, tls: isTLS, helo: helo}, nil
}

// session is one EHLO-to-end stretch of a connection. go-smtp calls its
// methods from the connection's goroutine, except that with BDAT it runs
// Data in a goroutine of its own while it may call Reset; so the fields
// after helo are guarded by s.mu.
type session struct {
	s    *Server
	conn *smtp.Conn
	tc   *trackedConn
	id   int
	tls  bool // the session began over TLS
	helo string

	authUser, authMech string
	inTx               bool // a MAIL was accepted
	from               string
	mailOpts           smtp.MailOptions
	rcpts              []string
	rcptOpts           []smtp.RcptOptions
	// afterData is set when Data starts, so that go-smtp's Reset after
	// every DATA is not logged as RSET.
	afterData bool
}

// Reset is called for RSET, for a repeated EHLO and after every DATA.
// go-smtp does not say which, so the RSET event means "a transaction was
// abandoned": it is logged only when a MAIL had been accepted and no DATA
// ended it. (go-smtp's client says EHLO again after RSET, which would
// otherwise show as a second RSET.)
func (ss *session) Reset() {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.inTx && !ss.afterData {
		ss.s.event(ss.id, "RSET")
	}
	ss.afterData = false
	ss.resetTx()
}

// resetTx forgets the current transaction. The caller holds s.mu.
func (ss *session) resetTx() {
	ss.inTx = false
	ss.from, ss.mailOpts, ss.rcpts, ss.rcptOpts = "", smtp.MailOptions{}, nil, nil
}

// Logout is called when the connection ends and after a successful
// STARTTLS, before the client's next EHLO starts a new session.
func (ss *session) Logout() error {
	// Ask before locking: the TLS state has a lock of its own, which a
	// handshake holds while it calls clientHello.
	_, isTLS := ss.conn.TLSConnectionState()
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if isTLS && !ss.tls {
		ss.s.sessions[ss.id].TLS = true
		return nil
	}
	if ss.tc.quit() {
		ss.s.event(ss.id, "QUIT")
		// The session is over once QUIT is answered, before the TLS
		// close_notify the client may wait for: count it closed now.
		ss.tc.uncount()
	}
	return nil
}

func (ss *session) AuthMechanisms() []string { return ss.s.mechs }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, secret string, malformed bool) error { return ss.login(mech, user, secret, malformed) }
	for _, m := range ss.s.mechs {
		if m != mech {
			continue
		}
		switch mech {
		case "PLAIN":
			return &plainServer{check: check}, nil
		case "LOGIN":
			return &loginServer{check: check}, nil
		case "XOAUTH2":
			return &xoauth2Server{check: check}, nil
		case "OAUTHBEARER":
			return &oauthBearerServer{check: check, users: ss.s.opts.Tokens}, nil
		}
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login decides an AUTH exchange once the SASL server has decoded the
// credentials: an Auth fault, then the check against Users or Tokens.
func (ss *session) login(mech, user, secret string, malformed bool) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if malformed {
		s.event(ss.id, "AUTH "+mech+" malformed")
		return errMalformed
	}
	ev := fmt.Sprintf("AUTH %s user=%s", mech, user)
	if f := s.fault(Auth, user); f != nil {
		s.event(ss.id, ev+" "+f.outcome())
		if f.Drop {
			ss.tc.drop()
			return errDropped
		}
		return f.reply()
	}
	creds := s.opts.Users
	if mech == "XOAUTH2" || mech == "OAUTHBEARER" {
		creds = s.opts.Tokens
	}
	if want, ok := creds[user]; !ok || want != secret || secret == "" {
		s.event(ss.id, ev+" failed")
		return smtp.ErrAuthFailed
	}
	ss.authUser, ss.authMech = user, mech
	s.event(ss.id, ev+" ok")
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := "MAIL FROM:<" + from + ">" + mailParams(opts)
	if s.opts.AuthRequired && ss.authUser == "" {
		s.event(ss.id, ev+" 530")
		return errAuthRequired
	}
	if f := s.fault(Mail, from); f != nil {
		s.event(ss.id, ev+" "+f.outcome())
		if f.Drop {
			ss.tc.drop()
			return errDropped
		}
		return f.reply()
	}
	if e := s.throttle(); e != nil {
		s.event(ss.id, fmt.Sprintf("%s %d", ev, e.Code))
		if e.Code == 421 {
			// go-smtp writes the reply after Mail returns and keeps the
			// connection; close it soon after, as RFC 5321 3.8 says the
			// server does.
			time.AfterFunc(100*time.Millisecond, ss.tc.drop)
		}
		return e
	}
	s.event(ss.id, ev)
	ss.resetTx()
	ss.inTx = true
	ss.from = from
	if opts != nil {
		ss.mailOpts = cloneMailOptions(*opts)
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := "RCPT TO:<" + to + ">" + rcptParams(opts)
	if f := s.fault(Rcpt, to); f != nil {
		s.event(ss.id, ev+" "+f.outcome())
		if f.Drop {
			ss.tc.drop()
			return errDropped
		}
		return f.reply()
	}
	s.event(ss.id, ev+" 250")
	ss.rcpts = append(ss.rcpts, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = cloneRcptOptions(*opts)
	}
	ss.rcptOpts = append(ss.rcptOpts, o)
	return nil
}

// Data reads the message after go-smtp has sent 354 and decides the reply
// after the final dot: go-smtp sends 250 when Data returns nil.
func (ss *session) Data(r io.Reader) error {
	s := ss.s
	s.mu.Lock()
	ss.afterData = true
	if s.closed {
		s.mu.Unlock()
		return errDropped
	}
	s.workers.Add(1)
	defer s.workers.Done()
	f := s.fault(Data, "")
	if f != nil {
		s.event(ss.id, "DATA "+f.outcome())
	} else {
		s.event(ss.id, "DATA")
	}
	s.mu.Unlock()
	if f != nil && f.Drop {
		ss.tc.drop()
		return errDropped
	}

	// Renew the read deadline as data flows: go-smtp set it once, when it
	// read the DATA line.
	r = &deadlineReader{r: r, c: ss.tc}
	h := sha256.New()
	var buf *bytes.Buffer
	var w io.Writer = h
	if !s.opts.HashOnly {
		buf = new(bytes.Buffer)
		w = io.MultiWriter(h, buf)
	}
	n, err := io.Copy(w, r)
	if err == nil && s.opts.DataDelay > 0 {
		time.Sleep(s.opts.DataDelay)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer ss.resetTx()
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
			s.event(ss.id, fmt.Sprintf("DATAEND %d", se.Code))
		case errors.Is(err, smtp.ErrTooLongLine):
			s.event(ss.id, "DATAEND 554")
		default:
			s.event(ss.id, "DATAEND aborted")
		}
		return err
	}
	if f != nil {
		// A Data fault without Drop: see Fault.
		return f.reply()
	}
	if f := s.fault(DataEnd, ""); f != nil {
		s.event(ss.id, "DATAEND "+f.outcome())
		if f.Drop {
			ss.tc.drop()
			return errDropped
		}
		return f.reply()
	}
	m := Message{
		From:     ss.from,
		MailOpts: cloneMailOptions(ss.mailOpts),
		Rcpts:    ss.rcpts,
		RcptOpts: ss.rcptOpts,
		Size:     n,
		SHA256:   [32]byte(h.Sum(nil)),
		AuthUser: ss.authUser,
		AuthMech: ss.authMech,
		TLS:      ss.tls,
		Helo:     ss.helo,
		Session:  ss.id,
	}
	if buf != nil {
		m.Data = buf.Bytes()
	}
	ss.rcpts, ss.rcptOpts = nil, nil // now owned by m
	s.event(ss.id, "DATAEND 250")
	s.record(m)
	return nil
}

// deadlineReader pushes the connection's read deadline ioTimeout ahead on
// every read, so that only a stalled transfer times out.
type deadlineReader struct {
	r io.Reader
	c *trackedConn
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	d.c.SetReadDeadline(time.Now().Add(ioTimeout))
	return d.r.Read(b)
}

// mailParams shows the MAIL parameters go-smtp parsed, in a fixed order,
// with a leading space when there are any.
func mailParams(o *smtp.MailOptions) string {
	if o == nil {
		return ""
	}
	var b strings.Builder
	if o.Body != "" {
		fmt.Fprintf(&b, " BODY=%s", o.Body)
	}
	if o.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", o.Size)
	}
	if o.UTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if o.RequireTLS {
		b.WriteString(" REQUIRETLS")
	}
	if o.Return != "" {
		fmt.Fprintf(&b, " RET=%s", o.Return)
	}
	if o.EnvelopeID != "" {
		fmt.Fprintf(&b, " ENVID=%s", o.EnvelopeID)
	}
	if o.Auth != nil {
		fmt.Fprintf(&b, " AUTH=<%s>", *o.Auth)
	}
	return b.String()
}

// rcptParams shows the DSN parameters of RCPT (RFC 3461), with a leading
// space when there are any.
func rcptParams(o *smtp.RcptOptions) string {
	if o == nil {
		return ""
	}
	var b strings.Builder
	if len(o.Notify) > 0 {
		n := make([]string, len(o.Notify))
		for i, v := range o.Notify {
			n[i] = string(v)
		}
		fmt.Fprintf(&b, " NOTIFY=%s", strings.Join(n, ","))
	}
	if o.OriginalRecipient != "" {
		fmt.Fprintf(&b, " ORCPT=%s;%s", o.OriginalRecipientType, o.OriginalRecipient)
	}
	return b.String()
}
