// Package lines reads text whose lines may end in LF, CRLF or a bare CR,
// in pieces, so that a line of any length never sits in memory whole. The
// intake of messages and the copy of an original into a bounce both read
// this way and classify header lines with Classify, so a message's lines
// mean the same thing to both.
package lines

import (
	"bufio"
	"bytes"
	"io"
)

// Piece returns the next piece of the current line of br, without its line
// ending, and whether the piece ends the line. A piece is valid until the
// next read of br. At the end of input it returns io.EOF and no data.
// Pieces are cut where br's buffer ends. LF, CRLF and a bare CR each end a
// line; "\r\r\n" is two line endings.
func Piece(br *bufio.Reader) ([]byte, bool, error) {
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return nil, false, err
		}
	}
	buf, _ := br.Peek(br.Buffered())
	end := len(buf)
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		end = i
	}
	cr := bytes.IndexByte(buf[:end], '\r')
	switch {
	case cr < 0 && end == len(buf):
		br.Discard(end)
		return buf, false, nil
	case cr < 0:
		br.Discard(end + 1)
		return buf[:end], true, nil
	case cr+1 < len(buf):
		if buf[cr+1] == '\n' {
			br.Discard(cr + 2)
		} else {
			br.Discard(cr + 1)
		}
		return buf[:cr], true, nil
	case cr > 0:
		// The CR is the last buffered byte: hand out what precedes it and
		// decide about the CR once the next byte is in.
		br.Discard(cr)
		return buf[:cr], false, nil
	}
	p, err := br.Peek(2)
	switch {
	case len(p) == 2 && p[1] == '\n':
		br.Discard(2)
	case len(p) == 2 || err == io.EOF:
		br.Discard(1)
	default:
		return nil, false, err
	}
	return nil, true, nil
}

// Kind is what a line of a message's header block is.
type Kind int

const (
	EOF          Kind = iota // no more input
	Empty                    // the empty line that ends the header
	Field                    // "Name:" starts a header field
	Continuation             // white space continues the previous field
	Body                     // anything else: the body starts here
)

// Classify decides what a line starting with p is; haveField says whether
// a field came before (a header cannot start with a continuation). It
// returns the length of the field name for a Field, and ok == false when p
// ends before the decision (all of p is a possible field name).
func Classify(p []byte, haveField bool) (kind Kind, nameLen int, ok bool) {
	switch p[0] {
	case '\r', '\n':
		return Empty, 0, true
	case ' ', '\t':
		if haveField {
			return Continuation, 0, true
		}
		return Body, 0, true
	}
	i := 0
	for i < len(p) && p[i] >= '!' && p[i] <= '~' && p[i] != ':' { // RFC 5322 2.2 ftext
		i++
	}
	if i == 0 {
		return Body, 0, true
	}
	j := i
	for j < len(p) && (p[j] == ' ' || p[j] == '\t') {
		j++
	}
	switch {
	case j == len(p):
		return 0, 0, false
	case p[j] == ':':
		return Field, i, true
	}
	return Body, 0, true
}
