package lines

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll joins pieces into lines, marking each line end with "|".
func readAll(t *testing.T, r io.Reader, size int) string {
	t.Helper()
	br := bufio.NewReaderSize(r, size)
	var b strings.Builder
	for {
		p, end, err := Piece(br)
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Write(p)
		if end {
			b.WriteByte('|')
		}
	}
}

func TestPiece(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"LF", "a\nb\n", "a|b|"},
		{"CRLF", "a\r\nb\r\n", "a|b|"},
		{"bare CR", "a\rb\r", "a|b|"},
		{"CR CR LF is two", "a\r\r\nb", "a||b"},
		{"no final line ending", "a\nlast", "a|last"},
		{"empty lines", "\n\r\n\r", "|||"},
		{"empty", "", ""},
		{"long line", strings.Repeat("x", 100) + "\n", strings.Repeat("x", 100) + "|"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 16 is bufio's smallest buffer: long lines come in pieces, and
			// one byte at a time puts a CR at the end of the buffer.
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				if got := readAll(t, r, 16); got != tt.want {
					t.Errorf("lines of %q = %q, want %q", tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in        string
		haveField bool
		kind      Kind
		nameLen   int
		ok        bool
	}{
		{"\r\n", true, Empty, 0, true},
		{" folded", true, Continuation, 0, true},
		{" folded", false, Body, 0, true},
		{"Subject: x", false, Field, 7, true},
		{"Subject : x", false, Field, 7, true},
		{"Subj", false, 0, 0, false},
		{"hello world", false, Body, 0, true},
		{":no name", false, Body, 0, true},
	}
	for _, tt := range tests {
		kind, n, ok := Classify([]byte(tt.in), tt.haveField)
		if kind != tt.kind || n != tt.nameLen || ok != tt.ok {
			t.Errorf("Classify(%q, %v) = %v, %d, %v, want %v, %d, %v", tt.in, tt.haveField, kind, n, ok, tt.kind, tt.nameLen, tt.ok)
		}
	}
}
