package smtpd

import (
	"bytes"
	"testing"
)

const testMarker = "@bare-0123456789abcdef.invalid"

// runFilter feeds in to a filter in pieces of at most step bytes and
// answers every DATA (taken or refused), as go-smtp would before reading
// again.
func runFilter(in []byte, step int, data bool) []byte {
	f := &bareFilter{maxLine: DefaultMaxLineLength, marker: []byte(testMarker)}
	var out []byte
	for len(in) > 0 {
		n := min(step, len(in))
		out = append(out, f.feed(in[:n])...)
		in = in[n:]
		for f.mode == modeDataWait {
			out = append(out, f.answered(data)...)
		}
	}
	for f.mode == modeDataWait {
		out = append(out, f.answered(data)...)
	}
	return append(out, f.flush()...)
}

// FuzzBareFilter: however the input is cut into reads, the filter lets the
// same bytes through; and it only ever adds the bare domain, so taking
// that out gives the input back.
func FuzzBareFilter(f *testing.F) {
	f.Add([]byte("EHLO c\r\nMAIL FROM:<daemon>\r\nRCPT TO:<root>\r\nDATA\r\nRCPT TO:<x>\r\n.\r\nRCPT TO:<y>\r\n"), 1, true)
	f.Add([]byte("DATA\r\nx\r\r\n.\r\nRCPT TO:<a>\r\n.\r\nBDAT 3\r\nabcRCPT TO:<b>\r\n"), 7, false)
	f.Add([]byte("rcpt to: <a.b>\nmail from:<>\r\n"), 3, true)
	f.Fuzz(func(t *testing.T, in []byte, step int, ok bool) {
		if step <= 0 || step > len(in) {
			step = max(1, len(in))
		}
		whole := runFilter(in, len(in)+1, ok)
		pieces := runFilter(in, step, ok)
		if !bytes.Equal(whole, pieces) {
			t.Fatalf("read whole: %q\nin pieces of %d: %q", whole, step, pieces)
		}
		if !bytes.Contains(in, []byte(testMarker)) {
			if back := bytes.ReplaceAll(whole, []byte(testMarker), nil); !bytes.Equal(back, in) {
				t.Fatalf("filter changed more than bare names:\nin  %q\nout %q", in, whole)
			}
		}
	})
}

// TestDataEnd: the filter's end of data is go-smtp's, CRLF "." CRLF where
// the first CRLF may be the DATA line's; bare LF and CR CR LF are data.
func TestDataEnd(t *testing.T) {
	for _, tt := range []struct {
		data string
		n    int // bytes up to and including the end; -1 = no end
	}{
		{".\r\n", 3},
		{"a\r\n.\r\nrest", 6},
		{"a\n.\r\n", -1},
		{"a\r\r\n.\r\n", -1},
		{"a\r\n..\r\n.\r\n", 10},
		{"a\r\n.x\r\n", -1},
		{"a\r\n.\rx\r\n.\r\n", 11},
	} {
		f := &bareFilter{}
		n, end := f.dataEnd([]byte(tt.data))
		if !end {
			n = -1
		}
		if n != tt.n {
			t.Errorf("dataEnd(%q) = %d, want %d", tt.data, n, tt.n)
		}
	}
}
