package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"relaymail/internal/sysexits"
)

// zeroReader is a Rand that makes Message-IDs and boundaries predictable.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

var (
	testNow     = time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC)
	testArrival = time.Date(2023, 12, 28, 9, 30, 0, 0, time.FixedZone("", 3600))
)

const (
	testID       = "20240102150405.aaaaaaaaaaaaaaaaaaaa@relay.example.org"
	testBoundary = "bounce.aaaaaaaaaaaaaaaaaaaaaaaa"
	// testOriginal is what intake spools for a PHP mail() call.
	testOriginal = "Received: from www-data by relay.example.org (relaymail);\r\n" +
		"\tTue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"To: bob@example.com\r\n" +
		"Subject: Your order\r\n" +
		"From: shop@example.org\r\n" +
		"Date: Tue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"Message-ID: <abc@example.org>\r\n" +
		"\r\n" +
		"Thank you for your order.\r\n"
	testHeader = "Received: from www-data by relay.example.org (relaymail);\r\n" +
		"\tTue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"To: bob@example.com\r\n" +
		"Subject: Your order\r\n" +
		"From: shop@example.org\r\n" +
		"Date: Tue, 02 Jan 2024 14:04:05 +0000\r\n" +
		"Message-ID: <abc@example.org>\r\n"
)

func testOptions() Options {
	return Options{
		ReportingMTA: "relay.example.org",
		From:         "MAILER-DAEMON@relay.example.org",
		To:           "shop@example.org",
		Arrival:      testArrival,
		Now:          func() time.Time { return testNow },
		Rand:         zeroReader{},
	}
}

// test550 is the typical bounce: the smarthost refused a recipient.
func test550() Recipient {
	return Recipient{
		Addr:        "bob@example.com",
		ORcpt:       "Bob@Example.COM",
		Action:      "failed",
		Status:      "5.1.1",
		Code:        550,
		Reply:       "<bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		RemoteMTA:   "smtp.example.com",
		LastAttempt: testNow,
	}
}

// crlfLines turns the "\n" of a readable literal into CRLF.
func crlfLines(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const golden550 = `Reporting-MTA: dns; relay.example.org
Arrival-Date: Thu, 28 Dec 2023 09:30:00 +0100

Original-Recipient: rfc822; Bob@Example.COM
Final-Recipient: rfc822; bob@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; smtp.example.com
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address
 rejected: User unknown in virtual mailbox table
Last-Attempt-Date: Tue, 02 Jan 2024 15:04:05 +0000
`

// bounce is a report parsed back with go-message.
type bounce struct {
	raw    []byte
	header mail.Header
	parts  []part
}

type part struct {
	header    message.Header
	mediaType string
	params    map[string]string
	body      []byte // decoded
}

// parse reads a report back and checks the structure every report has.
func parse(t testing.TB, raw []byte) *bounce {
	t.Helper()
	checkLines(t, raw)
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("message.Read: %v\n%s", err, raw)
	}
	b := &bounce{raw: raw, header: mail.Header{Header: e.Header}}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q %v (%v), want multipart/report; report-type=delivery-status", mt, params, err)
	}
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("read part %d: %v", len(b.parts)+1, err)
		}
		mt, params, _ := p.Header.ContentType()
		b.parts = append(b.parts, part{p.Header, mt, params, body})
	}
	if len(b.parts) != 3 {
		t.Fatalf("report has %d parts, want 3", len(b.parts))
	}
	for i, want := range []string{"text/plain", "message/delivery-status"} {
		if got := b.parts[i].mediaType; got != want {
			t.Errorf("part %d is %q, want %q", i+1, got, want)
		}
	}
	if got := b.parts[0].params["charset"]; got != "utf-8" {
		t.Errorf("text part charset = %q, want utf-8", got)
	}
	return b
}

// checkLines fails unless every line of out ends in CRLF and holds at
// most 998 bytes.
func checkLines(t testing.TB, out []byte) {
	t.Helper()
	for i, line := range bytes.SplitAfter(out, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			t.Fatalf("line %d %q does not end in CRLF", i+1, line)
		}
		if bytes.ContainsAny(line[:len(line)-2], "\r\n") {
			t.Fatalf("line %d %q holds a bare CR or LF", i+1, line)
		}
		if len(line)-2 > 998 {
			t.Fatalf("line %d is %d bytes long", i+1, len(line)-2)
		}
	}
}

// text returns the explanation.
func (b *bounce) text() string { return string(b.parts[0].body) }

// says reports whether the explanation holds want: with its line breaks
// if want has any, else as flowing text.
func (b *bounce) says(want string) bool {
	if strings.Contains(want, "\r\n") {
		return strings.Contains(b.text(), want)
	}
	return strings.Contains(strings.Join(strings.Fields(b.text()), " "), want)
}

// status returns the delivery-status groups: the per-message fields, then
// one group per recipient.
func (b *bounce) status(t testing.TB) []textproto.Header {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b.parts[1].body))
	var groups []textproto.Header
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return groups
		}
		h, err := textproto.ReadHeader(br)
		if err != nil {
			t.Fatalf("read delivery-status group %d: %v\n%s", len(groups)+1, err, b.parts[1].body)
		}
		groups = append(groups, h)
	}
}

// fields returns a header's fields as "Name: value" in order, names as
// written.
func fields(h textproto.Header) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		raw, _ := f.Raw()
		name, _, _ := strings.Cut(string(raw), ":")
		out = append(out, name+": "+f.Value())
	}
	return out
}

func write(t testing.TB, original io.Reader, recips []Recipient, opts Options) (*bounce, Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Write(&buf, original, recips, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if res.Size != int64(buf.Len()) {
		t.Errorf("Result.Size = %d, wrote %d bytes", res.Size, buf.Len())
	}
	if got := has8bit(buf.Bytes()); res.EightBit != got {
		t.Errorf("Result.EightBit = %v, output has 8-bit bytes: %v", res.EightBit, got)
	}
	return parse(t, buf.Bytes()), res
}

func TestWrite550(t *testing.T) {
	b, res := write(t, strings.NewReader(testOriginal), []Recipient{test550()}, testOptions())

	if want := (Result{MessageID: testID, Size: int64(len(b.raw))}); res != want {
		t.Errorf("Result = %+v, want %+v", res, want)
	}

	// The header, as written.
	head, _, _ := strings.Cut(string(b.raw), "\r\n\r\n")
	wantHead := crlfLines(`From: Mail Delivery System <MAILER-DAEMON@relay.example.org>
To: <shop@example.org>
Subject: Undelivered Mail Returned to Sender
Date: Tue, 02 Jan 2024 15:04:05 +0000
Message-ID: <` + testID + `>
MIME-Version: 1.0
Auto-Submitted: auto-replied
Content-Type: multipart/report; report-type=delivery-status;
 boundary="` + testBoundary + `"`)
	if head != wantHead {
		t.Errorf("header:\n%s\nwant:\n%s", head, wantHead)
	}
	// And as a mail reader sees it.
	h := b.header
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "MAILER-DAEMON@relay.example.org" || from[0].Name != "Mail Delivery System" {
		t.Errorf("From = %v (%v)", from, err)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "shop@example.org" {
		t.Errorf("To = %v (%v)", to, err)
	}
	if date, err := h.Date(); err != nil || !date.Equal(testNow) {
		t.Errorf("Date = %v (%v), want %v", date, err, testNow)
	}
	if id, err := h.MessageID(); err != nil || id != testID {
		t.Errorf("Message-ID = %q (%v), want %q", id, err, testID)
	}
	if s, _ := h.Subject(); s != "Undelivered Mail Returned to Sender" {
		t.Errorf("Subject = %q", s)
	}
	for k, want := range map[string]string{"MIME-Version": "1.0", "Auto-Submitted": "auto-replied", "Content-Transfer-Encoding": ""} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// Part 1: words for people.
	for _, want := range []string{
		"This is the mail system at relay.example.org.",
		"could not be delivered to the recipient below",
		"  bob@example.com\r\n",
		"The mail server smtp.example.com replied:",
		"      550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in\r\n      virtual mailbox table\r\n",
		"The address does not exist. Check it for typing mistakes",
		"Your message was sent on Thu, 28 Dec 2023 09:30:00 +0100.",
		"Its header is attached below",
		"forward this whole message to your mail administrator.\r\n",
	} {
		if !b.says(want) {
			t.Errorf("explanation lacks %q:\n%s", want, b.text())
		}
	}
	if got := b.parts[0].header.Get("Content-Transfer-Encoding"); got != "7bit" {
		t.Errorf("explanation Content-Transfer-Encoding = %q, want 7bit", got)
	}

	// Part 2: the golden delivery-status, byte for byte.
	if got, want := string(b.parts[1].body), crlfLines(golden550); got != want {
		t.Errorf("delivery-status:\n%s\nwant:\n%s", got, want)
	}
	groups := b.status(t)
	wantGroups := [][]string{
		{"Reporting-MTA: dns; relay.example.org", "Arrival-Date: Thu, 28 Dec 2023 09:30:00 +0100"},
		{
			"Original-Recipient: rfc822; Bob@Example.COM",
			"Final-Recipient: rfc822; bob@example.com",
			"Action: failed",
			"Status: 5.1.1",
			"Remote-MTA: dns; smtp.example.com",
			"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
			"Last-Attempt-Date: Tue, 02 Jan 2024 15:04:05 +0000",
		},
	}
	var gotGroups [][]string
	for _, g := range groups {
		gotGroups = append(gotGroups, fields(g))
	}
	if !reflect.DeepEqual(gotGroups, wantGroups) {
		t.Errorf("delivery-status fields = %q, want %q", gotGroups, wantGroups)
	}

	// Part 3: the original's header, without its body.
	if b.parts[2].mediaType != "text/rfc822-headers" {
		t.Errorf("part 3 is %q, want text/rfc822-headers", b.parts[2].mediaType)
	}
	if got := string(b.parts[2].body); got != testHeader {
		t.Errorf("returned header = %q, want %q", got, testHeader)
	}
}

// nonSeeker hides a reader's Seek method.
type nonSeeker struct{ io.Reader }

func TestWriteReturn(t *testing.T) {
	eightBitBody := strings.Replace(testOriginal, "Thank you", "Merci, à bientôt", 1)
	tests := []struct {
		name      string
		ret       string
		maxFull   int64
		original  io.Reader
		wantType  string
		wantBody  string
		want8bit  bool   // Content-Transfer-Encoding: 8bit on part 3 and the message
		wantText  string // in the explanation
		wantEight bool   // Result.EightBit
	}{
		{
			name:     "default is HDRS",
			original: strings.NewReader(testOriginal),
			wantType: "text/rfc822-headers", wantBody: testHeader,
			wantText: "Its header is attached below",
		},
		{
			name: "HDRS", ret: "hdrs",
			original: strings.NewReader(testOriginal),
			wantType: "text/rfc822-headers", wantBody: testHeader,
		},
		{
			name: "FULL", ret: "FULL",
			original: strings.NewReader(testOriginal),
			wantType: "message/rfc822", wantBody: testOriginal,
			wantText: "It is attached below.",
		},
		{
			name: "FULL at the limit", ret: "FULL", maxFull: int64(len(testOriginal)),
			original: strings.NewReader(testOriginal),
			wantType: "message/rfc822", wantBody: testOriginal,
		},
		{
			name: "FULL over the limit", ret: "FULL", maxFull: int64(len(testOriginal)) - 1,
			original: strings.NewReader(testOriginal),
			wantType: "text/rfc822-headers", wantBody: testHeader,
			wantText: "too large to return in full",
		},
		{
			name: "FULL header alone over the limit", ret: "FULL", maxFull: 10,
			original: strings.NewReader(testOriginal),
			wantType: "text/rfc822-headers", wantBody: testHeader,
			wantText: "too large to return in full",
		},
		{
			name: "FULL 8-bit body", ret: "FULL",
			original: strings.NewReader(eightBitBody),
			wantType: "message/rfc822", wantBody: eightBitBody,
			want8bit: true, wantEight: true,
		},
		{
			name:     "HDRS 8-bit body is not returned",
			original: strings.NewReader(eightBitBody),
			wantType: "text/rfc822-headers", wantBody: testHeader,
		},
		{
			name:     "8-bit header",
			original: strings.NewReader("Subject: Grüße\r\nFrom: jürgen@bücher.example\r\n\r\nHallo\r\n"),
			wantType: "text/rfc822-headers", wantBody: "Subject: Grüße\r\nFrom: jürgen@bücher.example\r\n",
			want8bit: true, wantEight: true,
		},
		{
			name:     "8-bit header, latin-1",
			original: strings.NewReader("Subject: Gr\xfc\xdfe\r\n\r\n"),
			wantType: "text/rfc822-headers", wantBody: "Subject: Gr\xfc\xdfe\r\n",
			want8bit: true, wantEight: true,
		},
		{
			name:     "not seekable: header labelled 8bit",
			original: nonSeeker{strings.NewReader(testOriginal)},
			wantType: "text/rfc822-headers", wantBody: testHeader,
			want8bit: true,
		},
		{
			name: "not seekable: FULL returns the header", ret: "FULL",
			original: nonSeeker{strings.NewReader(testOriginal)},
			wantType: "text/rfc822-headers", wantBody: testHeader,
			want8bit: true, wantText: "Its header is attached below",
		},
		{
			name:     "LF line endings",
			original: strings.NewReader(strings.ReplaceAll(testOriginal, "\r\n", "\n")),
			wantType: "text/rfc822-headers", wantBody: testHeader,
		},
		{
			name: "FULL bare CR line endings", ret: "FULL",
			original: strings.NewReader("Subject: x\r\r\rbody\r"),
			wantType: "message/rfc822", wantBody: "Subject: x\r\n\r\n\r\nbody\r\n",
		},
		{
			name:     "no separator, no body",
			original: strings.NewReader("Subject: x\r\nTo: bob@example.com"),
			wantType: "text/rfc822-headers", wantBody: "Subject: x\r\nTo: bob@example.com\r\n",
		},
		{
			name: "FULL no separator, no body", ret: "FULL",
			original: strings.NewReader("Subject: x\r\nTo: bob@example.com\r\n"),
			wantType: "message/rfc822", wantBody: "Subject: x\r\nTo: bob@example.com\r\n",
		},
		{
			name:     "no separator before the body",
			original: strings.NewReader("Subject: x\r\nTo: bob@example.com\r\nHello Bob,\r\nsee you.\r\n"),
			wantType: "text/rfc822-headers", wantBody: "Subject: x\r\nTo: bob@example.com\r\n",
		},
		{
			name: "FULL no separator before the body", ret: "FULL",
			original: strings.NewReader("Subject: x\nHello Bob,\nsee you."),
			wantType: "message/rfc822", wantBody: "Subject: x\r\n\r\nHello Bob,\r\nsee you.\r\n",
		},
		{
			name:     "no header",
			original: strings.NewReader("Hello Bob,\r\nsee you.\r\n"),
			wantType: "text/rfc822-headers", wantBody: "",
		},
		{
			name:     "empty original",
			original: strings.NewReader(""),
			wantType: "text/rfc822-headers", wantBody: "",
		},
		{
			name:     "long header line is folded",
			original: strings.NewReader("X-Long: " + strings.Repeat("a", 1500) + "\r\nSubject: x\r\n\r\n"),
			wantType: "text/rfc822-headers",
			wantBody: "X-Long: " + strings.Repeat("a", 990) + "\r\n " + strings.Repeat("a", 510) + "\r\nSubject: x\r\n",
		},
		{
			name: "FULL long body line is cut", ret: "FULL",
			original: strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("b", 2000) + "\r\n"),
			wantType: "message/rfc822",
			wantBody: "Subject: x\r\n\r\n" + strings.Repeat("b", 998) + "\r\n" + strings.Repeat("b", 998) + "\r\n" + "bbbb\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.Return = tt.ret
			opts.MaxFull = tt.maxFull
			b, res := write(t, tt.original, []Recipient{test550()}, opts)
			p := b.parts[2]
			if p.mediaType != tt.wantType {
				t.Errorf("part 3 is %q, want %q", p.mediaType, tt.wantType)
			}
			if string(p.body) != tt.wantBody {
				t.Errorf("part 3 body = %q, want %q", p.body, tt.wantBody)
			}
			wantCTE := ""
			if tt.want8bit {
				wantCTE = "8bit"
			}
			if got := p.header.Get("Content-Transfer-Encoding"); got != wantCTE {
				t.Errorf("part 3 Content-Transfer-Encoding = %q, want %q", got, wantCTE)
			}
			if got := b.header.Get("Content-Transfer-Encoding"); got != wantCTE {
				t.Errorf("message Content-Transfer-Encoding = %q, want %q", got, wantCTE)
			}
			if res.EightBit != tt.wantEight {
				t.Errorf("Result.EightBit = %v, want %v", res.EightBit, tt.wantEight)
			}
			if !b.says(tt.wantText) {
				t.Errorf("explanation lacks %q:\n%s", tt.wantText, b.text())
			}
			if tt.wantType == "message/rfc822" {
				// The returned message reads as one.
				if _, err := message.Read(bytes.NewReader(p.body)); err != nil {
					t.Errorf("returned message does not parse: %v", err)
				}
			}
		})
	}
}

func TestWriteRecipients(t *testing.T) {
	mod := func(f func(*Recipient)) Recipient {
		r := test550()
		f(&r)
		return r
	}
	tests := []struct {
		name        string
		recips      []Recipient
		opts        func(*Options)
		wantSubject string
		wantStatus  [][]string // delivery-status groups after the per-message one
		wantText    []string   // fragments of the explanation
		wantNoText  []string
		wantQP      bool // explanation is quoted-printable
		wantEight   bool
	}{
		{
			name: "CRLF injection in the reply",
			recips: []Recipient{mod(func(r *Recipient) {
				r.Reply = "User unknown\r\nBcc: victim@example.net\r\n\r\nX-Injected: yes\nSubject: pwned\x00\x1b[31m"
			})},
			wantSubject: "Undelivered Mail Returned to Sender",
			wantStatus: [][]string{{
				"Original-Recipient: rfc822; Bob@Example.COM",
				"Final-Recipient: rfc822; bob@example.com",
				"Action: failed",
				"Status: 5.1.1",
				"Remote-MTA: dns; smtp.example.com",
				"Diagnostic-Code: smtp; 550 5.1.1 User unknown Bcc: victim@example.net X-Injected: yes Subject: pwned [31m",
				"Last-Attempt-Date: Tue, 02 Jan 2024 15:04:05 +0000",
			}},
			wantText: []string{"550 5.1.1 User unknown Bcc: victim@example.net X-Injected: yes Subject:\r\n      pwned [31m\r\n"},
		},
		{
			name: "CRLF injection everywhere else",
			recips: []Recipient{{
				Addr:      "bob@example.com\r\nAction: delivered",
				ORcpt:     "x\r\n\r\nFinal-Recipient: rfc822; mallory@example.net",
				Reason:    "gave up\r\nStatus: 2.0.0",
				RemoteMTA: "mx.example.com\r\nRemote-MTA: dns; other",
			}},
			opts: func(o *Options) {
				o.OriginalEnvelopeID = "id\r\nReporting-MTA: dns; evil"
			},
			wantSubject: "Undelivered Mail Returned to Sender",
			wantStatus: [][]string{{
				"Original-Recipient: rfc822; x Final-Recipient: rfc822; mallory@example.net",
				"Final-Recipient: rfc822; bob@example.com Action: delivered",
				"Action: failed",
				"Status: 5.0.0",
				"Remote-MTA: dns; mx.example.com Remote-MTA: dns; other",
			}},
			wantText: []string{"Reason: gave up Status: 2.0.0\r\n"},
		},
		{
			name: "expired in the queue",
			recips: []Recipient{{
				Addr:        "bob@example.com",
				Status:      "4.4.7",
				Reason:      "message expired after 5 days in the queue",
				LastAttempt: testNow,
			}},
			wantSubject: "Undelivered Mail Returned to Sender",
			wantStatus: [][]string{{
				"Final-Recipient: rfc822; bob@example.com",
				"Action: failed",
				"Status: 4.4.7",
				"Last-Attempt-Date: Tue, 02 Jan 2024 15:04:05 +0000",
			}},
			wantText:   []string{"  bob@example.com\r\n    Reason: message expired after 5 days in the queue\r\n", "could not be delivered in time"},
			wantNoText: []string{"replied"},
		},
		{
			name: "status derived from the code",
			recips: []Recipient{
				{Addr: "a@example.com", Code: 554, Reply: "Transaction failed"},
				{Addr: "b@example.com", Code: 451, Reply: "Try again later"},
				{Addr: "c@example.com", Code: 550, Status: "5.1", Reply: "bad status"},
				{Addr: "d@example.com", Code: 354, Reply: "go ahead"},
			},
			wantStatus: [][]string{
				{"Final-Recipient: rfc822; a@example.com", "Action: failed", "Status: 5.0.0", "Diagnostic-Code: smtp; 554 Transaction failed"},
				{"Final-Recipient: rfc822; b@example.com", "Action: failed", "Status: 4.0.0", "Diagnostic-Code: smtp; 451 Try again later"},
				{"Final-Recipient: rfc822; c@example.com", "Action: failed", "Status: 5.0.0", "Diagnostic-Code: smtp; 550 bad status"},
				{"Final-Recipient: rfc822; d@example.com", "Action: failed", "Status: 5.0.0", "Diagnostic-Code: smtp; 354 go ahead"},
			},
			wantText: []string{"the recipients below", "The mail server replied:\r\n      554 Transaction failed\r\n"},
		},
		{
			name:       "reply without a code",
			recips:     []Recipient{{Addr: "a@example.com", Reply: "connection reset by peer", RemoteMTA: "smtp.example.com"}},
			wantStatus: [][]string{{"Final-Recipient: rfc822; a@example.com", "Action: failed", "Status: 5.0.0", "Remote-MTA: dns; smtp.example.com"}},
			wantText:   []string{"The mail server smtp.example.com replied:\r\n      connection reset by peer\r\n"},
		},
		{
			name:   "reply already holds the status",
			recips: []Recipient{{Addr: "a@example.com", Code: 552, Status: "5.2.2", Reply: "5.2.2 Mailbox full"}},
			wantStatus: [][]string{
				{"Final-Recipient: rfc822; a@example.com", "Action: failed", "Status: 5.2.2", "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full"},
			},
			wantText: []string{"mailbox is full"},
		},
		{
			name: "delayed and delivered",
			recips: []Recipient{
				{Addr: "a@example.com", Action: "delayed", Code: 421, Status: "4.7.0", Reply: "Try again later"},
				{Addr: "b@example.com", Action: "delivered", Code: 250, Status: "2.0.0", Reply: "OK queued as 1234"},
				{Addr: "c@example.com", Action: "delayed"},
			},
			wantSubject: "Delayed Mail (still being retried)",
			wantStatus: [][]string{
				{"Final-Recipient: rfc822; a@example.com", "Action: delayed", "Status: 4.7.0", "Diagnostic-Code: smtp; 421 4.7.0 Try again later"},
				{"Final-Recipient: rfc822; b@example.com", "Action: delivered", "Status: 2.0.0", "Diagnostic-Code: smtp; 250 2.0.0 OK queued as 1234"},
				{"Final-Recipient: rfc822; c@example.com", "Action: delayed", "Status: 4.0.0"},
			},
			wantText:   []string{"has not been delivered yet to the recipients below", "was delivered to the recipient below"},
			wantNoText: []string{"policy"},
		},
		{
			name:        "all delivered",
			recips:      []Recipient{{Addr: "b@example.com", Action: "delivered"}},
			wantSubject: "Successful Mail Delivery Report",
			wantStatus:  [][]string{{"Final-Recipient: rfc822; b@example.com", "Action: delivered", "Status: 2.0.0"}},
			wantNoText:  []string{"administrator"},
		},
		{
			name:   "policy rejection and envelope id",
			recips: []Recipient{{Addr: "b@example.com", Code: 550, Status: "5.7.1", Reply: "Message rejected as spam"}},
			opts:   func(o *Options) { o.OriginalEnvelopeID = "QQ314159"; o.Arrival = time.Time{} },
			wantStatus: [][]string{
				{"Final-Recipient: rfc822; b@example.com", "Action: failed", "Status: 5.7.1", "Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam"},
			},
			wantText:   []string{"security or policy reasons"},
			wantNoText: []string{"was sent on"},
		},
		{
			name: "non-ASCII reply and addresses",
			recips: []Recipient{{
				Addr: "jürgen@bücher.example", ORcpt: "Jürgen+x=y@bücher.example",
				Code: 550, Status: "5.1.1", Reply: "Empfänger unbekannt", RemoteMTA: "mx.bücher.example",
			}},
			wantStatus: [][]string{{
				`Original-Recipient: utf-8; J\x{FC}rgen\x{2B}x\x{3D}y@b\x{FC}cher.example`,
				`Final-Recipient: utf-8; j\x{FC}rgen@b\x{FC}cher.example`,
				"Action: failed",
				"Status: 5.1.1",
				"Remote-MTA: dns; mx.b?cher.example",
				"Diagnostic-Code: smtp; 550 5.1.1 Empf?nger unbekannt",
			}},
			wantText: []string{"  jürgen@bücher.example\r\n", "The mail server mx.bücher.example replied:\r\n      550 5.1.1 Empfänger unbekannt\r\n"},
			wantQP:   true,
		},
		{
			name:   "UTF-8 envelope sender",
			recips: []Recipient{{Addr: "b@example.com", Code: 550, Reply: "no"}},
			opts:   func(o *Options) { o.To = "jürgen@bücher.example" },
			wantStatus: [][]string{
				{"Final-Recipient: rfc822; b@example.com", "Action: failed", "Status: 5.0.0", "Diagnostic-Code: smtp; 550 no"},
			},
			wantEight: true,
		},
		{
			name: "long reply is folded",
			recips: []Recipient{{
				Addr: "b@example.com", Code: 550, Status: "5.7.1",
				Reply: strings.Repeat("word ", 300) + strings.Repeat("x", 1200),
			}},
			wantStatus: [][]string{{
				"Final-Recipient: rfc822; b@example.com", "Action: failed", "Status: 5.7.1",
				// Unfolding gives the reply back, but for a space in the 1200-byte word cut at 998.
				"Diagnostic-Code: smtp; 550 5.7.1 " + strings.Repeat("word ", 300) + strings.Repeat("x", 997) + " " + strings.Repeat("x", 203),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			b, res := write(t, strings.NewReader(testOriginal), tt.recips, opts)
			if tt.wantSubject != "" {
				if s, _ := b.header.Subject(); s != tt.wantSubject {
					t.Errorf("Subject = %q, want %q", s, tt.wantSubject)
				}
			}
			groups := b.status(t)
			var got [][]string
			for _, g := range groups[1:] {
				got = append(got, fields(g))
			}
			if !reflect.DeepEqual(got, tt.wantStatus) {
				t.Errorf("per-recipient fields =\n%q\nwant\n%q", got, tt.wantStatus)
			}
			wantMsg := []string{"Reporting-MTA: dns; relay.example.org"}
			if id := opts.OriginalEnvelopeID; id != "" {
				wantMsg = append([]string{"Original-Envelope-Id: " + clean(id)}, wantMsg...)
			}
			if !opts.Arrival.IsZero() {
				wantMsg = append(wantMsg, "Arrival-Date: Thu, 28 Dec 2023 09:30:00 +0100")
			}
			if got := fields(groups[0]); !reflect.DeepEqual(got, wantMsg) {
				t.Errorf("per-message fields = %q, want %q", got, wantMsg)
			}
			for _, want := range tt.wantText {
				if !b.says(want) {
					t.Errorf("explanation lacks %q:\n%s", want, b.text())
				}
			}
			for _, bad := range tt.wantNoText {
				if b.says(bad) {
					t.Errorf("explanation holds %q:\n%s", bad, b.text())
				}
			}
			cte := b.parts[0].header.Get("Content-Transfer-Encoding")
			if tt.wantQP != (cte == "quoted-printable") {
				t.Errorf("explanation Content-Transfer-Encoding = %q, want quoted-printable: %v", cte, tt.wantQP)
			}
			if res.EightBit != tt.wantEight {
				t.Errorf("Result.EightBit = %v, want %v", res.EightBit, tt.wantEight)
			}
			// Only the copy of the original's header and the To field
			// may be 8-bit.
			rest := bytes.Replace(b.raw, b.parts[2].body, nil, 1)
			rest = bytes.Replace(rest, []byte("To: <"+opts.To+">\r\n"), nil, 1)
			if has8bit(rest) {
				t.Errorf("8-bit bytes outside the returned header:\n%s", b.raw)
			}
			// Our header holds only our fields.
			var names []string
			for f := b.header.Fields(); f.Next(); {
				names = append(names, f.Key())
			}
			wantNames := []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Auto-Submitted", "Content-Type"}
			if !reflect.DeepEqual(names, wantNames) {
				t.Errorf("header fields = %q, want %q", names, wantNames)
			}
		})
	}
}

// failReader returns data, then err.
type failReader struct {
	data string
	err  error
}

func (r *failReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// failWriter accepts n bytes, then fails.
type failWriter struct {
	n   int
	err error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteErrors(t *testing.T) {
	errDisk := errors.New("no space left on device")
	errRead := errors.New("input/output error")
	tests := []struct {
		name      string
		opts      func(*Options)
		recips    []Recipient
		original  io.Reader
		w         io.Writer // nil: a buffer that must stay empty
		wantCode  sysexits.Code
		wantErr   string
		wantCause error
	}{
		{name: "no reporting MTA", opts: func(o *Options) { o.ReportingMTA = "" }, wantCode: sysexits.Software, wantErr: `invalid reporting MTA name ""`},
		{name: "bad reporting MTA", opts: func(o *Options) { o.ReportingMTA = "relay\r\nX: y" }, wantCode: sysexits.Software, wantErr: "invalid reporting MTA name"},
		{name: "bad hostname", opts: func(o *Options) { o.Hostname = "a b" }, wantCode: sysexits.Software, wantErr: `invalid hostname "a b"`},
		{name: "no From", opts: func(o *Options) { o.From = "" }, wantCode: sysexits.Software, wantErr: "invalid From address"},
		{name: "From without domain", opts: func(o *Options) { o.From = "MAILER-DAEMON" }, wantCode: sysexits.Software, wantErr: "invalid From address"},
		{name: "null sender", opts: func(o *Options) { o.To = "" }, wantCode: sysexits.Software, wantErr: "null sender"},
		{name: "bad To", opts: func(o *Options) { o.To = "a@b>\r\nBcc: c@d" }, wantCode: sysexits.DataErr, wantErr: "contains a line break"},
		{name: "bad RET", opts: func(o *Options) { o.Return = "BODY" }, wantCode: sysexits.Software, wantErr: `RET must be FULL or HDRS, not "BODY"`},
		{name: "no recipients", recips: []Recipient{}, wantCode: sysexits.Software, wantErr: "no recipients"},
		{name: "recipient without address", recips: []Recipient{test550(), {Addr: " \r\n"}}, wantCode: sysexits.Software, wantErr: "recipient 2: no address"},
		{name: "bad action", recips: []Recipient{{Addr: "a@b", Action: "relayed"}}, wantCode: sysexits.Software, wantErr: `action must be failed, delayed or delivered, not "relayed"`},
		{name: "bad code", recips: []Recipient{{Addr: "a@b", Code: 55}}, wantCode: sysexits.Software, wantErr: "SMTP reply code 55 out of range"},
		{name: "rand fails", opts: func(o *Options) { o.Rand = &failReader{err: errRead} }, wantCode: sysexits.OSErr, wantErr: "generate bounce message-id: input/output error"},
		{
			name:     "read fails in the header",
			original: nonSeeker{&failReader{data: "Subject: x\r\nTo: y", err: errRead}},
			w:        io.Discard, wantCode: sysexits.IOErr, wantErr: "read original message: input/output error", wantCause: errRead,
		},
		{
			name:     "write fails",
			w:        &failWriter{n: 100, err: errDisk},
			wantCode: sysexits.TempFail, wantErr: "write bounce: no space left on device", wantCause: errDisk,
		},
		{
			name:     "write fails in the returned header",
			w:        &failWriter{n: 3000, err: errDisk},
			original: strings.NewReader(strings.Repeat("X-Pad: "+strings.Repeat("p", 70)+"\r\n", 1000) + testOriginal),
			wantCode: sysexits.TempFail, wantErr: "write bounce: no space left on device", wantCause: errDisk,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			recips := tt.recips
			if recips == nil {
				recips = []Recipient{test550()}
			}
			original := tt.original
			if original == nil {
				original = strings.NewReader(testOriginal)
			}
			var buf bytes.Buffer
			w := tt.w
			if w == nil {
				w = &buf
			}
			res, err := Write(w, original, recips, opts)
			if err == nil {
				t.Fatalf("Write succeeded, want error %q", tt.wantErr)
			}
			if code := sysexits.CodeOf(err); code != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Write error = %q (%v), want %q (%v)", err, code, tt.wantErr, tt.wantCode)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("Write error = %v, want it to wrap %v", err, tt.wantCause)
			}
			if res != (Result{}) {
				t.Errorf("Result = %+v, want zero", res)
			}
			if buf.Len() != 0 {
				t.Errorf("Write failed but wrote %q", buf.String())
			}
		})
	}
}

// hugeMessage is a 30 MB message made up as it is read: a short header,
// then body lines. It counts what is read from it.
type hugeMessage struct {
	off, size int64
	read      int64
}

const hugeHeader = "From: shop@example.org\r\nTo: bob@example.com\r\nSubject: catalogue\r\n\r\n"

func (m *hugeMessage) Read(p []byte) (int, error) {
	if m.off >= m.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), m.size-m.off)]
	for i := range p {
		o := m.off + int64(i)
		if o < int64(len(hugeHeader)) {
			p[i] = hugeHeader[o]
		} else if o%80 == 79 {
			p[i] = '\n'
		} else {
			p[i] = 'z'
		}
	}
	m.off += int64(len(p))
	m.read += int64(len(p))
	return len(p), nil
}

func (m *hugeMessage) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += m.off
	case io.SeekEnd:
		offset += m.size
	}
	if offset < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	m.off = offset
	return offset, nil
}

func TestWriteHugeOriginal(t *testing.T) {
	const size = 30 << 20
	for _, seek := range []bool{true, false} {
		t.Run(fmt.Sprintf("seekable=%v", seek), func(t *testing.T) {
			m := &hugeMessage{size: size}
			var original io.Reader = m
			if !seek {
				original = nonSeeker{m}
			}
			var buf bytes.Buffer
			buf.Grow(64 << 10)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Write(&buf, original, []Recipient{test550()}, testOptions())
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d bytes, read %d bytes of %d", alloc, m.read, size)
			if alloc > 2<<20 {
				t.Errorf("Write allocated %d bytes for a %d-byte original, want < 2 MiB", alloc, size)
			}
			if m.read > 1<<20 {
				t.Errorf("Write read %d bytes of the original, want only around its header", m.read)
			}
			b := parse(t, buf.Bytes())
			if got := string(b.parts[2].body); got != strings.TrimSuffix(hugeHeader, "\r\n") {
				t.Errorf("returned header = %q, want %q", got, hugeHeader)
			}
		})
	}
}

// TestWriteFullHugeOriginal checks that FULL over MaxFull streams too: the
// measuring pass stops at the limit and only the header is returned.
func TestWriteFullHugeOriginal(t *testing.T) {
	m := &hugeMessage{size: 30 << 20}
	opts := testOptions()
	opts.Return = "FULL"
	var buf bytes.Buffer
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Write(&buf, m, []Recipient{test550()}, opts)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes, read %d bytes of %d", alloc, m.read, m.size)
	if alloc > 2<<20 {
		t.Errorf("Write allocated %d bytes, want < 2 MiB", alloc)
	}
	if limit := int64(DefaultMaxFull + 1<<20); m.read > limit {
		t.Errorf("Write read %d bytes of the original, want at most %d", m.read, limit)
	}
	b := parse(t, buf.Bytes())
	if b.parts[2].mediaType != "text/rfc822-headers" || !b.says("too large") {
		t.Errorf("part 3 is %q, explanation:\n%s", b.parts[2].mediaType, b.text())
	}
}

func TestField(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"Status", "5.1.1", "Status: 5.1.1\r\n"},
		{"Diagnostic-Code", "smtp; 550 " + strings.Repeat("abcdefghi ", 8) + "end",
			"Diagnostic-Code: smtp; 550 abcdefghi abcdefghi abcdefghi abcdefghi abcdefghi\r\n abcdefghi abcdefghi abcdefghi end\r\n"},
		{"X", strings.Repeat("y", 100), "X: " + strings.Repeat("y", 100) + "\r\n"},
		{"X", "a " + strings.Repeat("y", 1000), "X: a\r\n " + strings.Repeat("y", 997) + "\r\n " + "yyy\r\n"},
		{"To", "<" + strings.Repeat("é", 600) + ">", "To: <" + strings.Repeat("é", 496) + "\r\n " + strings.Repeat("é", 104) + ">\r\n"},
	}
	for _, tt := range tests {
		got := field(tt.name, tt.value)
		if got != tt.want {
			t.Errorf("field(%q, %q) =\n%q\nwant\n%q", tt.name, tt.value, got, tt.want)
		}
		checkLines(t, []byte(got))
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  a  b\t\tc  ", "a b c"},
		{"a\r\nb\rc\nd\x00e\x7ff", "a b c d e f"},
		{"a\u0085b\u2028c\u00a0d", "a b c d"},
		{"bad \xff utf-8", "bad \ufffd utf-8"},
		{"\r\n", ""},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzWrite(f *testing.F) {
	for _, s := range []string{
		"",
		testOriginal,
		"Subject: x\n\nbody\n",
		"Subject: x\rTo: y\r\rbody\r",
		" lead\nSubject: x\n",
		"Subject: Grüße\n\n\xff\x00\n",
		"X: " + strings.Repeat("a", 1200) + "\n\n" + strings.Repeat("b", 1200),
		"no header\r\n\r\n",
		"Subject: x\r\n\r\n--bounce.\r\n",
		"\r\r\n\n\r",
	} {
		f.Add([]byte(s), "User unknown", false, true)
		f.Add([]byte(s), "a\r\nBcc: x\r\n\r\n\xff"+strings.Repeat(" w", 600), true, false)
	}
	f.Fuzz(func(t *testing.T, original []byte, reply string, full, seek bool) {
		opts := testOptions()
		opts.Rand = nil // a boundary the input cannot guess
		opts.MaxFull = 4096
		if full {
			opts.Return = "FULL"
		}
		var r io.Reader = bytes.NewReader(original)
		if !seek {
			r = nonSeeker{r}
		}
		rcpt := test550()
		rcpt.Reply = reply
		var buf bytes.Buffer
		res, err := Write(&buf, r, []Recipient{rcpt}, opts)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		out := buf.Bytes()
		if res.Size != int64(len(out)) {
			t.Fatalf("Result.Size = %d, wrote %d", res.Size, len(out))
		}
		if res.EightBit != has8bit(out) || res.EightBit && !has8bit(original) {
			t.Fatalf("Result.EightBit = %v for an original with 8-bit bytes: %v", res.EightBit, has8bit(original))
		}
		b := parse(t, out) // CRLF only, lines <= 998, multipart/report in 3 parts
		groups := b.status(t)
		if len(groups) != 2 {
			t.Fatalf("delivery-status has %d groups, want 2:\n%s", len(groups), b.parts[1].body)
		}
		var names []string
		for f := groups[1].Fields(); f.Next(); {
			names = append(names, f.Key())
		}
		want := []string{"Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-Mta", "Diagnostic-Code", "Last-Attempt-Date"}
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("recipient fields = %q, want %q", names, want)
		}
		text := ascii(clean(reply))
		wantDiag := "smtp; 550"
		if text != "5.1.1" && !strings.HasPrefix(text, "5.1.1 ") {
			wantDiag += " 5.1.1"
		}
		if text != "" {
			wantDiag += " " + text
		}
		longest := 0
		for _, w := range strings.Fields(text) {
			longest = max(longest, len(w))
		}
		// A word too long for a line is cut, and unfolding adds a space.
		if got := groups[1].Get("Diagnostic-Code"); got != wantDiag && longest < 900 {
			t.Fatalf("Diagnostic-Code = %q, want %q", got, wantDiag)
		}
	})
}
