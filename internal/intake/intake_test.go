package intake

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"relaymail/internal/address"
	"relaymail/internal/sysexits"
)

// zeroReader is a Rand that makes Message-IDs predictable.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

var testNow = time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))

func testOptions() Options {
	return Options{
		Hostname: "host.example",
		Now:      func() time.Time { return testNow },
		Rand:     zeroReader{},
	}
}

const (
	addedID    = "20240102020405.aaaaaaaaaaaaaaaaaaaa@host.example"
	addedDate  = "Date: Tue, 02 Jan 2024 03:04:05 +0100\r\n"
	addedMsgID = "Message-ID: <" + addedID + ">\r\n"
	added      = addedDate + addedMsgID
)

func TestCopy(t *testing.T) {
	ignoreDots := func(o *Options) { o.IgnoreDots = true }
	extract := func(o *Options) { o.ExtractRecipients = true }
	from := func(v string) func(*Options) { return func(o *Options) { o.From = v } }
	maxHeader := func(n int) func(*Options) { return func(o *Options) { o.MaxHeaderBytes = n } }

	tests := []struct {
		name      string
		opts      []func(*Options)
		in        string
		want      string
		wantRcpts []string
		wantID    string // "" means addedID
		want8bit  bool
		wantCode  sysexits.Code // OK when no error is expected
		wantErr   string
	}{
		// Line endings.
		{
			name: "LF",
			in:   "Subject: hi\nTo: root\n\nline 1\nline 2\n",
			want: "Subject: hi\r\nTo: root\r\n" + added + "\r\nline 1\r\nline 2\r\n",
		},
		{
			name: "CRLF",
			in:   "Subject: hi\r\nTo: root\r\n\r\nline 1\r\nline 2\r\n",
			want: "Subject: hi\r\nTo: root\r\n" + added + "\r\nline 1\r\nline 2\r\n",
		},
		{
			name: "bare CR",
			in:   "Subject: hi\rTo: root\r\rline 1\rline 2\r",
			want: "Subject: hi\r\nTo: root\r\n" + added + "\r\nline 1\r\nline 2\r\n",
		},
		{
			name: "mixed",
			in:   "Subject: hi\r\nTo: root\n\rline 1\r\nline 2\nline 3\rline 4",
			want: "Subject: hi\r\nTo: root\r\n" + added + "\r\nline 1\r\nline 2\r\nline 3\r\nline 4\r\n",
		},
		{
			name: "CR CR LF is two line endings",
			in:   "\na\r\r\nb",
			want: added + "\r\na\r\n\r\nb\r\n",
		},
		{
			name: "smuggling sequence is neutralised",
			in:   "Subject: x\n\nbody\n\n.\r\nMAIL FROM:<evil@x>\r\n",
			opts: []func(*Options){ignoreDots},
			want: "Subject: x\r\n" + added + "\r\nbody\r\n\r\n.\r\nMAIL FROM:<evil@x>\r\n",
		},
		{
			name: "LF dot CR LF",
			in:   "Subject: x\n\nbody\n.\r\nafter\n",
			opts: []func(*Options){ignoreDots},
			want: "Subject: x\r\n" + added + "\r\nbody\r\n.\r\nafter\r\n",
		},

		// Dots.
		{name: "dot ends the input", in: "Subject: x\n\na\n.\nb\n", want: "Subject: x\r\n" + added + "\r\na\r\n"},
		{name: "dot CRLF ends the input", in: "Subject: x\r\n\r\na\r\n.\r\nb\r\n", want: "Subject: x\r\n" + added + "\r\na\r\n"},
		{name: "dot CR ends the input", in: "Subject: x\r\ra\r.\rb\r", want: "Subject: x\r\n" + added + "\r\na\r\n"},
		{name: "dot at EOF ends the input", in: "Subject: x\n\na\n.", want: "Subject: x\r\n" + added + "\r\na\r\n"},
		{name: "dot in header ends the input", in: "Subject: x\n.\nTo: y\n\nbody\n", want: "Subject: x\r\n" + added + "\r\n"},
		{name: "dot alone", in: ".\n", want: added + "\r\n"},
		{
			name: "IgnoreDots keeps the dot",
			opts: []func(*Options){ignoreDots},
			in:   "Subject: x\n\na\n.\nb\n",
			want: "Subject: x\r\n" + added + "\r\na\r\n.\r\nb\r\n",
		},
		{
			name: "IgnoreDots dot at EOF",
			opts: []func(*Options){ignoreDots},
			in:   "Subject: x\n\na\n.",
			want: "Subject: x\r\n" + added + "\r\na\r\n.\r\n",
		},
		{
			name: "IgnoreDots dot in header starts the body",
			opts: []func(*Options){ignoreDots},
			in:   "Subject: x\n.\nTo: y\n",
			want: "Subject: x\r\n" + added + "\r\n.\r\nTo: y\r\n",
		},
		{name: "double dot untouched", in: "Subject: x\n\n..x\n..\n", want: "Subject: x\r\n" + added + "\r\n..x\r\n..\r\n"},
		{name: "dot space is not the end", in: "Subject: x\n\n. \n.x\nend\n", want: "Subject: x\r\n" + added + "\r\n. \r\n.x\r\nend\r\n"},

		// Header shape.
		{name: "no header", in: "hi\n", want: added + "\r\nhi\r\n"},
		{name: "no header no newline", in: "hi", want: added + "\r\nhi\r\n"},
		{name: "empty input", in: "", want: added + "\r\n"},
		{name: "only an empty line", in: "\n", want: added + "\r\n"},
		{name: "header without body", in: "Subject: x\n", want: "Subject: x\r\n" + added + "\r\n"},
		{name: "header without newline", in: "Subject: x", want: "Subject: x\r\n" + added + "\r\n"},
		{
			name: "non-header line ends the header",
			in:   "Subject: x\nthis is the body\nTo: not a header\n",
			want: "Subject: x\r\n" + added + "\r\nthis is the body\r\nTo: not a header\r\n",
		},
		{
			name: "field name with a space is not a header",
			in:   "Subject: x\nBad Name: y\n",
			want: "Subject: x\r\n" + added + "\r\nBad Name: y\r\n",
		},
		{
			name: "utf-8 field name is not a header",
			in:   "Subject: x\nGrüße: y\n",
			want: "Subject: x\r\n" + added + "\r\nGrüße: y\r\n", want8bit: true,
		},
		{
			name: "space before colon is a header",
			in:   "Subject : x\n\nbody\n",
			want: "Subject : x\r\n" + added + "\r\nbody\r\n",
		},
		{
			name: "field name longer than a line is not a header",
			in:   "Subject: x\n" + strings.Repeat("N", 2000) + ": v\n",
			want: "Subject: x\r\n" + added + "\r\n" + strings.Repeat("N", 2000) + ": v\r\n",
		},
		{
			name: "leading continuation starts the body",
			in:   " indented\nSubject: x\n",
			want: added + "\r\n indented\r\nSubject: x\r\n",
		},
		{
			name: "colon first starts the body",
			in:   ":x\n",
			want: added + "\r\n:x\r\n",
		},
		{
			name: "mbox From line dropped",
			in:   "From root@host.example Tue Jan  2 03:04:05 2024\nSubject: x\n\nbody\n",
			want: "Subject: x\r\n" + added + "\r\nbody\r\n",
		},
		{
			name: "quoted mbox From line dropped",
			in:   ">From root@host.example Tue Jan  2 03:04:05 2024\nSubject: x\n\nbody\n",
			want: "Subject: x\r\n" + added + "\r\nbody\r\n",
		},
		{
			name: "only the first From line is dropped",
			in:   "From a\nFrom b\n",
			want: added + "\r\nFrom b\r\n",
		},
		{
			name: "From header is kept",
			in:   "From: root\n\nbody\n",
			want: "From: root\r\n" + added + "\r\nbody\r\n",
		},

		// Existing fields are kept byte for byte.
		{
			name: "complete header is byte-identical",
			opts: []func(*Options){from("should not be used")},
			in: "Received: from localhost\r\n\tby host.example; Tue, 2 Jan 2024 03:00:00 +0000\r\n" +
				"From:   \"Doe, John\"   <john@example.com>  \r\n" +
				"To: a@example.com,\r\n    b@example.com\r\n" +
				"subject:no space after colon\r\n" +
				"X-Folded: one\r\n two\r\n\tthree\r\n" +
				"DATE: Tue, 2 Jan 2024 03:00:00 +0000 (UTC)\r\n" +
				"message-id:  <abc.123@example.com> (comment)\r\n" +
				"X-Empty:\r\n" +
				"\r\nbody\r\n",
			want: "Received: from localhost\r\n\tby host.example; Tue, 2 Jan 2024 03:00:00 +0000\r\n" +
				"From:   \"Doe, John\"   <john@example.com>  \r\n" +
				"To: a@example.com,\r\n    b@example.com\r\n" +
				"subject:no space after colon\r\n" +
				"X-Folded: one\r\n two\r\n\tthree\r\n" +
				"DATE: Tue, 2 Jan 2024 03:00:00 +0000 (UTC)\r\n" +
				"message-id:  <abc.123@example.com> (comment)\r\n" +
				"X-Empty:\r\n" +
				"\r\nbody\r\n",
			wantID: "abc.123@example.com",
		},
		{
			name:   "only Date added",
			in:     "Message-ID: <x@y>\n\n",
			want:   "Message-ID: <x@y>\r\n" + addedDate + "\r\n",
			wantID: "x@y",
		},
		{
			name: "only Message-ID added",
			in:   "Date: Mon, 1 Jan 2024 00:00:00 +0000\n\n",
			want: "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + addedMsgID + "\r\n",
		},
		{
			name: "From added",
			opts: []func(*Options){from("root (Cron Daemon) <root@host.example>")},
			in:   "Subject: x\n\n",
			want: "Subject: x\r\n" + added + "From: root (Cron Daemon) <root@host.example>\r\n\r\n",
		},
		{
			name: "utf-8 From added is 8-bit",
			opts: []func(*Options){from("Jörg <joerg@host.example>")},
			in:   "Subject: x\n\n",
			want: "Subject: x\r\n" + added + "From: Jörg <joerg@host.example>\r\n\r\n", want8bit: true,
		},
		{
			name: "Resent headers add nothing Resent",
			opts: []func(*Options){from("root@host.example")},
			in:   "Resent-From: a@x.example\nResent-To: b@x.example\n\n",
			want: "Resent-From: a@x.example\r\nResent-To: b@x.example\r\n" + added + "From: root@host.example\r\n\r\n",
		},

		// Recipients and Bcc.
		{
			name:      "cron message with -t",
			opts:      []func(*Options){extract},
			in:        "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> /usr/local/bin/backup\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\nbackup done\n",
			want:      "From: root (Cron Daemon)\r\nTo: root\r\nSubject: Cron <root@host> /usr/local/bin/backup\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n" + added + "\r\nbackup done\r\n",
			wantRcpts: []string{"root"},
		},
		{
			name:      "unattended-upgrades -oi -t",
			opts:      []func(*Options){extract, ignoreDots},
			in:        "Subject: unattended-upgrades result for host: True\nFrom: root\nTo: root\nAuto-Submitted: auto-generated\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\nUnattended upgrade result: All upgrades installed\n.\n",
			want:      "Subject: unattended-upgrades result for host: True\r\nFrom: root\r\nTo: root\r\nAuto-Submitted: auto-generated\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n" + added + "\r\nUnattended upgrade result: All upgrades installed\r\n.\r\n",
			wantRcpts: []string{"root"},
		},
		{
			name:      "logwatch -t without -i stops at a lone dot",
			opts:      []func(*Options){extract},
			in:        "To: root\nFrom: Logwatch\nSubject: Logwatch for host (Linux)\n\n ### Logwatch 7.8 ###\n.\n ### lost ###\n",
			want:      "To: root\r\nFrom: Logwatch\r\nSubject: Logwatch for host (Linux)\r\n" + added + "\r\n ### Logwatch 7.8 ###\r\n",
			wantRcpts: []string{"root"},
		},
		{
			name:   "fail2ban printf message",
			in:     "Subject: [Fail2Ban] sshd: banned 192.0.2.7 from host\nDate: Tue, 02 Jan 2024 03:04:05 +0100\nFrom: Fail2Ban <fail2ban@host.example>\nTo: root@localhost\n\nHi,\n\nThe IP 192.0.2.7 has just been banned.\n",
			want:   "Subject: [Fail2Ban] sshd: banned 192.0.2.7 from host\r\nDate: Tue, 02 Jan 2024 03:04:05 +0100\r\nFrom: Fail2Ban <fail2ban@host.example>\r\nTo: root@localhost\r\n" + addedMsgID + "\r\nHi,\r\n\r\nThe IP 192.0.2.7 has just been banned.\r\n",
			wantID: addedID,
		},
		{
			name:      "PHP mail with CRLF header and -t -i",
			opts:      []func(*Options){extract, ignoreDots},
			in:        "To: John Doe <john@example.com>, jane@example.com\r\nSubject: Order 42\r\nFrom: shop@example.com\r\nCc: \"Sales, EU\" <sales@example.com>\r\nMIME-Version: 1.0\r\n\r\nThanks.\n.\n",
			want:      "To: John Doe <john@example.com>, jane@example.com\r\nSubject: Order 42\r\nFrom: shop@example.com\r\nCc: \"Sales, EU\" <sales@example.com>\r\nMIME-Version: 1.0\r\n" + added + "\r\nThanks.\r\n.\r\n",
			wantRcpts: []string{"john@example.com", "jane@example.com", "sales@example.com"},
		},
		{
			name:      "mailx keeps Bcc for us to strip",
			opts:      []func(*Options){extract, ignoreDots},
			in:        "To: ops@example.com\nBcc: audit@example.com\nSubject: disk full\n\n/ is 98% full\n",
			want:      "To: ops@example.com\r\nSubject: disk full\r\n" + added + "\r\n/ is 98% full\r\n",
			wantRcpts: []string{"ops@example.com", "audit@example.com"},
		},
		{
			name:      "folded multi-line Bcc stripped",
			opts:      []func(*Options){extract},
			in:        "Bcc: a@example.com,\n b@example.com,\n\tc@example.com\nSubject: s\nbcc : d@example.com\nBCC:e@example.com\n\nbody\n",
			want:      "Subject: s\r\n" + added + "\r\nbody\r\n",
			wantRcpts: []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"},
		},
		{
			name: "Bcc stripped without -t",
			in:   "To: a@example.com\nBcc: secret@example.com\n\n",
			want: "To: a@example.com\r\n" + added + "\r\n",
		},
		{
			name:      "folded To with groups and quoted commas",
			opts:      []func(*Options){extract},
			in:        "To: team: a@example.com,\n  \"Doe, John\" <john@example.com>;,\n\tundisclosed-recipients:;\nCc: root (Cron Daemon), =?utf-8?q?Doe,_Jane?= <jane@example.com>\n\n",
			want:      "To: team: a@example.com,\r\n  \"Doe, John\" <john@example.com>;,\r\n\tundisclosed-recipients:;\r\nCc: root (Cron Daemon), =?utf-8?q?Doe,_Jane?= <jane@example.com>\r\n" + added + "\r\n",
			wantRcpts: []string{"a@example.com", "john@example.com", "root", "jane@example.com"},
		},
		{
			name:      "recipients in header order",
			opts:      []func(*Options){extract},
			in:        "Cc: c@example.com\nTo: t@example.com\nBcc: b@example.com\nTo: t2@example.com\n\n",
			want:      "Cc: c@example.com\r\nTo: t@example.com\r\nTo: t2@example.com\r\n" + added + "\r\n",
			wantRcpts: []string{"c@example.com", "t@example.com", "b@example.com", "t2@example.com"},
		},
		{
			name:      "Resent fields take precedence",
			opts:      []func(*Options){extract},
			in:        "Resent-From: fwd@example.com\nResent-To: new@example.com\nResent-Cc: cc@example.com\nResent-Bcc: hidden@example.com\nTo: orig@example.com\nBcc: origbcc@example.com\n\n",
			want:      "Resent-From: fwd@example.com\r\nResent-To: new@example.com\r\nResent-Cc: cc@example.com\r\nTo: orig@example.com\r\n" + added + "\r\n",
			wantRcpts: []string{"new@example.com", "cc@example.com", "hidden@example.com"},
		},
		{
			name:      "any Resent field switches",
			opts:      []func(*Options){extract},
			in:        "resent-date: Tue, 2 Jan 2024 03:00:00 +0000\nTo: orig@example.com\n\n",
			want:      "resent-date: Tue, 2 Jan 2024 03:00:00 +0000\r\nTo: orig@example.com\r\n" + added + "\r\n",
			wantRcpts: nil,
		},
		{
			name: "no recipients without -t",
			in:   "To: a@example.com\n\n",
			want: "To: a@example.com\r\n" + added + "\r\n",
		},

		// 8-bit.
		{name: "8-bit header", in: "Subject: Grüße\n\nbody\n", want: "Subject: Grüße\r\n" + added + "\r\nbody\r\n", want8bit: true},
		{name: "8-bit body", in: "Subject: x\n\nGrüße\n", want: "Subject: x\r\n" + added + "\r\nGrüße\r\n", want8bit: true},
		{name: "8-bit only in stripped Bcc", in: "Bcc: jörg@example.de\n\n", want: added + "\r\n"},
		{name: "8-bit after the dot is not read", in: "Subject: x\n\n.\nGrüße\n", want: "Subject: x\r\n" + added + "\r\n"},
		{name: "NUL in body passes", in: "Subject: x\n\na\x00b\n", want: "Subject: x\r\n" + added + "\r\na\x00b\r\n"},

		// Errors.
		{
			name:     "header over the bound",
			opts:     []func(*Options){maxHeader(32)},
			in:       "Subject: 0123456789\nX-Long: 0123456789\n\nbody\n",
			wantCode: sysexits.DataErr, wantErr: "message header exceeds 32 bytes",
		},
		{
			name:     "continuation over the bound",
			opts:     []func(*Options){maxHeader(32)},
			in:       "Subject: x\n " + strings.Repeat("y", 100) + "\n\n",
			wantCode: sysexits.DataErr, wantErr: "message header exceeds 32 bytes",
		},
		{
			name: "header exactly at the bound",
			opts: []func(*Options){maxHeader(len("Subject: 0123456789\r\n"))},
			in:   "Subject: 0123456789\n\nbody\n",
			want: "Subject: 0123456789\r\n" + added + "\r\nbody\r\n",
		},
		{
			name: "body does not count toward the bound",
			opts: []func(*Options){maxHeader(32)},
			in:   "Subject: x\n\n" + strings.Repeat("z", 100) + "\n",
			want: "Subject: x\r\n" + added + "\r\n" + strings.Repeat("z", 100) + "\r\n",
		},
		{
			name: "long body line without header does not count",
			opts: []func(*Options){maxHeader(32)},
			in:   strings.Repeat("z", 5000),
			want: added + "\r\n" + strings.Repeat("z", 5000) + "\r\n",
		},
		{
			name:     "default bound",
			in:       "X-Big: " + strings.Repeat("b", DefaultMaxHeaderBytes) + "\n\n",
			wantCode: sysexits.DataErr, wantErr: "message header exceeds 1048576 bytes",
		},
		{
			name:     "NUL in header",
			in:       "Subject: a\x00b\n\n",
			wantCode: sysexits.DataErr, wantErr: `message header field "Subject" contains a NUL byte`,
		},
		{
			name:     "NUL in continuation",
			in:       "X-A: a\n \x00\n\n",
			wantCode: sysexits.DataErr, wantErr: `message header field "X-A" contains a NUL byte`,
		},
		{
			name:     "bad address in To with -t",
			opts:     []func(*Options){extract},
			in:       "To: \"Doe, John <john@example.com>\n\n",
			wantCode: sysexits.DataErr, wantErr: "bad address in To header: invalid address",
		},
		{
			name:     "bad address in Resent-Cc with -t",
			opts:     []func(*Options){extract},
			in:       "resent-cc: a@\n\n",
			wantCode: sysexits.DataErr, wantErr: "bad address in Resent-Cc header",
		},
		{
			name: "bad address in To without -t is not our business",
			in:   "To: \"Doe\n\n",
			want: "To: \"Doe\r\n" + added + "\r\n",
		},
		{
			name:     "From option with a line break",
			opts:     []func(*Options){from("root\r\nBcc: x@example.com")},
			in:       "Subject: x\n\n",
			wantCode: sysexits.DataErr, wantErr: "cannot add From header",
		},
		{
			name:     "bad hostname",
			opts:     []func(*Options){func(o *Options) { o.Hostname = "host\r\nX: y" }},
			in:       "Subject: x\n\n",
			wantCode: sysexits.Software, wantErr: "invalid hostname",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			for _, o := range tt.opts {
				o(&opts)
			}
			var out bytes.Buffer
			res, err := Copy(&out, strings.NewReader(tt.in), opts)
			if tt.wantCode != sysexits.OK {
				if err == nil || sysexits.CodeOf(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Copy(%.60q) error = %v (%v), want %v containing %q", tt.in, err, sysexits.CodeOf(err), tt.wantCode, tt.wantErr)
				}
				if out.Len() != 0 {
					t.Errorf("Copy(%.60q) wrote %q before failing, want nothing", tt.in, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("Copy(%.60q) error = %v", tt.in, err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("Copy(%q) wrote\n%q\nwant\n%q", tt.in, got, tt.want)
			}
			if !reflect.DeepEqual(res.Recipients, tt.wantRcpts) {
				t.Errorf("Copy(%.60q).Recipients = %q, want %q", tt.in, res.Recipients, tt.wantRcpts)
			}
			wantID := tt.wantID
			if wantID == "" {
				wantID = addedID
			}
			if res.MessageID != wantID {
				t.Errorf("Copy(%.60q).MessageID = %q, want %q", tt.in, res.MessageID, wantID)
			}
			if res.EightBit != tt.want8bit {
				t.Errorf("Copy(%.60q).EightBit = %v, want %v", tt.in, res.EightBit, tt.want8bit)
			}
			if res.Size != int64(out.Len()) {
				t.Errorf("Copy(%.60q).Size = %d, want %d", tt.in, res.Size, out.Len())
			}
		})
	}
}

// TestCopyDefaults checks the clock, random source and hostname defaults.
func TestCopyDefaults(t *testing.T) {
	var out bytes.Buffer
	res1, err := Copy(&out, strings.NewReader("hi\n"), Options{})
	if err != nil {
		t.Fatalf("Copy() error = %v", err)
	}
	if !strings.HasSuffix(res1.MessageID, "@localhost") || !strings.Contains(out.String(), "Message-ID: <"+res1.MessageID+">\r\n") {
		t.Errorf("Copy() MessageID = %q, output %q: want a generated id at localhost", res1.MessageID, out.String())
	}
	if !strings.HasPrefix(out.String(), "Date: ") {
		t.Errorf("Copy() output %q, want a Date first", out.String())
	}
	res2, err := Copy(io.Discard, strings.NewReader("hi\n"), Options{})
	if err != nil || res2.MessageID == res1.MessageID {
		t.Errorf("two Copy() calls gave MessageID %q and %q (%v), want different ids", res1.MessageID, res2.MessageID, err)
	}
}

type failReader struct{ after io.Reader }

func (r failReader) Read(p []byte) (int, error) {
	n, err := r.after.Read(p)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		n := w.n
		w.n = 0
		return n, errBroken
	}
	w.n -= len(p)
	return len(p), nil
}

var errBroken = errors.New("broken pipe")

func TestCopyIOErrors(t *testing.T) {
	tests := []struct {
		name     string
		w        io.Writer
		r        io.Reader
		opts     Options
		wantCode sysexits.Code
		wantErr  string
	}{
		{"read fails in header", io.Discard, failReader{strings.NewReader("Subject: x")}, testOptions(), sysexits.IOErr, "read message: broken pipe"},
		{"read fails in body", io.Discard, failReader{strings.NewReader("Subject: x\n\nbody")}, testOptions(), sysexits.IOErr, "read message: broken pipe"},
		{"read fails at start", io.Discard, failReader{strings.NewReader("")}, testOptions(), sysexits.IOErr, "read message: broken pipe"},
		{"write fails at flush", &failWriter{n: 10}, strings.NewReader("Subject: x\n\nbody\n"), testOptions(), sysexits.TempFail, "write message: broken pipe"},
		{"write fails in body", &failWriter{n: 100}, strings.NewReader("Subject: x\n\n" + strings.Repeat("body line\n", 100000)), testOptions(), sysexits.TempFail, "write message: broken pipe"},
		{"rand fails", io.Discard, strings.NewReader("hi"), Options{Rand: failReader{strings.NewReader("")}}, sysexits.OSErr, "generate message-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Copy(tt.w, tt.r, tt.opts)
			if sysexits.CodeOf(err) != tt.wantCode || !strings.Contains(fmt.Sprint(err), tt.wantErr) {
				t.Fatalf("Copy() error = %v (%v), want %v containing %q", err, sysexits.CodeOf(err), tt.wantCode, tt.wantErr)
			}
			if tt.wantCode != sysexits.OSErr && !errors.Is(err, errBroken) {
				t.Errorf("errors.Is(%v, errBroken) = false, want true", err)
			}
		})
	}
}

// lineSource produces size bytes of body made of numbered lines ending in
// ending (or one line with no ending when ending is ""), without holding
// them in memory.
type lineSource struct {
	size    int64
	ending  string
	line    []byte
	pending []byte
	n       int64
	i       int
}

func (s *lineSource) Read(p []byte) (int, error) {
	if s.size <= 0 {
		return 0, io.EOF
	}
	written := 0
	for written < len(p) && s.size > 0 {
		if len(s.pending) == 0 {
			s.i++
			if s.ending == "" {
				s.pending = append(s.line[:0], "0123456789abcdef"...)
			} else {
				b := append(s.line[:0], "line "...)
				b = strconv.AppendInt(b, int64(s.i), 10)
				b = append(b, ": the quick brown fox jumps over the lazy dog .."...)
				s.pending = append(b, s.ending...)
			}
			s.line = s.pending[:0]
		}
		n := copy(p[written:], s.pending)
		n = int(min(int64(n), s.size))
		s.pending = s.pending[n:]
		written += n
		s.size -= int64(n)
	}
	return written, nil
}

// TestCopyStreams pushes big bodies through Copy and checks the bytes by
// hash and that memory does not grow with the size of the message.
func TestCopyStreams(t *testing.T) {
	const header = "Subject: big\r\nTo: root\r\n"
	tests := []struct {
		name   string
		size   int64
		ending string
	}{
		{"5 MiB of LF lines", 5 << 20, "\n"},
		{"20 MiB of CRLF lines", 20 << 20, "\r\n"},
		{"20 MiB of CR lines", 20 << 20, "\r"},
		{"20 MiB in one line", 20 << 20, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := io.MultiReader(strings.NewReader("Subject: big\nTo: root\n\n"), &lineSource{size: tt.size, ending: tt.ending})

			// The expected output, built the same streaming way.
			want := sha256.New()
			io.WriteString(want, header+added+"\r\n")
			src := &lineSource{size: tt.size, ending: tt.ending}
			buf := make([]byte, 32<<10)
			var last byte
			for {
				n, err := src.Read(buf)
				chunk := buf[:n]
				if tt.ending == "\n" || tt.ending == "\r" {
					chunk = bytes.ReplaceAll(chunk, []byte(tt.ending), []byte("\r\n"))
				}
				want.Write(chunk)
				if n > 0 {
					last = buf[n-1]
				}
				if err == io.EOF {
					break
				}
			}
			if last != '\n' && last != '\r' {
				io.WriteString(want, "\r\n")
			}

			got := sha256.New()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res, err := Copy(got, in, testOptions())
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Copy() error = %v", err)
			}
			if g, w := fmt.Sprintf("%x", got.Sum(nil)), fmt.Sprintf("%x", want.Sum(nil)); g != w {
				t.Errorf("Copy() output sha256 = %s, want %s", g, w)
			}
			if res.Size < tt.size {
				t.Errorf("Copy().Size = %d, want at least %d", res.Size, tt.size)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d body bytes, %d bytes written, %d bytes allocated", tt.size, res.Size, alloc)
			if alloc > 4<<20 {
				t.Errorf("Copy() of a %d-byte body allocated %d bytes, want < 4 MiB", tt.size, alloc)
			}
		})
	}
}

// slowReader hands out one byte per Read, like a terminal or a pipe written
// to in small pieces, to exercise every buffer boundary.
type slowReader struct{ s string }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestCopyByteAtATime(t *testing.T) {
	in := "From x\nSubject: x\r\nBcc: a@x,\r\n b@y\rX: y\r\r\nbody\r\r\n..\r\n.\rafter\n"
	var fast, slow bytes.Buffer
	if _, err := Copy(&fast, strings.NewReader(in), testOptions()); err != nil {
		t.Fatalf("Copy(fast) error = %v", err)
	}
	if _, err := Copy(&slow, &slowReader{in}, testOptions()); err != nil {
		t.Fatalf("Copy(slow) error = %v", err)
	}
	want := "Subject: x\r\nX: y\r\n" + added + "\r\nbody\r\n\r\n..\r\n"
	if fast.String() != want || slow.String() != want {
		t.Errorf("Copy(%q) = %q (whole) and %q (byte at a time), want %q", in, fast.String(), slow.String(), want)
	}
}

// TestCopyDoesNotReadAhead checks that a line is handled as soon as it is
// complete: someone typing a message ends it with a dot and waits.
func TestCopyDoesNotReadAhead(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan string)
	go func() {
		var out bytes.Buffer
		Copy(&out, pr, testOptions())
		done <- out.String()
	}()
	// Each Write blocks until Copy has read it; the last one ends the message
	// without closing the pipe.
	for _, line := range []string{"S", "ubject: x\n", "\n", "hi\n", ".\n"} {
		if _, err := io.WriteString(pw, line); err != nil {
			t.Fatalf("write %q: %v", line, err)
		}
	}
	select {
	case got := <-done:
		if want := "Subject: x\r\n" + added + "\r\nhi\r\n"; got != want {
			t.Errorf("Copy() = %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Copy() did not return after the ending dot")
	}
	pw.Close()
}

// FuzzIntake checks that Copy never panics, only ever writes CRLF line
// endings, respects the header bound, never writes a Bcc field, reports
// its size and 8-bit content truthfully, returns only valid recipients, and
// is idempotent.
func FuzzIntake(f *testing.F) {
	for _, s := range []string{
		"",
		"hi\n",
		"Subject: x\n\nbody\n",
		"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n",
		"Subject: x\rTo: y\r\rbody\r\r\n.\r",
		"From root Tue Jan  2 03:04:05 2024\nTo: root\n\n..x\n",
		"To: team: a@x,\n \"Doe, John\" <j@x>;\nBcc: b@x,\n c@y\nResent-Bcc: d@z\n\n",
		"Resent-To: r@x\nTo: o@x\n\n",
		"bcc :x\n\n",
		" lead\nSubject: x\n",
		"Subject: Grüße\n\n\xff\x00\n",
		"X: " + strings.Repeat("a", 300) + "\n\n",
		"Date: x\nMessage-ID: <a@b>\n\n",
		"\r\r\n\n\r",
		".",
		"Subject: x\n.\n",
	} {
		f.Add(s, false, true)
		f.Add(s, true, false)
	}
	const limit = 256
	f.Fuzz(func(t *testing.T, in string, ignoreDots, extract bool) {
		opts := testOptions()
		opts.IgnoreDots = ignoreDots
		opts.ExtractRecipients = extract
		opts.MaxHeaderBytes = limit
		var buf bytes.Buffer
		res, err := Copy(&buf, strings.NewReader(in), opts)
		if err != nil {
			if code := sysexits.CodeOf(err); code != sysexits.DataErr {
				t.Fatalf("Copy(%q) error = %v (%v), want only DataErr", in, err, code)
			}
			if buf.Len() != 0 {
				t.Fatalf("Copy(%q) failed but wrote %q", in, buf.String())
			}
			return
		}
		out := buf.Bytes()
		for i, b := range out {
			if b == '\r' && (i+1 == len(out) || out[i+1] != '\n') {
				t.Fatalf("Copy(%q) = %q: bare CR at %d", in, out, i)
			}
			if b == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("Copy(%q) = %q: bare LF at %d", in, out, i)
			}
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("Copy(%q) = %q: does not end with CRLF", in, out)
		}
		end := bytes.Index(out, []byte("\r\n\r\n"))
		if bytes.HasPrefix(out, []byte("\r\n")) {
			end = -2
		}
		if end == -1 {
			t.Fatalf("Copy(%q) = %q: no empty line after the header", in, out)
		}
		header := out[:end+2]
		if len(header) > limit+len(added) {
			t.Fatalf("Copy(%q) header is %d bytes, want at most %d + %d added", in, len(header), limit, len(added))
		}
		for _, line := range strings.Split(string(header), "\r\n") {
			name, _, ok := strings.Cut(line, ":")
			name = strings.ToLower(strings.TrimRight(name, " \t"))
			if ok && (name == "bcc" || name == "resent-bcc") {
				t.Fatalf("Copy(%q) = %q: Bcc field left in", in, out)
			}
		}
		if res.Size != int64(len(out)) {
			t.Fatalf("Copy(%q).Size = %d, want %d", in, res.Size, len(out))
		}
		if want := bytes.ContainsFunc(out, func(r rune) bool { return r >= 0x80 }); res.EightBit != want {
			t.Fatalf("Copy(%q).EightBit = %v, want %v", in, res.EightBit, want)
		}
		if !extract && res.Recipients != nil {
			t.Fatalf("Copy(%q).Recipients = %q without ExtractRecipients", in, res.Recipients)
		}
		for _, r := range res.Recipients {
			if err := address.Check(r); err != nil {
				t.Fatalf("Copy(%q) recipient %q: %v", in, r, err)
			}
		}
		if res.MessageID == "" && !bytes.Contains(bytes.ToLower(header), []byte("message-id")) {
			t.Fatalf("Copy(%q).MessageID empty and no Message-ID field written", in)
		}

		// On the wire, dot-stuffed by a DATA writer (go-smtp's client uses
		// net/textproto's), no line is a lone dot before the end and no
		// SMTP smuggling sequence forms; a DATA reader gives the message
		// back (net/textproto's turns CRLF into LF).
		var wire bytes.Buffer
		bw := bufio.NewWriter(&wire)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write(out)
		dw.Close()
		bw.Flush()
		w := wire.Bytes()
		body := w[:len(w)-len(".\r\n")]
		if bytes.Contains(append([]byte("\r\n"), body...), []byte("\r\n.\r\n")) {
			t.Fatalf("Copy(%q) on the wire %q: a lone dot line before the end", in, w)
		}
		for _, seq := range []string{"\n.\n", "\r.\r", "\n.\r\n"} {
			if i := bytes.Index(w, []byte(seq)); i >= 0 && (seq != "\n.\r\n" || i+len(seq) != len(w)) {
				t.Fatalf("Copy(%q) on the wire %q: smuggling sequence %q at %d", in, w, seq, i)
			}
		}
		back, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(w))).DotReader())
		if err != nil || !bytes.Equal(back, bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))) {
			t.Fatalf("Copy(%q): a DATA reader gives back %q (%v), want %q", in, back, err, out)
		}

		// A completed message goes through unchanged, unless its first line
		// now looks like an mbox separator.
		if bytes.HasPrefix(out, []byte("From ")) || bytes.HasPrefix(out, []byte(">From ")) {
			return
		}
		// Recipients are not part of the output: the second pass would see
		// no Resent-Bcc that made the first one read Resent- fields.
		opts.MaxHeaderBytes = limit + len(added)
		opts.ExtractRecipients = false
		var again bytes.Buffer
		if _, err := Copy(&again, bytes.NewReader(out), opts); err != nil {
			t.Fatalf("Copy(Copy(%q)) error = %v", in, err)
		}
		if !bytes.Equal(again.Bytes(), out) {
			t.Fatalf("Copy(Copy(%q)) = %q, want %q", in, again.Bytes(), out)
		}
	})
}

// TestMaxBytes: a message over MaxBytes fails with DataErr and the limit
// in the message, having written no byte past it; one at the limit passes.
func TestMaxBytes(t *testing.T) {
	msg := "Subject: x\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\nFrom: a@x\r\n\r\n" + strings.Repeat("y", 200) + "\r\n"
	var out bytes.Buffer
	if _, err := Copy(&out, strings.NewReader(msg), Options{MaxBytes: int64(len(msg))}); err != nil || out.String() != msg {
		t.Fatalf("at the limit: %v, wrote %d of %d bytes", err, out.Len(), len(msg))
	}
	out.Reset()
	_, err := Copy(&out, strings.NewReader(msg), Options{MaxBytes: int64(len(msg)) - 1})
	var tl *TooLargeError
	if sysexits.CodeOf(err) != sysexits.DataErr || !errors.As(err, &tl) || !strings.Contains(err.Error(), fmt.Sprintf("larger than the limit of %d bytes", len(msg)-1)) {
		t.Fatalf("over the limit: %v (code %d)", err, sysexits.CodeOf(err))
	}
	if out.Len() >= len(msg) {
		t.Errorf("wrote %d bytes past a limit of %d", out.Len(), len(msg)-1)
	}
}

// TestRewriteFrom: the first From field gets the address RewriteFrom gives,
// with its display name (or a bare address's comment) kept, and the old
// value as Reply-To when asked and there is none.
func TestRewriteFrom(t *testing.T) {
	rewrite := func(addrs []string) (string, bool) {
		if len(addrs) != 1 {
			if slices.Contains(addrs, "boss@bank.example") || addrs == nil {
				return "app@example.com", true // forced: whatever the field holds
			}
			return "", false
		}
		switch addrs[0] {
		case "www-data@localhost", "root":
			return "web@example.com", false
		case "alice@gmail.com", "boss@bank.example":
			return "app@example.com", true
		}
		return "", false
	}
	tests := []struct{ name, in, wantHead string }{
		{"local with a name", "From: Shop <www-data@localhost>\nSubject: x\n\nb\n",
			"From: \"Shop\" <web@example.com>\r\nSubject: x\r\n"},
		{"bare with a comment", "From: root (Cron Daemon)\n\nb\n",
			"From: \"Cron Daemon\" <web@example.com>\r\n"},
		{"forced, with Reply-To", "Subject: y\nFrom: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= <alice@gmail.com>\n\nb\n",
			"Subject: y\r\nFrom: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <app@example.com>\r\nReply-To: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= <alice@gmail.com>\r\n"},
		{"forced, Reply-To already there", "Reply-To: list@example.org\nFrom: alice@gmail.com\n\nb\n",
			"Reply-To: list@example.org\r\nFrom: <app@example.com>\r\n"},
		{"left alone", "From: Bob <bob@example.org>\n\nb\n",
			"From: Bob <bob@example.org>\r\n"},
		{"two addresses left alone", "From: root, alice@gmail.com\n\nb\n",
			"From: root, alice@gmail.com\r\n"},
		{"forced over two addresses", "From: Boss <boss@bank.example>, x@y.example\n\nb\n",
			"From: <app@example.com>\r\nReply-To: Boss <boss@bank.example>, x@y.example\r\n"},
		{"forced over one that does not parse", "From: Boss <boss@bank.example> <\n\nb\n",
			"From: <app@example.com>\r\nReply-To: Boss <boss@bank.example> <\r\n"},
		{"a second From is dropped", "From: alice@gmail.com\nFrom: Boss <boss@bank.example>\nSubject: s\n\nb\n",
			"From: <app@example.com>\r\nReply-To: alice@gmail.com\r\nSubject: s\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.RewriteFrom = rewrite
			var buf bytes.Buffer
			if _, err := Copy(&buf, strings.NewReader(tt.in), opts); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(buf.String(), tt.wantHead) {
				t.Errorf("header:\n%s\nwant it to start with\n%s", buf.String(), tt.wantHead)
			}
			if n := strings.Count(strings.ToLower(buf.String()), "\nfrom:") + strings.Count(strings.ToLower(buf.String()[:5]), "from:"); n != 1 {
				t.Errorf("%d From fields:\n%s", n, buf.String())
			}
		})
	}
}

// TestQualifyDomain: bare names in the address fields get the domain,
// the rest of each field as it was; other fields are left alone.
func TestQualifyDomain(t *testing.T) {
	opts := testOptions()
	opts.QualifyDomain = "example.com"
	in := "From: root (Cron Daemon)\nTo: admin, \"Doe, John\" <john>,\n b@example.org\nCc: team: ops;\nSubject: root\nX-Owner: root\n\nbody\n"
	var buf bytes.Buffer
	if _, err := Copy(&buf, strings.NewReader(in), opts); err != nil {
		t.Fatal(err)
	}
	want := "From: root@example.com (Cron Daemon)\r\n" +
		"To: admin@example.com, \"Doe, John\" <john@example.com>, b@example.org\r\n" +
		"Cc: team: ops@example.com;\r\n" +
		"Subject: root\r\nX-Owner: root\r\n"
	if !strings.HasPrefix(buf.String(), want) {
		t.Errorf("header:\n%s\nwant it to start with\n%s", buf.String(), want)
	}
	long := "To: " + strings.Repeat("someone, ", 20) + "last, " + strings.Repeat("a", 64) + ",\n\nb\n"
	buf.Reset()
	if _, err := Copy(&buf, strings.NewReader(long), opts); err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(buf.String(), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if len(line) > 78 || strings.TrimSpace(line) == "" {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	if got, err := address.ParseList(strings.TrimPrefix(strings.ReplaceAll(strings.SplitN(head, "\r\nDate:", 2)[0], "\r\n", ""), "To:")); err != nil || len(got) != 22 || got[0] != "someone@example.com" {
		t.Errorf("folded To gives %q, %v", got, err)
	}
}
