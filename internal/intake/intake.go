// Package intake turns a message as sendmail(1) receives it on stdin into
// the bytes that are spooled and sent: a completed header, then the body,
// with CRLF line endings. It follows what Postfix's sendmail and cleanup do.
//
// # Output rules
//
//   - Every line ends in CRLF. LF, CRLF and a bare CR each end a line ("\r\r\n"
//     is two line endings), and a last line without an ending gets one. No
//     bare CR or LF comes out, so SMTP smuggling sequences cannot form.
//   - Unless Options.IgnoreDots, a line holding only "." ends the input;
//     nothing after it is read or written. Dots are never added or removed:
//     "..x" stays "..x" (dot-stuffing is the SMTP client's job).
//   - A first line starting with "From " or ">From " (an mbox separator) is
//     dropped.
//   - The header is the lines up to the first empty line, or up to the first
//     line that is neither a header field ("Name:", the name printable ASCII
//     without ":", optionally followed by spaces or tabs before the colon)
//     nor a continuation line (starting with a space or tab). Such a line
//     starts the body. Output always has exactly one empty line between
//     header and body, even for a message with no header or no body.
//   - Header fields keep their order and their exact bytes (after line
//     ending normalisation), except that Bcc and Resent-Bcc fields are
//     removed.
//   - Missing fields are appended at the end of the header, in this order:
//     Date, Message-ID, From (only when Options.From is set). Resent-*
//     fields are never added.
//   - The body is streamed: memory does not grow with message size or line
//     length.
package intake

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"relaymail/internal/address"
	"relaymail/internal/lines"
	"relaymail/internal/sysexits"
)

const (
	// DefaultMaxHeaderBytes bounds the header block when
	// Options.MaxHeaderBytes is 0.
	DefaultMaxHeaderBytes = 1 << 20

	bufSize = 64 << 10

	// maxNamePeek bounds how far into a line we look for the colon of a
	// header field. RFC 5322 2.1.1 caps lines at 998 bytes; Postfix decides
	// on its first 2048-byte record.
	maxNamePeek = 1000
)

// Options says how to read and complete a message.
type Options struct {
	IgnoreDots        bool  // -i / -oi: a line holding a single "." does not end the message
	ExtractRecipients bool  // -t: take recipients from the header
	MaxHeaderBytes    int   // bound on the header block, line endings counted as CRLF; 0 or less means DefaultMaxHeaderBytes
	MaxBytes          int64 // bound on the whole message as written; 0 means none
	// RewriteFrom, when set, is asked about each From field, given its
	// addresses (nil when it does not parse), and may return an address
	// ("" keeps the field): the first such field becomes a From of that
	// address, its display name kept when it had one address; any later
	// one is dropped, so that no From the rewriting did not choose is
	// left; and with replyTo the first old value becomes Reply-To unless
	// the message has one.
	RewriteFrom func(addrs []string) (newAddr string, replyTo bool)
	// QualifyDomain, when set, is added to bare names in the address
	// fields (From, To, Cc, Reply-To, Sender and their Resent- forms):
	// "To: root" becomes "To: root@example.com".
	QualifyDomain string
	Hostname      string           // right side of a generated Message-ID; "" means "localhost"
	From          string           // complete From header value to add when the message has none ("" = don't add)
	Now           func() time.Time // for Date and the Message-ID; nil = time.Now
	Rand          io.Reader        // for the Message-ID; nil = crypto/rand
}

// Result describes what Copy wrote.
type Result struct {
	// Recipients holds, with ExtractRecipients, the addr-specs of the To,
	// Cc and Bcc fields, or of Resent-To, Resent-Cc and Resent-Bcc instead
	// when any Resent- field is present (RFC 5322 3.6.6), in header order,
	// neither deduplicated nor qualified.
	Recipients []string
	Size       int64  // bytes written to w
	EightBit   bool   // a byte >= 0x80 was written, in the header or the body
	MessageID  string // the message's Message-ID, found or added, without angle brackets
}

// Copy reads a message from r, completes its header and writes it to w with
// CRLF line endings, following the rules in the package documentation.
//
// Errors carry a [sysexits.Code]: DataErr for a header over the bound, a NUL
// byte in the header, a bad address in a recipient field with
// ExtractRecipients, or an Options.From holding a line break; IOErr when
// reading r fails; TempFail when writing w fails (the cause is kept for
// errors.Is); OSErr when Rand fails; Software for an invalid Hostname.
// Nothing is written before the whole header has been read and checked, so a
// header error leaves w untouched; after another error w holds part of the
// message and the caller must discard it. On error the Result is zero.
func Copy(w io.Writer, r io.Reader, opts Options) (Result, error) {
	host := opts.Hostname
	if host == "" {
		host = "localhost"
	}
	if address.Check("postmaster@"+host) != nil {
		return Result{}, sysexits.Errorf(sysexits.Software, "invalid hostname %q for message-id", host)
	}
	if strings.ContainsAny(opts.From, "\r\n\x00") {
		return Result{}, sysexits.Errorf(sysexits.DataErr, "cannot add From header %q: contains a line break or NUL", opts.From)
	}
	limit := opts.MaxHeaderBytes
	if limit <= 0 {
		limit = DefaultMaxHeaderBytes
	}
	c := &copier{opts: opts, br: bufio.NewReaderSize(r, bufSize)}
	c.bw = bufio.NewWriterSize(&c.cw, bufSize)
	c.cw.w, c.cw.max = w, opts.MaxBytes

	for _, prefix := range []string{"From ", ">From "} {
		mbox, err := c.startsWith(prefix)
		if err != nil {
			return Result{}, readErr(err)
		}
		if mbox {
			if err := c.skipLine(); err != nil {
				return Result{}, err
			}
			break
		}
	}
	block, more, err := c.readHeader(limit)
	if err != nil {
		return Result{}, err
	}
	res, err := c.writeHeader(block, host)
	if err != nil {
		return Result{}, err
	}
	if more {
		if err := c.copyBody(); err != nil {
			return Result{}, err
		}
	}
	if err := c.bw.Flush(); err != nil {
		return Result{}, writeErr(err)
	}
	res.Size = c.cw.n
	res.EightBit = c.eightBit
	return res, nil
}

func readErr(err error) error {
	return sysexits.Errorf(sysexits.IOErr, "read message: %w", err)
}

func writeErr(err error) error {
	var tl *TooLargeError
	if errors.As(err, &tl) {
		return sysexits.Wrap(sysexits.DataErr, err)
	}
	return sysexits.Errorf(sysexits.TempFail, "write message: %w", err)
}

// TooLargeError is a message over Options.MaxBytes. Nothing past the limit
// was written.
type TooLargeError struct{ Max int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message is larger than the limit of %d bytes (max_message_size)", e.Max)
}

type copier struct {
	opts     Options
	br       *bufio.Reader
	bw       *bufio.Writer
	cw       countWriter
	eightBit bool
}

type countWriter struct {
	w   io.Writer
	n   int64
	max int64 // 0: no limit
}

func (cw *countWriter) Write(p []byte) (int, error) {
	if cw.max > 0 && cw.n+int64(len(p)) > cw.max {
		return 0, &TooLargeError{Max: cw.max}
	}
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

// piece returns the next piece of the current line (see lines.Piece).
func (c *copier) piece() ([]byte, bool, error) { return lines.Piece(c.br) }

// skipLine drops the rest of the current line.
func (c *copier) skipLine() error {
	for {
		_, eol, err := c.piece()
		if err == io.EOF || eol {
			return nil
		}
		if err != nil {
			return readErr(err)
		}
	}
}

// startsWith reports whether the input at the current position starts with
// prefix. It reads one byte at a time, so it never waits for input beyond
// the line that decides (someone may be typing the message).
func (c *copier) startsWith(prefix string) (bool, error) {
	for k := 1; k <= len(prefix); k++ {
		p, err := c.br.Peek(k)
		if len(p) < k {
			if err == io.EOF {
				err = nil
			}
			return false, err
		}
		if p[k-1] != prefix[k-1] {
			return false, nil
		}
	}
	return true, nil
}

// atDot reports whether, at the start of a line, that line holds only ".".
func (c *copier) atDot() (bool, error) {
	if c.opts.IgnoreDots {
		return false, nil
	}
	dot, err := c.startsWith(".")
	if err != nil {
		return false, readErr(err)
	}
	if !dot {
		return false, nil
	}
	p, err := c.br.Peek(2)
	switch {
	case len(p) == 2:
		return p[1] == '\r' || p[1] == '\n', nil
	case err == io.EOF:
		return true, nil
	}
	return false, readErr(err)
}

// The line kinds of lines.Classify.
type lineKind = lines.Kind

const (
	lineEOF          = lines.EOF
	lineEmpty        = lines.Empty
	lineField        = lines.Field
	lineContinuation = lines.Continuation
	lineBody         = lines.Body
)

// classify is lines.Classify.
func classify(p []byte, haveField bool) (lineKind, int, bool) { return lines.Classify(p, haveField) }

// headerLine classifies the line at the current position of the header
// and returns the field name of a field line. It peeks no further than the
// line needs.
func (c *copier) headerLine(haveField bool) (lineKind, string, error) {
	n := min(max(c.br.Buffered(), 1), maxNamePeek)
	for {
		p, err := c.br.Peek(n)
		if err != nil && err != io.EOF {
			return 0, "", readErr(err)
		}
		if len(p) == 0 {
			return lineEOF, "", nil
		}
		if kind, nameLen, ok := classify(p, haveField); ok {
			return kind, string(p[:nameLen]), nil
		}
		if err == io.EOF || len(p) >= maxNamePeek {
			return lineBody, "", nil
		}
		n = min(max(c.br.Buffered(), len(p)+1), maxNamePeek)
	}
}

// readHeader collects the header block with CRLF line endings. more is true
// when a body follows: the block ended at an empty line (consumed) or at a
// body line (not consumed).
func (c *copier) readHeader(limit int) (block []byte, more bool, err error) {
	var hdr bytes.Buffer
	field := "" // name of the field being read, for errors
	for {
		dot, err := c.atDot()
		if err != nil {
			return nil, false, err
		}
		if dot {
			return hdr.Bytes(), false, nil
		}
		kind, name, err := c.headerLine(field != "")
		if err != nil {
			return nil, false, err
		}
		switch kind {
		case lineEOF:
			return hdr.Bytes(), false, nil
		case lineEmpty:
			if _, _, err := c.piece(); err != nil {
				return nil, false, readErr(err)
			}
			return hdr.Bytes(), true, nil
		case lineBody:
			return hdr.Bytes(), true, nil
		case lineField:
			field = name
		}
		for {
			data, eol, err := c.piece()
			if err != nil && err != io.EOF {
				return nil, false, readErr(err)
			}
			if bytes.IndexByte(data, 0) >= 0 {
				return nil, false, sysexits.Errorf(sysexits.DataErr, "message header field %q contains a NUL byte", field)
			}
			hdr.Write(data)
			if eol || err == io.EOF {
				hdr.WriteString("\r\n")
			}
			if hdr.Len() > limit {
				return nil, false, sysexits.Errorf(sysexits.DataErr, "message header exceeds %d bytes", limit)
			}
			if err == io.EOF {
				return hdr.Bytes(), false, nil
			}
			if eol {
				break
			}
		}
	}
}

// writeHeader parses the header block, takes the recipients, removes Bcc,
// adds the missing fields and writes the header and the empty line after it.
func (c *copier) writeHeader(block []byte, host string) (Result, error) {
	var res Result
	// go-message keeps each field's raw bytes and writes them back as they
	// were, which DKIM signatures made by the caller need.
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(block)))
	if err != nil {
		return res, sysexits.Errorf(sysexits.DataErr, "parse message header: %v", err)
	}
	type field struct {
		key, lower, value string
		raw               []byte
	}
	var fields []field
	resent := false
	for fs := h.Fields(); fs.Next(); {
		raw, err := fs.Raw()
		if err != nil {
			return res, sysexits.Errorf(sysexits.DataErr, "parse message header: %v", err)
		}
		lower := strings.ToLower(fs.Key())
		fields = append(fields, field{fs.Key(), lower, fs.Value(), raw})
		resent = resent || strings.HasPrefix(lower, "resent-")
	}

	if c.opts.ExtractRecipients {
		// RFC 5322 3.6.6: resent fields name the recipients of the resending.
		prefix := ""
		if resent {
			prefix = "resent-"
		}
		for _, f := range fields {
			switch f.lower {
			case prefix + "to", prefix + "cc", prefix + "bcc":
				addrs, err := address.ParseList(f.value)
				if err != nil {
					return res, sysexits.Errorf(sysexits.DataErr, "bad address in %s header: %v", f.key, err)
				}
				res.Recipients = append(res.Recipients, addrs...)
			}
		}
	}

	hasReplyTo := slices.ContainsFunc(fields, func(f field) bool { return f.lower == "reply-to" })
	var raws [][]byte
	var hasDate, hasFrom, hasID bool
	for _, f := range fields {
		switch f.lower {
		case "bcc", "resent-bcc":
			continue
		case "date":
			hasDate = true
		case "from":
			if c.opts.RewriteFrom != nil {
				if raw, replyTo, ok := rewriteFrom(f.key, f.value, c.opts.RewriteFrom); ok {
					if !hasFrom {
						raws = append(raws, raw)
						if replyTo && !hasReplyTo {
							raws = append(raws, []byte("Reply-To:"+strings.TrimRight(string(f.raw[len(f.key)+1:]), "\r\n")+"\r\n"))
						}
					}
					hasFrom = true
					continue
				}
			}
			hasFrom = true
			raws = append(raws, c.qualified(f.key, f.value, f.raw))
			continue
		case "to", "cc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc", "resent-sender":
			raws = append(raws, c.qualified(f.key, f.value, f.raw))
			continue
		case "message-id":
			if !hasID {
				res.MessageID = msgID(f.value)
			}
			hasID = true
		}
		raws = append(raws, f.raw)
	}
	now := time.Now
	if c.opts.Now != nil {
		now = c.opts.Now
	}
	t := now()
	if !hasDate {
		raws = append(raws, []byte("Date: "+t.Format(time.RFC1123Z)+"\r\n"))
	}
	if !hasID {
		id, err := newMessageID(t, c.opts.Rand, host)
		if err != nil {
			return res, err
		}
		res.MessageID = id
		raws = append(raws, []byte("Message-ID: <"+id+">\r\n"))
	}
	if !hasFrom && c.opts.From != "" {
		raws = append(raws, []byte("From: "+c.opts.From+"\r\n"))
	}

	// textproto.Header only inserts at the top, so rebuild it bottom-up.
	var out textproto.Header
	for i := len(raws) - 1; i >= 0; i-- {
		c.eightBit = c.eightBit || has8bit(raws[i])
		out.AddRaw(raws[i])
	}
	if err := textproto.WriteHeader(c.bw, out); err != nil {
		return res, writeErr(err)
	}
	return res, nil
}

// msgID returns the id in a Message-ID field value: what is between the
// first "<" and the next ">", else the trimmed value.
func msgID(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '>'); j >= 0 {
			return v[i+1 : i+1+j]
		}
	}
	return strings.TrimSpace(v)
}

// qualified returns the field raw with QualifyDomain added to its bare
// names, or raw as it is.
func (c *copier) qualified(key, value string, raw []byte) []byte {
	if c.opts.QualifyDomain == "" {
		return raw
	}
	v, changed := address.QualifyList(value, c.opts.QualifyDomain)
	if !changed {
		return raw
	}
	return foldField(key, v)
}

// foldField writes "key: value" CRLF, folding after the commas that keep
// lines under 78 characters where it can (RFC 5322 2.1.1).
func foldField(key, value string) []byte {
	var b strings.Builder
	b.WriteString(key + ":")
	line := len(key) + 1
	for i, part := range strings.Split(value, ",") {
		part = strings.TrimLeft(part, " \t")
		if i > 0 {
			b.WriteByte(',')
			line++
			if part == "" {
				continue // "a,,b" or a trailing comma: nothing to fold for
			}
			if line+1+len(part) > 78 {
				b.WriteString("\r\n")
				line = 0
			}
		}
		b.WriteString(" " + part)
		line += 1 + len(part)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// rewriteFrom returns the From field with the address rewrite gives for
// value's addresses, keeping the display name of a single address (or the
// comment a bare "root (Cron Daemon)" carries), and whether the old value
// should become Reply-To. It returns false when rewrite keeps the field.
func rewriteFrom(key, value string, rewrite func([]string) (string, bool)) ([]byte, bool, bool) {
	addrs, err := address.ParseList(value)
	if err != nil {
		addrs = nil
	}
	newAddr, replyTo := rewrite(addrs)
	if newAddr == "" {
		return nil, false, false
	}
	var name string
	if len(addrs) != 1 {
		// No one display name to keep.
	} else if a, err := mail.ParseAddress(value); err == nil {
		name = a.Name
	} else if i, j := strings.IndexByte(value, '('), strings.LastIndexByte(value, ')'); i >= 0 && j > i {
		name = strings.TrimSpace(value[i+1 : j])
	} else if i := strings.IndexByte(value, '<'); i > 0 {
		name = strings.Trim(strings.TrimSpace(value[:i]), `"`)
	}
	v := (&mail.Address{Name: name, Address: newAddr}).String()
	return []byte(key + ": " + v + "\r\n"), replyTo, true
}

// newMessageID returns "20060102150405.<20 base32 characters>@host": the
// time keeps ids sortable and readable in logs, 96 random bits unique.
func newMessageID(t time.Time, rnd io.Reader, host string) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [12]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", sysexits.Errorf(sysexits.OSErr, "generate message-id: %v", err)
	}
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return t.UTC().Format("20060102150405") + "." + enc.EncodeToString(b[:]) + "@" + host, nil
}

// copyBody streams the rest of the input.
func (c *copier) copyBody() error {
	for {
		dot, err := c.atDot()
		if err != nil {
			return err
		}
		if dot {
			return nil
		}
		started := false
		for {
			data, eol, err := c.piece()
			if err == io.EOF {
				if started {
					return c.writeCRLF()
				}
				return nil
			}
			if err != nil {
				return readErr(err)
			}
			started = true
			if err := c.write(data); err != nil {
				return err
			}
			if eol {
				if err := c.writeCRLF(); err != nil {
					return err
				}
				break
			}
		}
	}
}

func (c *copier) write(p []byte) error {
	c.eightBit = c.eightBit || has8bit(p)
	if _, err := c.bw.Write(p); err != nil {
		return writeErr(err)
	}
	return nil
}

func (c *copier) writeCRLF() error {
	if _, err := c.bw.WriteString("\r\n"); err != nil {
		return writeErr(err)
	}
	return nil
}

func has8bit(p []byte) bool {
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}
