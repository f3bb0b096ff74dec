package dsn

import (
	"bufio"
	"errors"
	"io"

	"relaymail/internal/lines"
	"relaymail/internal/sysexits"
)

// maxNamePeek bounds how far into a line we look for the colon of a
// header field, as in package intake.
const maxNamePeek = 1000

// errTooBig stops measuring an original larger than Options.MaxFull.
var errTooBig = errors.New("original larger than the limit")

// attachment says what the third part of the report holds.
type attachment struct {
	full     bool // the whole original, as message/rfc822; else its header
	tooBig   bool // FULL was asked for, but the original is over MaxFull
	eightBit bool // the copy may hold 8-bit bytes: label it 8bit
}

// measure decides what to attach. With an io.Seeker it reads original
// (only its header, unless full) through the same copier that will write
// it, so the 8bit label and the size are those of the copy, then seeks
// back. Other readers cannot be read twice: their header is labelled 8bit
// (RFC 2045 6.2: 8bit data may, not must, hold 8-bit bytes) and FULL is
// refused for want of a size.
func measure(original io.Reader, full bool, maxFull int64) (attachment, error) {
	s, ok := original.(io.Seeker)
	if !ok {
		return attachment{eightBit: true}, nil
	}
	start, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return attachment{}, sysexits.Errorf(sysexits.IOErr, "bounce: seek original message: %w", err)
	}
	c := newCopier(original, io.Discard)
	more, err := c.header()
	if err != nil {
		return attachment{}, err
	}
	att := attachment{eightBit: c.eightBit}
	if full {
		c.limit = maxFull
		err := c.write(nil) // the header alone may be over the limit
		if err == nil && more {
			err = c.body()
		}
		switch {
		case err == errTooBig:
			att.tooBig = true
		case err != nil:
			return attachment{}, err
		default:
			att.full = true
			att.eightBit = c.eightBit
		}
	}
	if _, err := s.Seek(start, io.SeekStart); err != nil {
		return attachment{}, sysexits.Errorf(sysexits.IOErr, "bounce: seek original message: %w", err)
	}
	return att, nil
}

// copier copies a message line by line, normalising line endings to CRLF
// and cutting lines at 998 bytes. It holds no more than its read buffer.
type copier struct {
	br       *bufio.Reader
	w        io.Writer
	n        int64 // bytes written
	limit    int64 // with limit >= 0, writing more than limit bytes fails with errTooBig
	eightBit bool  // a byte >= 0x80 was written
}

func newCopier(r io.Reader, w io.Writer) *copier {
	return &copier{br: bufio.NewReaderSize(r, bufSize), w: w, limit: -1}
}

var crlf = []byte("\r\n")

func (c *copier) write(p []byte) error {
	if !c.eightBit {
		c.eightBit = has8bit(p)
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		return writeErr(err)
	}
	if c.limit >= 0 && c.n > c.limit {
		return errTooBig
	}
	return nil
}

// header copies the header: its field and continuation lines, not the
// empty line after it. more reports that a body follows, the empty line
// having been consumed or the line that starts the body not.
func (c *copier) header() (more bool, err error) {
	haveField := false
	for {
		kind, err := c.headerLine(haveField)
		if err != nil {
			return false, err
		}
		switch kind {
		case lineEOF:
			return false, nil
		case lineEmpty:
			if _, _, err := c.piece(); err != nil {
				return false, readErr(err)
			}
			return true, nil
		case lineBody:
			return true, nil
		}
		haveField = true
		if _, err := c.line(true); err != nil {
			return false, err
		}
	}
}

// body writes the empty line that ends the header, then copies the rest
// of the input. Call it after header reported more.
func (c *copier) body() error {
	if err := c.write(crlf); err != nil {
		return err
	}
	for {
		eof, err := c.line(false)
		if err != nil || eof {
			return err
		}
	}
}

// line copies the current line with a CRLF ending. A line longer than 998
// bytes is cut; with fold the rest continues after a space, so a header
// field stays one field (RFC 5322 2.2.3). eof reports that the input
// ended: at the start of the line (nothing was written) or within it.
func (c *copier) line(fold bool) (eof bool, err error) {
	started := false
	n := 0 // bytes on the output line
	for {
		data, eol, err := c.piece()
		if err == io.EOF {
			if started {
				return true, c.write(crlf)
			}
			return true, nil
		}
		if err != nil {
			return false, readErr(err)
		}
		started = true
		for n+len(data) > hardLine {
			cut := hardLine - n
			if err := c.write(data[:cut]); err != nil {
				return false, err
			}
			if err := c.write(crlf); err != nil {
				return false, err
			}
			n = 0
			if fold {
				if err := c.write([]byte{' '}); err != nil {
					return false, err
				}
				n = 1
			}
			data = data[cut:]
		}
		if err := c.write(data); err != nil {
			return false, err
		}
		n += len(data)
		if eol {
			return false, c.write(crlf)
		}
	}
}

// piece returns the next piece of the current line (see lines.Piece).
func (c *copier) piece() ([]byte, bool, error) { return lines.Piece(c.br) }

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
func classify(p []byte, haveField bool) (lineKind, bool) {
	kind, _, ok := lines.Classify(p, haveField)
	return kind, ok
}

// headerLine classifies the line at the current position of the header.
// It peeks no further than the line needs.
func (c *copier) headerLine(haveField bool) (lineKind, error) {
	n := min(max(c.br.Buffered(), 1), maxNamePeek)
	for {
		p, err := c.br.Peek(n)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return 0, readErr(err)
		}
		if len(p) == 0 {
			return lineEOF, nil
		}
		if kind, ok := classify(p, haveField); ok {
			return kind, nil
		}
		if err == io.EOF || len(p) >= maxNamePeek {
			return lineBody, nil
		}
		n = min(max(c.br.Buffered(), len(p)+1), maxNamePeek)
	}
}
