package smtpd

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
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
// into name@<marker>, where the marker is a domain made for the session
// (random, under .invalid, which RFC 2606 reserves), so that no client can
// write it; the session takes it off again before a callback sees the
// address, and the conn takes it out of the replies.
//
// Only command lines are rewritten, never message data, so the filter
// follows the session as go-smtp sees it. After a DATA line it hands go-smtp
// nothing more until go-smtp has dealt with it: go-smtp either refuses the
// DATA or calls the session's Data, which tells the conn (dataStarted),
// before it reads again. After Data, the filter passes the data through
// unchanged, up to the end of data as go-smtp's data reader finds it
// (dataEnd has the same states). After a BDAT line, whose chunk is binary
// and whose fate the filter would have to guess, after a command line too
// long for go-smtp, and after a read that timed out or failed (go-smtp may
// then give up a DATA half read), it rewrites nothing more in the session:
// a client that uses CHUNKING sends full addresses.

// newMarker returns "@bare-<16 hex digits>.invalid".
func newMarker() []byte {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return []byte("@bare-" + hex.EncodeToString(b[:]) + ".invalid")
}

// bareCommand matches MAIL FROM or RCPT TO whose address is a bare name:
// no @, nothing quoted, no route; group 2 ends where the domain goes.
var bareCommand = regexp.MustCompile(`(?i)^((?:MAIL FROM|RCPT TO):[ \t]*<)([^\x00-\x20<>@"\\()\[\],;:\x7f]+)>`)

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
	marker  []byte // "@" and the session's domain for bare names
	maxLine int    // go-smtp's line limit; the filter keeps well within it
	line    []byte // a command line not yet complete
	held    []byte // input after a DATA line, while modeDataWait
	state   int    // the data reader's state, in modeData
}

// unbare returns the address a client sent: without the marker when the
// filter added it.
func (f *bareFilter) unbare(addr string) string {
	return strings.TrimSuffix(addr, string(f.marker))
}

// tooLong reports a command line that go-smtp may refuse: the filter
// leaves it, and the rest of the session, alone. go-smtp counts the first
// line one byte short, so the filter allows one more than the limit.
func (f *bareFilter) tooLong(n int) bool { return n > f.maxLine+1 }

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
				if f.tooLong(len(f.line)) {
					// go-smtp ends the session on such a line.
					out = append(out, f.line...)
					f.line, f.mode = nil, modeOff
				}
				return out
			}
			line := append(f.line, in[:i+1]...)
			f.line, in = nil, in[i+1:]
			if f.tooLong(len(line)) {
				f.mode = modeOff
				out = append(out, line...)
				continue
			}
			out = append(out, f.rewrite(line)...)
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

// answered tells the filter, in modeDataWait, whether go-smtp took the
// DATA (and so reads the data now), and returns what go-smtp may read.
func (f *bareFilter) answered(data bool) []byte {
	if data {
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
	if f.mode == modeCommand {
		return f.rewrite(line)
	}
	return line
}

// off stops the rewriting for the rest of the session.
func (f *bareFilter) off() {
	f.mode = modeOff
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

// rewrite adds the marker to the address of a MAIL FROM or RCPT TO line
// that is a bare name, unless that would make the line too long for
// go-smtp, and returns any other line as it is.
func (f *bareFilter) rewrite(line []byte) []byte {
	m := bareCommand.FindSubmatchIndex(line)
	if m == nil || len(line)+len(f.marker) > f.maxLine-1 {
		return line
	}
	out := make([]byte, 0, len(line)+len(f.marker))
	out = append(out, line[:m[5]]...)
	out = append(out, f.marker...)
	return append(out, line[m[5]:]...)
}
