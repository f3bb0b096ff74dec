// Package transcript turns the bytes of an SMTP client session into the
// conversation that sendmail -v prints.
//
// go-smtp hands its DebugWriter everything it reads and writes, in order,
// without saying which side spoke. A line that starts with three digits and
// a space or hyphen is a server reply (RFC 5321 section 4.2); any other line
// came from the client, since base64 holds neither spaces nor hyphens.
//
// # Output rules
//
//   - Server lines are prefixed "<<< ", client lines ">>> ".
//   - The AUTH command keeps its mechanism; its initial response and every
//     client line until the server's final reply are shown as "<redacted>".
//     No credential, token or its base64 ever reaches the output.
//   - The message between the 354 reply and the final "." is summarised as one
//     line with its size: the body is the caller's data, not the conversation.
//     So is the chunk that follows a BDAT command.
//   - Bytes that are not printable ASCII are escaped, so a hostile server
//     cannot send terminal escape sequences to the user's terminal.
package transcript

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxLine bounds the buffered partial line; longer lines are cut, as a
// server could otherwise make us buffer without limit.
const maxLine = 4096

// Writer masks and formats a session transcript. It is not safe for
// concurrent use; go-smtp writes to it from one goroutine.
type Writer struct {
	w       io.Writer
	partial []byte
	inAuth  bool  // between AUTH and the server's final reply to it
	inData  bool  // between 354 and the lone dot
	dataLen int64 // bytes of message seen while inData
	midLine bool  // inData and the last write did not end a line
	bdat    int64 // bytes of a BDAT chunk still to come (RFC 3030)
	broken  bool  // the underlying writer failed; stop writing
}

// New returns a Writer that prints to w.
func New(w io.Writer) *Writer { return &Writer{w: w} }

// Write implements io.Writer. It never fails, so that a broken terminal
// cannot break a delivery.
func (t *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if t.bdat > 0 {
			k := min(int64(len(p)), t.bdat)
			t.bdat -= k
			t.dataLen += k
			p = p[k:]
			if t.bdat == 0 {
				t.printf(">>> (message: %d bytes)\n", t.dataLen)
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if t.inData {
				t.dataLen += int64(len(p))
				t.midLine = true
			} else if len(t.partial) < maxLine {
				t.partial = append(t.partial, p[:min(len(p), maxLine-len(t.partial))]...)
			}
			break
		}
		line := p[:i+1]
		p = p[i+1:]
		if t.inData {
			if !t.midLine && bytes.Equal(line, []byte(".\r\n")) {
				t.inData = false
				t.printf(">>> (message: %d bytes)\n", t.dataLen)
				t.print(">>> .")
				continue
			}
			t.dataLen += int64(len(line))
			t.midLine = false
			continue
		}
		if len(t.partial) > 0 {
			line = append(t.partial, line...)
			t.partial = t.partial[:0]
		}
		t.line(strings.TrimRight(string(line), "\r\n"))
	}
	return n, nil
}

func (t *Writer) line(s string) {
	if isReply(s) {
		code, _ := strconv.Atoi(s[:3])
		if s[3] == ' ' {
			if t.inAuth && code != 334 {
				t.inAuth = false
			}
			if code == 354 {
				t.inData = true
				t.dataLen = 0
				t.midLine = false
			}
		}
		t.print("<<< " + s)
		return
	}
	switch {
	case t.inAuth:
		t.print(">>> <redacted>")
	case hasPrefixFold(s, "BDAT "):
		t.print(">>> " + s)
		if f := strings.Fields(s); len(f) >= 2 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n > 0 {
				t.bdat, t.dataLen = n, 0
			}
		}
	case hasPrefixFold(s, "AUTH "):
		t.inAuth = true
		f := strings.Fields(s)
		if len(f) > 2 {
			t.print(">>> " + f[0] + " " + f[1] + " <redacted>")
		} else {
			t.print(">>> " + s)
		}
	default:
		t.print(">>> " + s)
	}
}

func isReply(s string) bool {
	return len(s) >= 4 && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) && (s[3] == ' ' || s[3] == '-')
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func (t *Writer) print(s string) {
	t.printf("%s\n", escape(s))
}

func (t *Writer) printf(format string, args ...any) {
	if t.broken {
		return
	}
	if _, err := fmt.Fprintf(t.w, format, args...); err != nil {
		t.broken = true
	}
}

// escape replaces control and non-ASCII bytes by Go escapes.
func escape(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			q := strconv.QuoteToASCII(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}
