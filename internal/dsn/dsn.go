// Package dsn writes delivery status notifications (bounces): RFC 3464
// reports in an RFC 6522 multipart/report, built with go-message.
//
// # Output rules
//
//   - The message is a multipart/report; report-type=delivery-status with
//     three parts: a text/plain UTF-8 explanation for the person who sent
//     the message, a message/delivery-status for programs, and the
//     original's header as text/rfc822-headers (or, with RET=FULL and an
//     original no larger than Options.MaxFull, the whole original as
//     message/rfc822).
//   - Every line ends in CRLF and holds at most 998 bytes before it (RFC
//     5322 2.1.1). Our own header fields and delivery-status fields are
//     folded at spaces before 78 bytes where they can be; a word too long
//     for one line is cut, the continuation starting with a space.
//   - Everything we write is 7-bit: the explanation is quoted-printable
//     when it holds non-ASCII text. Only two things can carry 8-bit bytes:
//     the copy of the original (its header may be RFC 6532 UTF-8, its body
//     8BITMIME), labelled "Content-Transfer-Encoding: 8bit", and a UTF-8
//     To address. Result.EightBit tells the caller.
//   - Values that come from senders or remote servers (reply text,
//     addresses, ENVID) cannot start a field or a line of their own:
//     control characters, CR and LF included, become spaces and runs of
//     spaces shrink to one. In the delivery-status part, other non-ASCII
//     characters become "?", except in addresses, which use the RFC 6533
//     "utf-8" address type with \x{HEX} escapes.
//   - The original is streamed: memory does not grow with its size. Its
//     line endings are normalised as intake does (LF, CRLF and bare CR each
//     end a line); a line longer than 998 bytes is cut, in the header as a
//     folded continuation. Its header is the lines up to the first empty
//     line or the first line that is neither a header field nor a
//     continuation, as in package intake.
package dsn

import (
	"bufio"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"

	"relaymail/internal/address"
	"relaymail/internal/sysexits"
)

// DefaultMaxFull bounds the size of an original returned whole when
// Options.MaxFull is 0 or less.
const DefaultMaxFull = 10 << 20

// Recipient is one recipient the report is about.
type Recipient struct {
	Addr   string // final recipient (Final-Recipient: rfc822; addr)
	ORcpt  string // original recipient as the sender wrote it, decoded from xtext ("" = omit Original-Recipient)
	Action string // "failed", "delayed" or "delivered"; "" means "failed"

	// Status is the enhanced status code ("5.1.1") as the server sent it.
	// When it is empty or malformed it is derived from Code (5xx: 5.0.0,
	// 4xx: 4.0.0), else from Action (failed: 5.0.0, delayed: 4.0.0,
	// delivered: 2.0.0).
	Status string
	Code   int // SMTP reply code, 0 if none

	// Reply is the remote reply text after the code, one line; "" when
	// the failure was local, e.g. expiry. Without a Code only the
	// explanation shows it.
	Reply string
	// Hint says what the sending system's administrator can do, one
	// line, or "" (the text shows it; the report does not).
	Hint        string
	Reason      string    // our words when there is no remote reply, e.g. "message expired after 5 days in the queue"
	RemoteMTA   string    // "smtp.example.com" (Remote-MTA: dns; ...) or ""
	LastAttempt time.Time // Last-Attempt-Date; zero = omit
}

// Options describes the report and where it goes.
type Options struct {
	ReportingMTA       string           // our hostname (Reporting-MTA: dns; host); required
	From               string           // the bounce's From address, e.g. "MAILER-DAEMON@example.com"; required
	To                 string           // the original envelope sender; required (callers never bounce to <>)
	OriginalEnvelopeID string           // ENVID if the original had one, decoded from xtext (Original-Envelope-Id)
	Arrival            time.Time        // Arrival-Date; zero = omit
	Now                func() time.Time // for Date and the Message-ID; nil = time.Now
	Rand               io.Reader        // for the Message-ID and the MIME boundary; nil = crypto/rand
	Hostname           string           // Message-ID right side; "" = ReportingMTA
	Return             string           // "FULL" or "HDRS" (RET, case-insensitive); "" = HDRS
	MaxFull            int64            // with FULL, above this size attach the header only; 0 or less = DefaultMaxFull
}

// Result describes the report Write wrote.
type Result struct {
	// EightBit reports that a byte >= 0x80 was written: the report must go
	// out with BODY=8BITMIME (and SMTPUTF8 when the To address or the
	// returned header is UTF-8).
	EightBit  bool
	MessageID string // the report's Message-ID, without angle brackets
	Size      int64  // bytes written to w
}

const (
	softLine = 78  // RFC 5322 2.1.1: lines SHOULD stay within 78 bytes
	hardLine = 998 // and MUST stay within 998
	bufSize  = 32 << 10
)

// Write writes a complete RFC 5322 message to w: the report about recips,
// addressed to opts.To, following the rules in the package documentation.
// original is read from its current position; if it is also an io.Seeker
// (a spool file), Write reads it twice, first to learn whether its header
// (or, with FULL, all of it) holds 8-bit bytes and how large it is, then to
// copy it, and leaves it positioned where the copy stopped. Any other
// reader is read once: its header is labelled 8bit, since Write cannot
// look ahead, and with FULL only its header is returned, since its size is
// unknown.
//
// Errors carry a [sysexits.Code]: Software for invalid Options or
// Recipient values, DataErr for an opts.To that is not a valid address,
// OSErr when Rand fails, IOErr when reading or seeking original fails and
// TempFail when writing w fails (the cause is kept for errors.Is). Nothing
// is written before the arguments are checked, original is measured and
// Rand is read; after a later error w holds part of a message and the
// caller must discard it. On error the Result is zero.
func Write(w io.Writer, original io.Reader, recips []Recipient, opts Options) (Result, error) {
	rep, err := newReport(recips, opts)
	if err != nil {
		return Result{}, err
	}
	att, err := measure(original, rep.full, rep.maxFull)
	if err != nil {
		return Result{}, err
	}
	var rnd [12 + 15]byte
	if _, err := io.ReadFull(rep.rand, rnd[:]); err != nil {
		return Result{}, sysexits.Errorf(sysexits.OSErr, "generate bounce message-id: %v", err)
	}
	now := rep.now()
	res := Result{MessageID: messageID(now, rnd[:12], rep.hostname)}
	boundary := "bounce." + lowerBase32.EncodeToString(rnd[12:])

	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, bufSize)
	if err := rep.write(bw, original, att, now, res.MessageID, boundary); err != nil {
		return Result{}, err
	}
	if err := bw.Flush(); err != nil {
		return Result{}, writeErr(err)
	}
	res.Size = cw.n
	res.EightBit = cw.eightBit
	return res, nil
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// messageID returns "20060102150405.<20 base32 characters>@host", the
// shape intake gives the Message-IDs it adds.
func messageID(t time.Time, rnd []byte, host string) string {
	return t.UTC().Format("20060102150405") + "." + lowerBase32.EncodeToString(rnd) + "@" + host
}

// report is Options and Recipients checked and rendered.
type report struct {
	opts     Options
	now      func() time.Time
	rand     io.Reader
	hostname string
	full     bool
	maxFull  int64
	recips   []recipient
}

// recipient is a Recipient with defaults applied and values cleaned.
type recipient struct {
	Recipient
	status      string // valid enhanced status code
	diagnostic  string // Diagnostic-Code value, "" = omit
	serverReply string // the reply as the explanation shows it, "" = none
}

func newReport(recips []Recipient, opts Options) (*report, error) {
	rep := &report{opts: opts, now: opts.Now, rand: opts.Rand, hostname: opts.Hostname, maxFull: opts.MaxFull}
	if rep.now == nil {
		rep.now = time.Now
	}
	if rep.rand == nil {
		rep.rand = rand.Reader
	}
	if opts.ReportingMTA == "" || address.Check("postmaster@"+opts.ReportingMTA) != nil {
		return nil, sysexits.Errorf(sysexits.Software, "bounce: invalid reporting MTA name %q", opts.ReportingMTA)
	}
	if rep.hostname == "" {
		rep.hostname = opts.ReportingMTA
	}
	if address.Check("postmaster@"+rep.hostname) != nil {
		return nil, sysexits.Errorf(sysexits.Software, "bounce: invalid hostname %q for message-id", rep.hostname)
	}
	if err := address.Check(opts.From); err != nil || address.IsLocal(opts.From) {
		return nil, sysexits.Errorf(sysexits.Software, "bounce: invalid From address %q", opts.From)
	}
	if opts.To == "" {
		return nil, sysexits.Errorf(sysexits.Software, "bounce: no recipient: the null sender gets no bounce")
	}
	if err := address.Check(opts.To); err != nil {
		return nil, sysexits.Errorf(sysexits.DataErr, "bounce to %q: %v", opts.To, err)
	}
	switch strings.ToUpper(opts.Return) {
	case "", "HDRS":
	case "FULL":
		rep.full = true
	default:
		return nil, sysexits.Errorf(sysexits.Software, "bounce: RET must be FULL or HDRS, not %q", opts.Return)
	}
	if rep.maxFull <= 0 {
		rep.maxFull = DefaultMaxFull
	}
	if len(recips) == 0 {
		return nil, sysexits.Errorf(sysexits.Software, "bounce: no recipients to report on")
	}
	for i, r := range recips {
		rr, err := newRecipient(r)
		if err != nil {
			return nil, sysexits.Errorf(sysexits.Software, "bounce: recipient %d: %v", i+1, err)
		}
		rep.recips = append(rep.recips, rr)
	}
	return rep, nil
}

func newRecipient(r Recipient) (recipient, error) {
	rr := recipient{Recipient: r}
	if clean(r.Addr) == "" {
		return rr, fmt.Errorf("no address")
	}
	switch r.Action {
	case "":
		rr.Action = "failed"
	case "failed", "delayed", "delivered":
	default:
		return rr, fmt.Errorf("action must be failed, delayed or delivered, not %q", r.Action)
	}
	if r.Code != 0 && (r.Code < 200 || r.Code > 599) {
		return rr, fmt.Errorf("SMTP reply code %d out of range", r.Code)
	}
	given := validStatus(r.Status)
	switch {
	case given:
		rr.status = r.Status
	case r.Code/100 == 5:
		rr.status = "5.0.0"
	case r.Code/100 == 4:
		rr.status = "4.0.0"
	case rr.Action == "delayed":
		rr.status = "4.0.0"
	case rr.Action == "delivered":
		rr.status = "2.0.0"
	default:
		rr.status = "5.0.0"
	}
	if r.Code != 0 {
		// The reply as the server sent it: go-smtp hands the enhanced code
		// and the text separately, so put the code back unless the text
		// still starts with it.
		reply := strconv.Itoa(r.Code)
		text := clean(r.Reply)
		if given && text != r.Status && !strings.HasPrefix(text, r.Status+" ") {
			reply += " " + r.Status
		}
		if text != "" {
			reply += " " + text
		}
		rr.diagnostic = "smtp; " + ascii(reply)
		rr.serverReply = reply
	} else {
		// Without a code it is no SMTP diagnostic (RFC 3464 2.3.6), but
		// the sender may still want to read it.
		rr.serverReply = clean(r.Reply)
	}
	return rr, nil
}

// validStatus reports whether s is an RFC 3463 enhanced status code.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// subject returns the report's Subject, after the worst action reported.
func (rep *report) subject() string {
	delayed := false
	for _, r := range rep.recips {
		switch r.Action {
		case "failed":
			return "Undelivered Mail Returned to Sender"
		case "delayed":
			delayed = true
		}
	}
	if delayed {
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

func (rep *report) write(w io.Writer, original io.Reader, att attachment, now time.Time, msgID, boundary string) error {
	// RFC 6522 3: the report-type parameter names the second part.
	fields := []string{
		field("From", "Mail Delivery System <"+rep.opts.From+">"),
		field("To", "<"+rep.opts.To+">"),
		field("Subject", rep.subject()),
		field("Date", now.Format(time.RFC1123Z)),
		field("Message-ID", "<"+msgID+">"),
		field("MIME-Version", "1.0"),
		field("Auto-Submitted", "auto-replied"), // RFC 3834 5
		field("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`),
	}
	if att.eightBit {
		// RFC 2045 6.4: a multipart is 7bit, 8bit or binary, and says
		// 8bit when a part is.
		fields = append(fields, field("Content-Transfer-Encoding", "8bit"))
	}
	if err := textproto.WriteHeader(w, header(fields...)); err != nil {
		return writeErr(err)
	}
	if _, err := io.WriteString(w, "This is a MIME-encapsulated message.\r\n\r\n"); err != nil {
		return writeErr(err)
	}
	mw := textproto.NewMultipartWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return sysexits.Errorf(sysexits.Software, "bounce: %v", err)
	}

	text := rep.explanation(att)
	enc := "7bit"
	if !isASCII(text) {
		enc = "quoted-printable"
	}
	pw, err := mw.CreatePart(header(
		field("Content-Description", "Notification"),
		field("Content-Type", "text/plain; charset=utf-8"),
		field("Content-Transfer-Encoding", enc),
	))
	if err != nil {
		return writeErr(err)
	}
	if enc == "7bit" {
		_, err = io.WriteString(pw, text)
	} else {
		qw := quotedprintable.NewWriter(pw)
		if _, err = io.WriteString(qw, text); err == nil {
			err = qw.Close()
		}
	}
	if err != nil {
		return writeErr(err)
	}

	pw, err = mw.CreatePart(header(
		field("Content-Description", "Delivery report"),
		field("Content-Type", "message/delivery-status"),
	))
	if err != nil {
		return writeErr(err)
	}
	if _, err := io.WriteString(pw, rep.deliveryStatus()); err != nil {
		return writeErr(err)
	}

	desc, ctype := "Undelivered Message Headers", "text/rfc822-headers" // RFC 6522 4
	if att.full {
		desc, ctype = "Undelivered Message", "message/rfc822"
	}
	if rep.delivered() {
		desc = strings.TrimPrefix(desc, "Undelivered ")
	}
	fields = []string{field("Content-Description", desc), field("Content-Type", ctype)}
	if att.eightBit {
		fields = append(fields, field("Content-Transfer-Encoding", "8bit"))
	}
	pw, err = mw.CreatePart(header(fields...))
	if err != nil {
		return writeErr(err)
	}
	c := newCopier(original, pw)
	more, err := c.header()
	if err == nil && more && att.full {
		err = c.body()
	}
	if err != nil {
		return err
	}
	if err := mw.Close(); err != nil {
		return writeErr(err)
	}
	return nil
}

// delivered reports whether every recipient was delivered.
func (rep *report) delivered() bool {
	for _, r := range rep.recips {
		if r.Action != "delivered" {
			return false
		}
	}
	return true
}

// deliveryStatus returns the body of the message/delivery-status part:
// the per-message fields, then a group of per-recipient fields for each
// recipient, each group ending with an empty line (RFC 3464 2.1).
func (rep *report) deliveryStatus() string {
	var b strings.Builder
	o := rep.opts
	// RFC 3464 2.2
	if id := ascii(clean(o.OriginalEnvelopeID)); id != "" {
		b.WriteString(field("Original-Envelope-Id", id))
	}
	b.WriteString(field("Reporting-MTA", "dns; "+o.ReportingMTA))
	if !o.Arrival.IsZero() {
		b.WriteString(field("Arrival-Date", o.Arrival.Format(time.RFC1123Z)))
	}
	// RFC 3464 2.3
	for _, r := range rep.recips {
		b.WriteString("\r\n")
		if r.ORcpt != "" {
			b.WriteString(field("Original-Recipient", typedAddress(r.ORcpt)))
		}
		b.WriteString(field("Final-Recipient", typedAddress(r.Addr)))
		b.WriteString(field("Action", r.Action))
		b.WriteString(field("Status", r.status))
		if mta := ascii(clean(r.RemoteMTA)); mta != "" {
			b.WriteString(field("Remote-MTA", "dns; "+mta))
		}
		if r.diagnostic != "" {
			b.WriteString(field("Diagnostic-Code", r.diagnostic))
		}
		if !r.LastAttempt.IsZero() {
			b.WriteString(field("Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z)))
		}
	}
	return b.String()
}

// typedAddress returns addr with its RFC 3464 address type: "rfc822; addr"
// for an ASCII address, else RFC 6533 3's "utf-8; " in the 7-bit
// utf-8-addr-xtext form (the UTF-8 forms need message/global-delivery-status):
// characters outside QCHAR (non-ASCII, space, "+", "=", "\") become
// \x{HEX}.
func typedAddress(addr string) string {
	addr = clean(addr)
	if isASCII(addr) {
		return "rfc822; " + addr
	}
	var b strings.Builder
	b.WriteString("utf-8; ")
	for _, r := range addr {
		if r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%02X}`, r)
		}
	}
	return b.String()
}

// header returns a header holding fields, raw "Name: value\r\n" lines, in
// order. Raw fields keep our spelling of names ("Message-ID", not
// "Message-Id") and our folding.
func header(fields ...string) textproto.Header {
	var h textproto.Header
	// AddRaw inserts at the top, so add bottom-up.
	for i := len(fields) - 1; i >= 0; i-- {
		h.AddRaw([]byte(fields[i]))
	}
	return h
}

// field returns "Name: value\r\n", value being one line whose words are
// separated by single spaces. It folds at a space before a line would
// pass 78 bytes; a word that would pass 998 is cut, its rest continuing on
// the next line after a space.
func field(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(':')
	n := len(name) + 1 // bytes on the current line
	words := 0         // words on the current line
	for _, word := range strings.Split(value, " ") {
		if words > 0 && n+1+len(word) > softLine {
			b.WriteString("\r\n")
			n, words = 0, 0
		}
		b.WriteByte(' ')
		n++
		for n+len(word) > hardLine {
			cut := hardLine - n
			for cut > 0 && !utf8.RuneStart(word[cut]) {
				cut--
			}
			if cut == 0 { // a rune cannot start here: leave it for the next line
				cut = hardLine - n
			}
			b.WriteString(word[:cut])
			b.WriteString("\r\n ")
			word = word[cut:]
			n = 1
		}
		b.WriteString(word)
		n += len(word)
		words++
	}
	b.WriteString("\r\n")
	return b.String()
}

// clean returns s as a single line: control and space characters
// (including CR, LF, NEL and U+2028) become spaces, runs of spaces shrink
// to one and spaces at either end go. Invalid UTF-8 becomes U+FFFD.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ascii replaces each non-ASCII character of s by "?": RFC 3464 fields
// are US-ASCII text.
func ascii(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r >= utf8.RuneSelf {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func has8bit(p []byte) bool {
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

func readErr(err error) error {
	return sysexits.Errorf(sysexits.IOErr, "bounce: read original message: %w", err)
}

func writeErr(err error) error {
	return sysexits.Errorf(sysexits.TempFail, "write bounce: %w", err)
}

// countWriter counts the bytes it passes on and notes 8-bit ones.
type countWriter struct {
	w        io.Writer
	n        int64
	eightBit bool
}

func (cw *countWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	if !cw.eightBit {
		cw.eightBit = has8bit(p[:n])
	}
	return n, err
}
