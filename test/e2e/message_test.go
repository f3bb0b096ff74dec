package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"

	"relaymail/internal/smarthost"
)

func TestHeaderRecipients(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	in := "From: me@example.com\n" +
		"To: \"Doe, John\" <john@example.net>, team: x@example.net, y@example.net;,\n" +
		"  (a comment) z@example.net\n" +
		"Cc: undisclosed-recipients:;\n" +
		"Cc: =?UTF-8?B?SsO8cmdlbg==?= <juergen@example.net>, john@example.net\n" +
		"Bcc: hidden1@example.net,\n hidden2@example.net\n" +
		"Subject: groups\n\nbody\n"
	o := s.run(in, "-t", "-i", "-f", "me@example.com", "extra@example.net")
	wantCode(t, o, 0, "")
	m := s.one()
	// Postfix's order: command-line recipients, then those from the header.
	wantEnvelope(t, m, "me@example.com", "extra@example.net", "john@example.net", "x@example.net", "y@example.net",
		"z@example.net", "juergen@example.net", "hidden1@example.net", "hidden2@example.net")
	if bytes.Contains(m.Data, []byte("hidden")) || header(m.Data, "Bcc") != "" {
		t.Errorf("Bcc survived:\n%s", m.Data)
	}
	if !bytes.Contains(m.Data, []byte("Cc: undisclosed-recipients:;\r\n")) {
		t.Errorf("group header changed:\n%s", m.Data)
	}
}

func TestResentHeadersWin(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	in := "Resent-From: fw@example.com\nResent-To: new@example.net\nResent-Bcc: quiet@example.net\nFrom: orig@example.com\nTo: old@example.net\nSubject: fwd\n\nbody\n"
	o := s.run(in, "-t", "-f", "fw@example.com")
	wantCode(t, o, 0, "")
	m := s.one()
	wantEnvelope(t, m, "fw@example.com", "new@example.net", "quiet@example.net")
	if header(m.Data, "Resent-Bcc") != "" {
		t.Errorf("Resent-Bcc survived:\n%s", m.Data)
	}
}

func TestDotHandling(t *testing.T) {
	const in = "Subject: dots\n\nline\n..two dots stay\n.\nafter the dot\n"
	tests := []struct {
		name string
		args []string
		body string
	}{
		{"without -i a lone dot ends input", nil, "line\r\n..two dots stay\r\n"},
		{"-i keeps the dot", []string{"-i"}, "line\r\n..two dots stay\r\n.\r\nafter the dot\r\n"},
		{"-oi keeps the dot", []string{"-oi"}, "line\r\n..two dots stay\r\n.\r\nafter the dot\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{}, "", "")
			o := s.run(in, append(tt.args, "-f", "a@example.com", "b@example.net")...)
			wantCode(t, o, 0, "")
			m := s.one()
			_, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
			if string(body) != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
		})
	}
}

func TestLineEndings(t *testing.T) {
	const want = "Subject: endings\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <le@x>\r\nFrom: a@example.com\r\n\r\none\r\ntwo\r\nthree\r\nfour\r\n"
	inputs := map[string]string{
		"LF":      "Subject: endings\nDate: Thu, 26 Nov 2026 10:00:00 +0000\nMessage-ID: <le@x>\nFrom: a@example.com\n\none\ntwo\nthree\nfour\n",
		"CRLF":    want,
		"bare CR": "Subject: endings\rDate: Thu, 26 Nov 2026 10:00:00 +0000\rMessage-ID: <le@x>\rFrom: a@example.com\r\rone\rtwo\rthree\rfour",
		"mixed":   "Subject: endings\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\nMessage-ID: <le@x>\rFrom: a@example.com\n\r\none\ntwo\r\nthree\rfour",
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{}, "", "")
			o := s.run(in, "-i", "-f", "a@example.com", "b@example.net")
			wantCode(t, o, 0, "")
			if m := s.one(); string(m.Data) != want {
				t.Errorf("message = %q, want %q", m.Data, want)
			}
		})
	}
}

func TestEightBitUTF8(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	in := "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.com>\r\nTo: b@example.net\r\n" +
		"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4piV?=\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <u@x>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Grüße, café, 日本語, emoji 🎉\r\n"
	o := s.run(in, "-i", "-f", "j@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	m := s.one()
	if string(m.Data) != in {
		t.Errorf("message = %q, want %q", m.Data, in)
	}
	if m.MailOpts.Body != "8BITMIME" {
		t.Errorf("MAIL BODY = %q, want 8BITMIME", m.MailOpts.Body)
	}
}

func TestMissingHeadersCompleted(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	o := s.run("just a body, no header at all\n", "-F", "Backup Script", "-f", "backup@example.com", "ops@example.net")
	wantCode(t, o, 0, "")
	m := s.one()
	checks := map[string]string{
		"Date":       `^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$`,
		"Message-ID": `^<[A-Za-z0-9._-]+@app01\.example\.com>$`,
		"From":       `^"?Backup Script"? <backup@example\.com>$`,
	}
	for name, pattern := range checks {
		if got := header(m.Data, name); !regexp.MustCompile(pattern).MatchString(got) {
			t.Errorf("%s = %q, want match for %s\n%s", name, got, pattern, m.Data)
		}
	}
	if !bytes.HasSuffix(m.Data, []byte("\r\n\r\njust a body, no header at all\r\n")) {
		t.Errorf("body not intact:\n%q", m.Data)
	}
}

func TestHundredRecipients(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	var rcpts []string
	for i := range 100 {
		rcpts = append(rcpts, fmt.Sprintf("user%03d@example.net", i))
	}
	// Duplicates, with the domain in another case, collapse.
	args := append([]string{"-i", "-f", "list@example.com"}, rcpts...)
	args = append(args, "user000@EXAMPLE.net", "user001@example.net")
	o := s.run("Subject: many\n\nhello\n", args...)
	wantCode(t, o, 0, "")
	wantEnvelope(t, s.one(), "list@example.com", rcpts...)
}

// TestLargeMessage sends 50 MB and checks the bytes and that memory does
// not grow with the message.
func TestLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB message: skipped in -short mode")
	}
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "")
	const size = 50 << 20
	head := "From: big@example.com\r\nTo: b@example.net\r\nSubject: big\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big@x>\r\n\r\n"
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-", 1) + "\r\n" // 66 bytes
	h := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		w := io.MultiWriter(pw, h)
		io.WriteString(w, head)
		for n := 0; n < size; n += len(line) {
			io.WriteString(w, line)
		}
		pw.Close()
	}()
	o := runBinary(t, pr, "-C", s.conf, "-i", "-f", "big@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	m := s.one()
	var want [32]byte
	copy(want[:], h.Sum(nil))
	if m.SHA256 != want {
		t.Errorf("message of %d bytes arrived with a different hash", m.Size)
	}
	t.Logf("50 MB message: peak RSS of sendmail %d KiB", o.maxRSS)
	// Holding the message would need 50 MB at least; a streaming sendmail
	// stays near its own size.
	if o.maxRSS == 0 {
		t.Errorf("could not read the peak memory of sendmail from /proc")
	} else if o.maxRSS > 40<<10 {
		t.Errorf("peak RSS %d KiB for a 50 MB message, want under 40 MiB: the message is held in memory", o.maxRSS)
	}
}
