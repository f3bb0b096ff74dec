package mailx

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

func TestParseArgs(t *testing.T) {
	o, err := ParseArgs([]string{"-nE", "-s", "subj", "-c", "c@x", "-b", "b@x", "-rfrom@x", "-a", "f.pdf", "-S", "sendwait", "to@x", "-A", "acct", "--", "-odd@x"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Subject != "subj" || !o.SkipEmpty || o.From != "from@x" || !slices.Equal(o.A, []string{"f.pdf"}) || !slices.Equal(o.AttachOnly, []string{"acct"}) {
		t.Errorf("ParseArgs = %+v", o)
	}
	if got := o.Recipients(); !slices.Equal(got, []string{"to@x", "-odd@x", "c@x", "b@x"}) {
		t.Errorf("Recipients = %q", got)
	}
	if o, _ := ParseArgs([]string{"-S", "from=Ops <ops@x>", "r@x"}); o.From != "Ops <ops@x>" {
		t.Errorf("-S from= gave %q", o.From)
	}
	for _, args := range [][]string{{}, {"-f"}, {"-u", "root"}, {"-H"}, {"-e"}} {
		if _, err := ParseArgs(args); !errors.Is(err, ErrRead) {
			t.Errorf("ParseArgs(%q) = %v, want ErrRead", args, err)
		}
	}
	for _, args := range [][]string{{"-s"}, {"-Z", "r@x"}, {"--bogus", "r@x"}, {"-s", "a\rb", "r@x"}, {"r@x\n"}} {
		var ue *UsageError
		if _, err := ParseArgs(args); !errors.As(err, &ue) {
			t.Errorf("ParseArgs(%q) = %v, want a usage error", args, err)
		}
	}
}

// TestOpen: -a is a file when there is one, else a header field; -A is a
// file or ignored; anything else fails.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	os.WriteFile(file, []byte("x"), 0o644)
	o := Options{A: []string{file, "X-Loop: me"}, AttachOnly: []string{"work-account", file}}
	files, headers, err := o.Open(os.Open)
	if err != nil || len(files) != 2 || !slices.Equal(headers, []string{"X-Loop: me"}) {
		t.Fatalf("Open = %d files, %q, %v", len(files), headers, err)
	}
	for _, f := range files {
		f.File.Close()
	}
	if _, _, err := (Options{A: []string{filepath.Join(dir, "missing.pdf")}}).Open(os.Open); err == nil {
		t.Errorf("a missing file that is no header field was taken")
	}
	if _, _, err := (Options{A: []string{dir}}).Open(os.Open); err == nil {
		t.Errorf("a directory was taken as an attachment")
	}
}

// TestWriteHeaders: -a fields: a text Content-Type is the text's,
// MIME-Version and the encoding stay the writer's, From replaces -r's
// field, Subject yields to -s, others are added.
func TestWriteHeaders(t *testing.T) {
	o := Options{To: []string{"to@x"}, From: "r@x", Subject: "from -s", SubjectSet: true}
	headers := []string{"Content-Type: text/html", "MIME-Version: 2.0", "Content-Transfer-Encoding: binary", "From: Ops <ops@x>", "Subject: from -a", "X-Loop: me"}
	var b bytes.Buffer
	if err := Write(&b, o, headers, strings.NewReader("<p>hi</p>\n"), nil); err != nil {
		t.Fatal(err)
	}
	r, err := mail.CreateReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header
	if ct, params, _ := h.ContentType(); ct != "text/html" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type %q %v", ct, params)
	}
	if h.Get("Mime-Version") != "1.0" || h.Get("Content-Transfer-Encoding") != "7bit" {
		t.Errorf("MIME-Version %q, encoding %q", h.Get("Mime-Version"), h.Get("Content-Transfer-Encoding"))
	}
	if got := h.Values("From"); len(got) != 1 || got[0] != "Ops <ops@x>" {
		t.Errorf("From %q", got)
	}
	if s, _ := h.Subject(); s != "from -s" || len(h.Values("Subject")) != 1 {
		t.Errorf("Subject %q (%d fields)", s, len(h.Values("Subject")))
	}
	if h.Get("X-Loop") != "me" {
		t.Errorf("X-Loop %q", h.Get("X-Loop"))
	}
}

// TestWriteEncoding: short ASCII lines go 7bit; UTF-8, long lines and a
// text longer than what is sniffed go quoted-printable, and decode back.
func TestWriteEncoding(t *testing.T) {
	for _, tt := range []struct {
		body, cte string
	}{
		{"plain\n.\n", "7bit"},
		{"Grüße\n", "quoted-printable"},
		{strings.Repeat("x", 1200) + "\n", "quoted-printable"},
		{strings.Repeat("ascii line\n", sniff/10), "quoted-printable"},
	} {
		var b bytes.Buffer
		if err := Write(&b, Options{To: []string{"t@x"}}, nil, strings.NewReader(tt.body), nil); err != nil {
			t.Fatal(err)
		}
		r, err := mail.CreateReader(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get("Content-Transfer-Encoding"); got != tt.cte {
			t.Errorf("%.20q...: encoding %q, want %q", tt.body, got, tt.cte)
		}
		p, err := r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p.Body)
		if strings.ReplaceAll(string(got), "\r\n", "\n") != tt.body {
			t.Errorf("%.20q... decodes to %.20q...", tt.body, got)
		}
	}
}

func TestEmpty(t *testing.T) {
	if e, err := Empty(bufio.NewReader(strings.NewReader(""))); !e || err != nil {
		t.Errorf("empty: %v %v", e, err)
	}
	br := bufio.NewReader(strings.NewReader("x"))
	if e, _ := Empty(br); e {
		t.Errorf("x is empty")
	}
	if b, _ := io.ReadAll(br); string(b) != "x" {
		t.Errorf("Empty consumed the body")
	}
	if _, err := Empty(bufio.NewReader(errReader{})); err == nil {
		t.Errorf("a read error is an empty body")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken") }

// FuzzMail: any command line parses or is refused without a panic, and
// one that parses, with any -a header fields and text, makes a message
// go-message reads back with the subject and the text intact and no line
// break smuggled into the header.
func FuzzMail(f *testing.F) {
	f.Add("-s\x00subject\x00-a\x00X-Loop: me\x00to@x", "body\n.\n")
	f.Add("-E\x00-c\x00c@x\x00--\x00-r@x", "Grüße\n")
	f.Add("-a\x00Content-Type: text/html; charset=latin1\x00-s\x00=?utf-8?q?x?=\x00t@x", "<p>\n")
	f.Fuzz(func(t *testing.T, argv, body string) {
		o, err := ParseArgs(strings.Split(argv, "\x00"))
		if err != nil {
			return
		}
		var headers []string
		for _, a := range o.A {
			if headerField(a) {
				headers = append(headers, a)
			}
		}
		var b bytes.Buffer
		if err := Write(&b, o, headers, strings.NewReader(body), nil); err != nil {
			return // go-message refuses some field names
		}
		r, err := mail.CreateReader(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("unreadable message: %v\n%q", err, b.String())
		}
		if o.SubjectSet {
			if s, err := r.Header.Subject(); err == nil && s != o.Subject && strings.ToValidUTF8(o.Subject, "") == o.Subject && strings.TrimSpace(o.Subject) == o.Subject {
				t.Errorf("subject %q came back as %q", o.Subject, s)
			}
		}
	})
}
