package smtpd

import (
	"bytes"
	"regexp"
	"strings"
)

// Bare names in MAIL FROM and RCPT TO.
//
// RFC 5321 4.5.1 requires "RCPT TO:<postmaster>" to be accepted, and
// Postfix's sendmail -bs takes any bare name ("RCPT TO:<root>") and sends
// it through aliases and qualification, as a command-line recipient. go-smtp
// insists on local@domain. So the conn rewrites, in the command lines it
// hands to go-smtp, an address of MAIL FROM or RCPT TO that is a bare name
// into name@bareDomain (.invalid is reserved by RFC 2606: no real address
// has it); the session takes the domain off again before a callback sees
// the address, and the conn takes it out of the replies.
//
// Only command lines are rewritten, never message data, so the filter
// follows the session as go-smtp sees it. After a DATA line it hands go-smtp
// nothing more until go-smtp has answered (go-smtp answers each command
// before it reads again); after 354 it passes the data through unchanged,
// up to the end of data as go-smtp's data reader finds it (dataEnd has the
// same states). After a BDAT line, whose chunk is binary and whose fate the
// filter would have to guess, and after a command line too long for go-smtp,
// it rewrites nothing more in the session: a client that uses CHUNKING
// sends full addresses.

// bareDomain marks a bare name on its way through go-smtp.
const bareDomain = "bare.relaymail.invalid"

var bareSuffix = []byte("@" + bareDomain)

// bareCommand matches MAIL FROM or RCPT TO whose address is a bare name:
// no @, nothing quoted, no route; group 2 ends where the domain goes.
var bareCommand = regexp.MustCompile(`(?i)^((?:MAIL FROM|RCPT TO):[ \t]*<)([^\x00-\x20<>@"\\()\[\],;:\x7f]+)>`)

// unbare returns the address a client sent, without bareDomain.
func unbare(addr string) string {
	return strings.TrimSuffix(addr, string(bareSuffix))
}

type filterMode int

const (
	modeCommand  filterMode = iota
	modeDataWait            // after a DATA line, until go-smtp answers it
	modeData                // after 354, until the end of the data
	modeOff                 // pass everything through
)

// The states of go-smtp's data reader (RFC 5321 4.1.1.4's end of data:
// CRLF "." CRLF, where the first CRLF may be the DATA line's).
const (
	dataBeginLine = iota
	dataDot
	dataDotCR
	dataCR
	dataMiddle
)

// bareFilter is the rewriting of bare names in the input; see above.
type bareFilter struct {
	mode    filterMode
	maxLine int    // a longer command line turns the filter off
	line    []byte // a command line not yet complete
	held    []byte // input after a DATA line, while modeDataWait
	state   int    // the data reader's state, in modeData
}

// feed takes input and returns what go-smtp may read now; the rest waits
// in the filter. The result never aliases in.
func (f *bareFilter) feed(in []byte) []byte {
	var out []byte
	for len(in) > 0 {
		switch f.mode {
		case modeOff:
			return append(out, in...)
		case modeDataWait:
			f.held = append(f.held, in...)
			return out
		case modeData:
			n, end := f.dataEnd(in)
			out = append(out, in[:n]...)
			in = in[n:]
			if end {
				f.mode = modeCommand
			}
		case modeCommand:
			i := bytes.IndexByte(in, '\n')
			if i < 0 {
				f.line = append(f.line, in...)
				if len(f.line) > f.maxLine {
					// go-smtp ends the session on such a line.
					out = append(out, f.line...)
					f.line, f.mode = nil, modeOff
				}
				return out
			}
			line := append(f.line, in[:i+1]...)
			f.line, in = nil, in[i+1:]
			if len(line) > f.maxLine {
				f.mode = modeOff
				out = append(out, line...)
				continue
			}
			out = append(out, rewriteBare(line)...)
			verb, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
			switch strings.ToUpper(verb) {
			case "DATA":
				f.mode = modeDataWait
				f.held = append([]byte(nil), in...)
				return out
			case "BDAT":
				f.mode = modeOff
			}
		}
	}
	return out
}

// answered tells the filter, in modeDataWait, go-smtp's reply to DATA, and
// returns what go-smtp may read now.
func (f *bareFilter) answered(code int) []byte {
	if code == 354 {
		f.mode, f.state = modeData, dataBeginLine
	} else {
		f.mode = modeCommand
	}
	held := f.held
	f.held = nil
	return f.feed(held)
}

// flush returns an incomplete command line at the end of the input.
func (f *bareFilter) flush() []byte {
	line := f.line
	f.line = nil
	return line
}

// dataEnd runs go-smtp's data reader's states over in and returns how many
// bytes belong to the data, its end included, and whether it ended.
func (f *bareFilter) dataEnd(in []byte) (int, bool) {
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch f.state {
		case dataBeginLine:
			switch c {
			case '.':
				f.state = dataDot
			case '\r':
				f.state = dataCR
			default:
				f.state = dataMiddle
			}
		case dataDot:
			if c == '\r' {
				f.state = dataDotCR
			} else {
				f.state = dataMiddle
			}
		case dataDotCR:
			if c == '\n' {
				f.state = dataBeginLine
				return i + 1, true
			}
			f.state = dataMiddle
		case dataCR:
			if c == '\n' {
				f.state = dataBeginLine
			} else {
				f.state = dataMiddle
			}
		case dataMiddle:
			// Most data is here: skip to the next CR.
			j := bytes.IndexByte(in[i:], '\r')
			if j < 0 {
				return len(in), false
			}
			i += j
			f.state = dataCR
		}
	}
	return len(in), false
}

// rewriteBare adds bareDomain to the address of a MAIL FROM or RCPT TO line
// that is a bare name, and returns any other line as it is.
func rewriteBare(line []byte) []byte {
	m := bareCommand.FindSubmatchIndex(line)
	if m == nil {
		return line
	}
	out := make([]byte, 0, len(line)+len(bareSuffix))
	out = append(out, line[:m[5]]...)
	out = append(out, bareSuffix...)
	return append(out, line[m[5]:]...)
}

// replyCode returns the code of the last reply line in p, or 0.
func replyCode(p []byte) int {
	p = bytes.TrimRight(p, "\r\n")
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		p = p[i+1:]
	}
	if len(p) < 3 {
		return 0
	}
	code := 0
	for _, c := range p[:3] {
		if c < '0' || c > '9' {
			return 0
		}
		code = code*10 + int(c-'0')
	}
	return code
}
