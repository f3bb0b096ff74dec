// Package mailx is relaymail's mail (mailx) personality: the sending
// subset of mailx that scripts and daemons use (smartd, Nagios, Icinga,
// apticron: "mail -s subject -a file root"), made into a MIME message for
// sendmail's intake. Reading mailboxes is not its business.
//
// # Command line
//
//		mail [-s subject] [-a file|header]... [-A file] [-c cc] [-b bcc] [-r from] [-E] [-v] [--] rcpt...
//
//	  - -s: the subject, RFC 2047-encoded when it is not ASCII.
//	  - -a: a file to attach (heirloom mailx, s-nail). bsd-mailx and GNU
//	    mailutils read -a as a header field ("X-Loop: x", Icinga's
//	    -a "From: ..."): an argument that is no file and reads "Name: value"
//	    is taken as a header field.
//	  - -A: a file to attach (GNU mailutils); when no such file exists, an
//	    account name (s-nail), ignored.
//	  - -c, -b: Cc and Bcc recipients (comma-separated lists); Bcc reaches
//	    the envelope only.
//	  - -r: the sender, for the From field and the envelope.
//	  - -E: send nothing when the body is empty and nothing is attached.
//	  - Ignored, as scripts pass them: -n, -N, -i, -d, -I, -~; -S var[=value]
//	    (except -S from=addr, taken as -r) and -q file take a value.
//	  - Reading mail (-f, -u, -e, -H, -p, -R, or no recipient) is refused.
//
// Options may follow recipients, as GNU getopt allows; "--" ends them.
//
// # Message
//
// To and Cc as given, Subject, MIME-Version, then one text/plain UTF-8
// part from stdin (7bit when it is short ASCII lines, else
// quoted-printable) and the attachments, each base64 with its content
// type by extension or content and its file name (RFC 2231 when not
// ASCII). Date, Message-ID and From are left to the intake, as for any
// message sendmail takes.
package mailx

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
)

// Options is a parsed mail command line.
type Options struct {
	Subject    string
	SubjectSet bool
	To, Cc     []string // as given; each may be a comma-separated list
	Bcc        []string
	From       string   // -r, or -S from=
	A          []string // -a values: files, or header fields
	AttachOnly []string // -A values: files, or account names
	SkipEmpty  bool     // -E
	Verbose    int
	Ignored    []string // ignored options, for -v
}

// ErrRead is the error for an invocation that would read mail.
var ErrRead = errors.New("reading mail is not supported: this mail only sends (mail [-s subject] [-a file] [-c cc] [-b bcc] [-r from] rcpt...)")

// UsageError is a bad command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Flags with a value, flags without, and flags that mean reading mail.
const (
	valueFlags = "sacbrAqS"
	plainFlags = "EnNidIv~"
	readFlags  = "fueHpR"
)

// ParseArgs parses args (argv without argv[0]).
func ParseArgs(args []string) (Options, error) {
	var o Options
	var rcpts []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rcpts = append(rcpts, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' || strings.HasPrefix(arg, "--") {
			if strings.HasPrefix(arg, "--") {
				return o, usage("unknown option %s", arg)
			}
			rcpts = append(rcpts, arg)
			continue
		}
		for j := 1; j < len(arg); j++ {
			c := arg[j]
			switch {
			case strings.IndexByte(readFlags, c) >= 0:
				return o, ErrRead
			case strings.IndexByte(plainFlags, c) >= 0:
				switch c {
				case 'E':
					o.SkipEmpty = true
				case 'v':
					o.Verbose++
				default:
					o.Ignored = append(o.Ignored, "-"+string(c))
				}
			case strings.IndexByte(valueFlags, c) >= 0:
				val := arg[j+1:]
				if val == "" {
					if i+1 == len(args) {
						return o, usage("option -%c needs a value", c)
					}
					i++
					val = args[i]
				}
				if strings.ContainsAny(val, "\r\n\x00") {
					return o, usage("option -%c: a line break or NUL in %q", c, val)
				}
				o.set(c, val)
				j = len(arg)
			default:
				return o, usage("unknown option -%c", c)
			}
		}
	}
	for _, r := range rcpts {
		if strings.ContainsAny(r, "\r\n\x00") {
			return o, usage("a line break or NUL in recipient %q", r)
		}
	}
	o.To = rcpts
	if len(o.To)+len(o.Cc)+len(o.Bcc) == 0 {
		return o, ErrRead
	}
	return o, nil
}

func (o *Options) set(c byte, val string) {
	switch c {
	case 's':
		o.Subject, o.SubjectSet = val, true
	case 'a':
		o.A = append(o.A, val)
	case 'A':
		o.AttachOnly = append(o.AttachOnly, val)
	case 'c':
		o.Cc = append(o.Cc, val)
	case 'b':
		o.Bcc = append(o.Bcc, val)
	case 'r':
		o.From = val
	case 'S':
		if v, ok := strings.CutPrefix(val, "from="); ok {
			o.From = v
			return
		}
		o.Ignored = append(o.Ignored, "-S "+val)
	default: // 'q'
		o.Ignored = append(o.Ignored, "-"+string(c)+" "+val)
	}
}

// Recipients are the envelope's: To, Cc and Bcc.
func (o Options) Recipients() []string {
	return append(append(append([]string(nil), o.To...), o.Cc...), o.Bcc...)
}

// Attachment is a file to attach, opened.
type Attachment struct {
	Name string // the path as given
	File io.ReadCloser
}

// Open sorts the -a and -A values into files to attach (opened with
// open, which the caller makes run with the caller's own rights) and
// header fields, and returns both. An -a value that is no file but reads
// "Name: value" is a header field; an -A value that is no file is an
// account name, ignored. Any other failure to open is an error.
func (o Options) Open(open func(string) (*os.File, error)) (files []Attachment, headers []string, err error) {
	closeAll := func() {
		for _, f := range files {
			f.File.Close()
		}
	}
	try := func(name string) (*os.File, bool, error) {
		f, err := open(name)
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			return nil, false, fmt.Errorf("%s: not a regular file", name)
		}
		return f, true, nil
	}
	for _, a := range o.A {
		f, ok, err := try(a)
		switch {
		case err != nil:
			closeAll()
			return nil, nil, err
		case ok:
			files = append(files, Attachment{Name: a, File: f})
		case headerField(a):
			headers = append(headers, a)
		default:
			closeAll()
			return nil, nil, fmt.Errorf("%s: no such file to attach", a)
		}
	}
	for _, a := range o.AttachOnly {
		f, ok, err := try(a)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if ok {
			files = append(files, Attachment{Name: a, File: f})
		}
	}
	return files, headers, nil
}

// headerField reports whether s reads "Name: value" with a field name of
// printable ASCII.
func headerField(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// sniff is how much of the body decides its encoding: a body that ends
// within it and is ASCII with short lines goes as 7bit, any other as
// quoted-printable.
const sniff = 64 << 10

// Empty reports whether body has nothing to read, without consuming it;
// a read error is returned, not taken for an empty body.
func Empty(body *bufio.Reader) (bool, error) {
	_, err := body.Peek(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

// Write writes the message of o with body and files to w. It closes the
// files.
func Write(w io.Writer, o Options, headers []string, body io.Reader, files []Attachment) error {
	defer func() {
		for _, f := range files {
			f.File.Close()
		}
	}()
	var h mail.Header
	if o.From != "" {
		h.Set("From", o.From)
	}
	if len(o.To) > 0 {
		h.Set("To", strings.Join(o.To, ", "))
	}
	if len(o.Cc) > 0 {
		h.Set("Cc", strings.Join(o.Cc, ", "))
	}
	if o.SubjectSet {
		setSubject(&h, o.Subject)
	}
	// Header fields from -a. A Content-Type is the text's (bsd-mailx users
	// send HTML so); MIME-Version and the encoding are this writer's; a
	// field that may appear once replaces what an option set, except the
	// subject of -s.
	textType := "text/plain; charset=utf-8"
	for _, f := range headers {
		name, value, _ := strings.Cut(f, ":")
		value = strings.TrimSpace(value)
		switch key := strings.ToLower(strings.TrimSpace(name)); key {
		case "content-type":
			if t, params, err := mime.ParseMediaType(value); err == nil && strings.HasPrefix(t, "text/") {
				if params["charset"] == "" {
					params["charset"] = "utf-8"
				}
				textType = mime.FormatMediaType(t, params)
			}
		case "mime-version", "content-transfer-encoding":
		case "subject":
			if !o.SubjectSet {
				setSubject(&h, value)
			}
		case "from", "sender", "reply-to", "to", "cc", "date", "message-id", "in-reply-to", "references":
			h.Set(name, value)
		default:
			h.Add(name, value)
		}
	}

	br := bufio.NewReaderSize(body, sniff)
	head, _ := br.Peek(sniff)
	cte := "quoted-printable"
	if len(head) < sniff && plain(head) {
		cte = "7bit"
	}
	text := func(th *mail.InlineHeader) {
		th.Set("Content-Type", textType)
		th.Set("Content-Transfer-Encoding", cte)
	}

	if len(files) == 0 {
		var th mail.InlineHeader
		text(&th)
		for f := th.Fields(); f.Next(); {
			h.Set(f.Key(), f.Value())
		}
		mw, err := mail.CreateSingleInlineWriter(w, h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(mw, br); err != nil {
			return err
		}
		return mw.Close()
	}

	mw, err := mail.CreateWriter(w, h)
	if err != nil {
		return err
	}
	var th mail.InlineHeader
	text(&th)
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return err
	}
	if _, err := io.Copy(tw, br); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	for _, f := range files {
		fr := bufio.NewReader(f.File)
		var ah mail.AttachmentHeader
		ah.Set("Content-Type", contentType(f.Name, fr))
		ah.SetFilename(filepath.Base(f.Name))
		ah.Set("Content-Transfer-Encoding", "base64")
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		if _, err := io.Copy(aw, fr); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if err := aw.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

// setSubject sets the Subject field to s, RFC 2047-encoded when it is
// not ASCII, and also when it holds "=?", which a reader would otherwise
// take for the start of an encoded word (in base64 words then, whole
// UTF-8 characters each).
func setSubject(h *mail.Header, s string) {
	if !strings.Contains(s, "=?") {
		h.SetSubject(s)
		return
	}
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	h.Set("Subject", strings.Join(words, " "))
}

// plain reports whether b can go as 7bit: ASCII, no NUL, no bare CR, lines
// of at most 998 bytes.
func plain(b []byte) bool {
	line := 0
	for i, c := range b {
		switch {
		case c == '\n':
			line = 0
			continue
		case c == '\r' && (i+1 >= len(b) || b[i+1] != '\n'), c == 0, c >= 0x80:
			return false
		}
		if line++; line > 998 {
			return false
		}
	}
	return true
}

// contentType is name's type by its extension, else by its first bytes
// (which r keeps for the copy).
func contentType(name string, r *bufio.Reader) string {
	if t := mime.TypeByExtension(strings.ToLower(filepath.Ext(name))); t != "" {
		return t
	}
	head, _ := r.Peek(512)
	t := http.DetectContentType(head)
	if strings.HasPrefix(t, "text/plain") && !bytes.ContainsFunc(head, func(r rune) bool { return r == 0 }) {
		return "text/plain; charset=utf-8"
	}
	if strings.HasPrefix(t, "text/plain") {
		return "application/octet-stream"
	}
	return t
}
