// Package smtpd serves the server side of ESMTP (RFC 5321) on one
// connection made of a reader and a writer: sendmail -bs, where Symfony
// Mailer, Laravel and other libraries speak SMTP to the process's standard
// input and output. go-smtp parses the protocol; this package decides what
// each command means for relaymail and hands complete messages to a
// callback that spools them.
//
// It knows nothing of the config, the spool or delivery: the caller passes
// Options with callbacks that check the sender, expand each recipient
// (aliases, qualification) and commit a message.
//
// # Dialogue
//
//   - The greeting and the EHLO reply name Options.Hostname. EHLO offers
//     PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING (BDAT), SMTPUTF8,
//     DSN, SIZE and LIMITS RCPTMAX. No AUTH and no STARTTLS: the client is
//     a local process, and the sender is the local user, as on the command
//     line. BINARYMIME is not offered, because a message is stored with its
//     line endings normalised to CRLF, which would corrupt binary content.
//   - MAIL FROM takes SIZE, BODY=7BIT or 8BITMIME, SMTPUTF8, RET and ENVID;
//     RCPT TO takes NOTIFY (ORCPT is accepted and not kept). The address of
//     MAIL FROM goes through Options.Sender, exactly as -f would; each RCPT
//     TO through Options.Recipient, which may expand it to several
//     addresses. A bare name ("RCPT TO:<postmaster>", "<root>") is taken
//     as Postfix does and RFC 5321 4.5.1 asks, although go-smtp's parser
//     wants a domain (see bare.go). Any number of transactions may follow
//     each other; RSET, NOOP and QUIT work as RFC 5321 says.
//   - The reply to the end of the data (the final "." or BDAT LAST) is
//     "250 2.0.0 Ok: queued as <id>" (or as Options.Accepted words it)
//     once Options.Commit has returned the id of the committed message,
//     and only then.
//   - The session ends at QUIT, at the end of the input, or after
//     Options.Timeout without input (421 4.4.2). Serve then returns the ids
//     of every message committed, in order; delivering them is the
//     caller's business.
//
// # Delivery
//
// Nothing is delivered during the session. The programs that use -bs (PHP's
// Symfony Mailer and Laravel) wait for the process to exit, with proc_close,
// and may send several messages in one session: delivering each before its
// 250, or before the next MAIL, would hold them hostage to the smarthost.
// relaymail's main therefore starts, once Serve has returned, the same
// background delivery as sendmail -odb, or only queues with -odq. Postfix's
// sendmail -bs also only queues.
//
// # Replies to refusals
//
// An address with a control character (CR, LF, NUL...) is refused with 501
// before any callback sees it; a non-ASCII address needs SMTPUTF8 on MAIL
// (RFC 6531 3.4) or gets 553 5.6.7. An error returned by a callback becomes
// the reply:
//
//   - an error that is or wraps go-smtp's *smtp.SMTPError is sent as it is
//     (this is how a message over the size limit gets 552 5.3.4);
//   - an error whose sysexits code says the caller's data is wrong (Usage,
//     DataErr, NoUser, NoHost, Unavailable) is permanent: 501 5.1.7 from
//     Sender, 501 5.1.3 from Recipient, 554 5.6.0 from Commit;
//   - any other error is temporary: 451 4.3.0, so the client keeps the
//     message and may try again. A spool that cannot be written is such an
//     error.
//
// The reply text is the error's message on one line.
//
// # Limits
//
// A message may have DefaultMaxMessageBytes (64 MiB) after dot-unstuffing,
// counted by DATA or by the sum of the BDAT chunks; a larger SIZE= is
// refused at MAIL and a larger message after its data, both 552 5.3.4. A
// line, command or data, may have DefaultMaxLineLength bytes (go-smtp's
// default, RFC 5321 4.5.3.1.6's 1000 doubled); a longer one ends the session
// with 500 5.4.0, as go-smtp does, after 554 5.6.0 for a message that held
// it. go-smtp drops the whole read that holds such a line, so commands
// pipelined in front of it in the same read are lost with it (the data of
// DATA is always read apart from the commands before it, see bare.go). A
// transaction takes DefaultMaxRecipients RCPT commands (452 4.5.3 after
// that). go-smtp treats a bare LF in the data
// as an ordinary byte, not as a line ending: "\n.\n" does not end a message,
// and intake turns each bare LF into CRLF when the message is stored, so no
// SMTP smuggling sequence reaches the smarthost.
//
// # The input ending
//
// A client that goes away in the middle of a message (the input ends in
// DATA or within a BDAT chunk) leaves nothing committed: the data reader
// that Options.Commit gets fails with io.ErrUnexpectedEOF. go-smtp alone
// would take a BDAT chunk cut short by the end of the input as complete;
// this package does not. Serve reports such an ending with an error, after
// returning the ids of the messages committed before it.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"relaymail/internal/sysexits"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxMessageBytes = 64 << 20
	DefaultMaxLineLength   = 2000
	DefaultMaxRecipients   = 1000
	DefaultTimeout         = 5 * time.Minute // Postfix's smtpd_timeout
)

// Options configure a session. The callbacks are required; Serve never
// calls two of them at the same time.
type Options struct {
	Hostname        string        // greeting and EHLO domain; "" = "localhost"
	MaxMessageBytes int64         // 0 = DefaultMaxMessageBytes
	MaxLineLength   int           // 0 = DefaultMaxLineLength
	MaxRecipients   int           // RCPT commands per transaction; 0 = DefaultMaxRecipients
	Timeout         time.Duration // the longest silence of the client; 0 = DefaultTimeout

	// Sender checks the address of MAIL FROM ("" for <>) and returns the
	// envelope sender to use ("" for the null sender).
	Sender func(addr string) (string, error)
	// Recipient checks the address of one RCPT TO and returns the
	// envelope recipients it stands for (aliases expanded, local names
	// qualified), at least one.
	Recipient func(addr string) ([]string, error)
	// Commit reads the message from data (dot-unstuffed, with the line
	// endings the client sent) to its end and commits it with env, or
	// fails and leaves nothing committed. It returns the id of the
	// committed message.
	Commit func(env Envelope, data io.Reader) (id string, err error)
	// Accepted is the text of the 250 reply to a committed message, %s
	// standing for its id; "" = "Ok: queued as %s".
	Accepted string
	// Login, when set, offers AUTH PLAIN, after STARTTLS only, and checks
	// a user's password. With LoginRequired, MAIL needs a login first
	// (530 5.7.0): the listener asks it of clients from other machines.
	Login         func(user, password string) error
	LoginRequired bool
	// MaxErrors ends the session after that many refused commands (MAIL,
	// RCPT, AUTH, data), with 421 and Abort: a client that probes or
	// floods goes. 0: no limit.
	MaxErrors int
	Abort     func()
}

// Envelope is what one transaction says about its message.
type Envelope struct {
	From     string // from Options.Sender; "" is the null sender
	Rcpts    []Rcpt // from Options.Recipient, each address once, in order
	Body     string // "", "7BIT" or "8BITMIME" (BODY=)
	SMTPUTF8 bool   // MAIL had SMTPUTF8
	Size     int64  // SIZE= as declared; 0 when not given
	Return   string // DSN RET: "", "FULL" or "HDRS"
	EnvID    string // DSN ENVID, decoded
}

// Rcpt is one envelope recipient.
type Rcpt struct {
	Addr   string
	Notify []string // DSN NOTIFY: nil, "NEVER", or some of "SUCCESS", "DELAY", "FAILURE"
}

// Serve runs one SMTP session on in and out until QUIT, the end of in, or
// Options.Timeout of silence, and returns the ids of the messages
// committed, in order. It neither closes in nor out.
//
// The error is nil when the client ended the session at a command
// boundary, even if it did not say QUIT. Otherwise it says why the session
// ended and carries a sysexits code: IOErr when in failed or ended in the
// middle of a transaction (that transaction's message was not committed),
// TempFail after the timeout. The ids are valid in either case.
func Serve(in io.Reader, out io.Writer, opts Options) ([]string, error) {
	if opts.Sender == nil || opts.Recipient == nil || opts.Commit == nil {
		return nil, sysexits.Errorf(sysexits.Software, "smtpd: Options needs Sender, Recipient and Commit")
	}
	opts.setDefaults()
	return serve(newConn(in, out, opts.MaxLineLength), opts, nil)
}

// ServeConn is Serve for a network connection (sendmail -bd), which it
// closes when the session ends. With tlsConfig the server offers STARTTLS;
// bare names are then not taken (their filter would sit under the TLS
// layer), and a client must give addresses with a domain.
func ServeConn(nc net.Conn, opts Options, tlsConfig *tls.Config) ([]string, error) {
	defer nc.Close()
	if opts.Sender == nil || opts.Recipient == nil || opts.Commit == nil {
		return nil, sysexits.Errorf(sysexits.Software, "smtpd: Options needs Sender, Recipient and Commit")
	}
	opts.setDefaults()
	c := newConn(nc, nc, opts.MaxLineLength)
	if tlsConfig != nil {
		c.filter.off()
	}
	return serve(c, opts, tlsConfig)
}

// serve runs one session on c.
func serve(c *conn, opts Options, tlsConfig *tls.Config) ([]string, error) {
	s := &server{opts: opts, conn: c}

	srv := smtp.NewServer(backend{s})
	srv.TLSConfig = tlsConfig
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxLineLength = opts.MaxLineLength
	srv.MaxRecipients = opts.MaxRecipients
	srv.ReadTimeout = opts.Timeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.ErrorLog = errorLog{s}
	// Without TLS go-smtp answers AUTH with "523 TLS is required", which
	// would promise AUTH over TLS. Allowed, it offers no mechanism (the
	// session has none) and answers AUTH with 504 5.7.4.
	srv.AllowInsecureAuth = opts.Login == nil // a password only over TLS

	err := srv.Serve(newListener(c))
	// Serve returns once the conn is closed; wait for go-smtp's goroutine
	// to finish with it, then for a BDAT Data that go-smtp does not wait
	// for.
	srv.Shutdown(context.Background())
	s.mu.Lock()
	s.over = true
	s.mu.Unlock()
	s.work.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids
	switch {
	case err != nil && !errors.Is(err, net.ErrClosed):
		return ids, sysexits.Errorf(sysexits.IOErr, "smtp session: %v", err)
	case c.timedOut.Load():
		return ids, sysexits.Errorf(sysexits.TempFail, "no input from the client for %v: session closed", opts.Timeout)
	case c.readFailure() != nil:
		return ids, sysexits.Errorf(sysexits.IOErr, "read from the client: %v", c.readFailure())
	case s.lost:
		return ids, sysexits.Errorf(sysexits.IOErr, "the client went away in the middle of a message: that message was not queued")
	case s.internal != "":
		return ids, sysexits.Errorf(sysexits.Software, "smtp session: %s", s.internal)
	}
	return ids, nil
}

func (o *Options) setDefaults() {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = DefaultMaxLineLength
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = DefaultMaxRecipients
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Accepted == "" {
		o.Accepted = "Ok: queued as %s"
	}
}

// server is the state of one Serve call.
type server struct {
	opts Options
	conn *conn

	cb   sync.Mutex     // held while a callback runs
	work sync.WaitGroup // Data calls in progress

	mu       sync.Mutex
	over     bool // the session has ended: no more Data
	ids      []string
	lost     bool   // the input ended in the middle of a transaction
	internal string // what go-smtp logged: a panic, which it answered with 421
}

// errSessionOver is what a Data called after the end of the session
// returns; no client sees it.
var errSessionOver = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "session over"}

// errorLog receives what go-smtp reports about the connection. Read
// errors are known from the conn already; a panic is kept, on one line
// and without its stack, unless it came after the connection closed:
// go-smtp's goroutine for a BDAT transaction that starts just before the
// input ends finds no session then and panics on it.
type errorLog struct{ s *server }

func (l errorLog) Printf(format string, v ...any) { l.note(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.note(fmt.Sprintln(v...)) }

func (l errorLog) note(msg string) {
	if !strings.HasPrefix(msg, "panic") || l.s.conn.isClosed() {
		return
	}
	msg, _, _ = strings.Cut(msg, "\n")
	l.s.mu.Lock()
	if l.s.internal == "" {
		l.s.internal = oneLine(msg)
	}
	l.s.mu.Unlock()
}

type backend struct{ s *server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s}, nil
}

// session is the transaction in progress. go-smtp calls its methods from
// the connection's goroutine, except that for BDAT it runs Data in a
// goroutine of its own, which may overlap a Reset; so its fields are
// guarded by mu.
type session struct {
	s *server

	mu     sync.Mutex
	errors int    // refused commands, for MaxErrors
	user   string // who logged in with AUTH, or ""
	mailed bool   // MAIL was accepted
	env    Envelope
	seen   map[string]bool
	bdat   *io.PipeReader // the data of the last BDAT transaction
}

// Reset is called for RSET, for a repeated EHLO and after every message.
func (se *session) Reset() {
	se.mu.Lock()
	defer se.mu.Unlock()
	se.mailed, se.env, se.seen = false, Envelope{}, nil
}

// Logout is called when the connection closes. A MAIL accepted and not
// finished by then, at the end of the input, is a client gone away.
func (se *session) Logout() error {
	se.mu.Lock()
	mailed := se.mailed
	se.mu.Unlock()
	if mailed && se.s.conn.inputEnded() {
		se.s.mu.Lock()
		se.s.lost = true
		se.s.mu.Unlock()
	}
	return nil
}

// counted counts a refusal against Options.MaxErrors; past it, the reply
// is 421 and the session is aborted.
func (se *session) counted(err error) error {
	if err == nil || se.s.opts.MaxErrors <= 0 {
		return err
	}
	var se2 *smtp.SMTPError
	if errors.As(err, &se2) && se2.Code < 400 {
		return err // the 250 of Data
	}
	se.mu.Lock()
	se.errors++
	over := se.errors >= se.s.opts.MaxErrors
	se.mu.Unlock()
	if !over {
		return err
	}
	if se.s.opts.Abort != nil {
		time.AfterFunc(100*time.Millisecond, se.s.opts.Abort) // after the reply
	}
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: fmt.Sprintf("too many errors (%d): closing", se.s.opts.MaxErrors)}
}

// AuthMechanisms offers PLAIN when Options.Login is set (go-smtp offers
// it only once TLS is on).
func (se *session) AuthMechanisms() []string {
	if se.s.opts.Login == nil {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth checks AUTH PLAIN with Options.Login.
func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.s.opts.Login == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, password string) error {
		if identity != "" && identity != user {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authorization identity must be the user"}
		}
		se.s.cb.Lock()
		err := se.s.opts.Login(user, password)
		se.s.cb.Unlock()
		if err != nil {
			return se.counted(&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"})
		}
		se.mu.Lock()
		se.user = user
		se.mu.Unlock()
		return nil
	}), nil
}

func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	return se.counted(se.mail(from, opts))
}

func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return se.counted(se.rcpt(to, opts))
}

func (se *session) mail(from string, opts *smtp.MailOptions) error {
	se.waitBDAT()
	if se.s.conn.isClosed() {
		return errSessionOver // see Data
	}
	se.mu.Lock()
	user := se.user
	se.mu.Unlock()
	if se.s.opts.LoginRequired && user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required (AUTH after STARTTLS)"}
	}
	from = se.s.conn.filter.unbare(from)
	if err := checkAddr(from, opts.UTF8, "sender", smtp.EnhancedCode{5, 1, 7}); err != nil {
		return err
	}
	se.s.cb.Lock()
	sender, err := se.s.opts.Sender(from)
	se.s.cb.Unlock()
	if err != nil {
		return reply(err, 501, smtp.EnhancedCode{5, 1, 7})
	}
	env := Envelope{
		From:     sender,
		Body:     string(opts.Body),
		SMTPUTF8: opts.UTF8,
		Size:     opts.Size,
		Return:   string(opts.Return),
		EnvID:    opts.EnvelopeID,
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	se.mailed, se.env, se.seen = true, env, map[string]bool{}
	return nil
}

func (se *session) rcpt(to string, opts *smtp.RcptOptions) error {
	to = se.s.conn.filter.unbare(to)
	se.mu.Lock()
	utf8 := se.env.SMTPUTF8
	se.mu.Unlock()
	if err := checkAddr(to, utf8, "recipient", smtp.EnhancedCode{5, 1, 3}); err != nil {
		return err
	}
	se.s.cb.Lock()
	addrs, err := se.s.opts.Recipient(to)
	se.s.cb.Unlock()
	if err != nil {
		return reply(err, 501, smtp.EnhancedCode{5, 1, 3})
	}
	if len(addrs) == 0 {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf("<%s> stands for no recipient", to)}
	}
	var notify []string
	for _, n := range opts.Notify {
		notify = append(notify, string(n))
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	for _, a := range addrs {
		if k := dedupKey(a); !se.seen[k] {
			se.seen[k] = true
			se.env.Rcpts = append(se.env.Rcpts, Rcpt{Addr: a, Notify: notify})
		}
	}
	return nil
}

// Data commits the message. It returns the 250 reply with the id as an
// *smtp.SMTPError, the only way go-smtp lets the text of that reply be set.
func (se *session) Data(r io.Reader) error {
	se.s.conn.dataStarted.Store(true)
	if se.s.conn.isClosed() {
		// go-smtp still runs commands it had buffered after a QUIT (or
		// a fatal reply): the client has seen the end of the session and
		// expects nothing more to happen.
		return errSessionOver
	}
	// go-smtp may start the goroutine of a BDAT transaction just before
	// the input ends; once Serve is done waiting, such a Data commits
	// nothing.
	se.s.mu.Lock()
	if se.s.over {
		se.s.mu.Unlock()
		return errSessionOver
	}
	se.s.work.Add(1)
	se.s.mu.Unlock()
	defer se.s.work.Done()
	se.mu.Lock()
	if pr, ok := r.(*io.PipeReader); ok {
		se.bdat = pr
	}
	env := se.env
	env.Rcpts = append([]Rcpt(nil), se.env.Rcpts...)
	ok := se.mailed && len(env.Rcpts) > 0
	se.mu.Unlock()
	if !ok {
		// go-smtp checks MAIL and RCPT first; a BDAT chunk racing a RSET
		// can still get here.
		io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no valid recipients"}
	}
	data := &dataReader{r: r, c: se.s.conn}
	se.s.cb.Lock()
	id, err := se.s.opts.Commit(env, data)
	se.s.cb.Unlock()
	if err != nil {
		if se.s.conn.inputEnded() {
			se.s.mu.Lock()
			se.s.lost = true
			se.s.mu.Unlock()
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// go-smtp ends the session right after this reply.
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
				Message: fmt.Sprintf("message has a line longer than %d bytes", se.s.opts.MaxLineLength)}
		}
		return reply(err, 554, smtp.EnhancedCode{5, 6, 0})
	}
	se.s.mu.Lock()
	se.s.ids = append(se.s.ids, id)
	se.s.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: oneLine(fmt.Sprintf(se.s.opts.Accepted, id))}
}

// waitBDAT waits, before a new transaction, until go-smtp's goroutine
// for the last BDAT transaction is done. After a RSET or a refused chunk
// go-smtp does not wait for that goroutine, which, once Data has returned,
// sends the result to a channel it reads from a field of the connection;
// the next BDAT replaces that field, so without this wait the old result
// could be taken for the new message's (and the race detector sees the
// field's use). The goroutine's last act is to close the data's reader, and
// a read of a pipe whose writer was closed tells whether it has happened:
// io.ErrClosedPipe once it has, the writer's error before. The pipe's lock
// orders that close, and the send before it, before the new transaction.
func (se *session) waitBDAT() {
	se.mu.Lock()
	pr := se.bdat
	se.bdat = nil
	se.mu.Unlock()
	if pr == nil {
		return
	}
	// A Data aborted by the reset ends as soon as it sees the broken pipe;
	// the bound only keeps a bug from hanging the session.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Microsecond) {
		// Read with an empty buffer does not block here: go-smtp closes
		// the writer before it lets a new MAIL through.
		if _, err := pr.Read(nil); err == io.ErrClosedPipe {
			return
		}
	}
}

// dataReader is the message as go-smtp hands it over, except that an end
// of data that coincides with the end of the input is an error. go-smtp
// copies a BDAT chunk with io.Copy, which takes the input ending before the
// chunk's size as the chunk's end; DATA needs the final "." and cannot end
// that way, and no chunk or data ever needs a read past its last byte, so
// a legitimate end is always seen before the input's.
type dataReader struct {
	r io.Reader
	c *conn
}

func (d *dataReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF && d.c.inputEnded() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// checkAddr refuses what no callback should see: control characters (a
// bare CR survives go-smtp's line reading), and a non-ASCII address
// without SMTPUTF8 (RFC 6531 3.4).
func checkAddr(addr string, utf8 bool, what string, enh smtp.EnhancedCode) error {
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c < ' ' || c == 0x7f:
			return &smtp.SMTPError{Code: 501, EnhancedCode: enh, Message: fmt.Sprintf("bad %s address: contains a control character", what)}
		case c >= 0x80 && !utf8:
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: fmt.Sprintf("non-ASCII %s address needs MAIL FROM with SMTPUTF8", what)}
		}
	}
	return nil
}

// reply turns a callback's error into the reply, as the package
// documentation says; code and enh are the permanent reply.
func reply(err error, code int, enh smtp.EnhancedCode) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		c := *se
		c.Message = oneLine(c.Message)
		return &c
	}
	switch sysexits.CodeOf(err) {
	case sysexits.Usage, sysexits.DataErr, sysexits.NoUser, sysexits.NoHost, sysexits.Unavailable:
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: oneLine(err.Error())}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: oneLine(err.Error())}
}

// oneLine makes s fit one reply line: control characters become spaces,
// and it is cut to 400 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = strings.ToValidUTF8(s[:400], "")
	}
	return s
}

// dedupKey compares addresses as mail servers do: the domain ignores case,
// the local part may not (RFC 5321 2.4).
func dedupKey(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i] + strings.ToLower(addr[i:])
}
