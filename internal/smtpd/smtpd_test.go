package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

// store is what the callbacks of a test session saw and committed.
type store struct {
	mu        sync.Mutex
	committed []committed
	failWith  error // Commit reads the data, then returns this error
}

type committed struct {
	ID   string
	Env  Envelope
	Data string
}

// options are the callbacks of a test: senders and recipients are checked
// as relaymail's main does in spirit (a bad address is a usage error, a
// broken alias a config error), and Commit keeps the message in memory.
func (st *store) options() Options {
	return Options{
		Hostname: "app01.example.com",
		Sender: func(addr string) (string, error) {
			if strings.Contains(addr, "@@") {
				return "", sysexits.Errorf(sysexits.Usage, "bad sender %q", addr)
			}
			return addr, nil
		},
		Recipient: func(addr string) ([]string, error) {
			switch {
			case strings.Contains(addr, "@@"):
				return nil, sysexits.Errorf(sysexits.Usage, "bad recipient %q in RCPT TO: invalid address", addr)
			case addr == "loop@localhost":
				return nil, sysexits.Errorf(sysexits.Config, "sendmail.conf: [aliases] loop: alias loop")
			case addr == "root@localhost":
				return []string{"ops@example.net", "dev@example.net"}, nil
			}
			return []string{addr}, nil
		},
		Commit: func(env Envelope, data io.Reader) (string, error) {
			b, err := io.ReadAll(data)
			if err != nil {
				return "", sysexits.Errorf(sysexits.IOErr, "read message: %w", err)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.failWith != nil {
				return "", st.failWith
			}
			id := fmt.Sprintf("ID%d", len(st.committed)+1)
			st.committed = append(st.committed, committed{ID: id, Env: env, Data: string(b)})
			return id, nil
		},
	}
}

// serveScript runs Serve on a script written in one piece (every command
// pipelined) through an io.Pipe, then closed, and returns the replies'
// lines and Serve's results.
func serveScript(t *testing.T, opts Options, input ...string) (replies []string, ids []string, err error) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		// Each write of an io.Pipe reaches one read, so the parts are
		// the client's separate writes.
		for _, part := range input {
			io.WriteString(pw, part)
		}
		pw.Close()
	}()
	var out bytes.Buffer
	ids, err = Serve(pr, &out, opts)
	pr.Close()
	return replyLines(out.String()), ids, err
}

// replyLines returns each reply as its last line, with the earlier lines
// of a multi-line reply joined in front by "|".
func replyLines(s string) []string {
	var out []string
	var cont []string
	for _, line := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		if len(line) > 3 && line[3] == '-' {
			cont = append(cont, line)
			continue
		}
		out = append(out, strings.Join(append(cont, line), "|"))
		cont = nil
	}
	return out
}

// wantReplies checks that each reply starts with the matching prefix.
func wantReplies(t *testing.T, got []string, want ...string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(lastLine(got[i]), want[i])
	}
	if !ok {
		t.Errorf("replies:\n\t%s\nwant (prefixes):\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func lastLine(r string) string {
	if i := strings.LastIndexByte(r, '|'); i >= 0 {
		return r[i+1:]
	}
	return r
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

const greeting = "220 app01.example.com ESMTP"

func TestOneMessage(t *testing.T) {
	var st store
	script := crlf(`EHLO client.example
MAIL FROM:<app@example.com> BODY=8BITMIME SIZE=120
RCPT TO:<a@example.net>
DATA
Subject: hi

..leading dot stuffed
.
QUIT
`)
	replies, ids, err := serveScript(t, st.options(), script)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	wantReplies(t, replies, greeting, "250 ", "250 2.0.0", "250 2.0.0", "354 ", "250 2.0.0 Ok: queued as ID1", "221 2.0.0")
	if !reflect.DeepEqual(ids, []string{"ID1"}) {
		t.Errorf("ids = %q, want [ID1]", ids)
	}
	want := committed{ID: "ID1", Env: Envelope{From: "app@example.com", Rcpts: []Rcpt{{Addr: "a@example.net"}}, Body: "8BITMIME", Size: 120},
		Data: "Subject: hi\r\n\r\n.leading dot stuffed\r\n"}
	if len(st.committed) != 1 || !reflect.DeepEqual(st.committed[0], want) {
		t.Errorf("committed %+v, want %+v", st.committed, want)
	}
}

func TestEHLO(t *testing.T) {
	var st store
	replies, _, _ := serveScript(t, st.options(), "EHLO c\r\nHELO c\r\nQUIT\r\n")
	wantReplies(t, replies, greeting, "250 ", "250 2.0.0 Hello c", "221 ")
	if len(replies) < 2 {
		return
	}
	caps := map[string]bool{}
	for _, l := range strings.Split(replies[1], "|")[1:] {
		caps[l[4:]] = true
	}
	for _, c := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "DSN", "SIZE 67108864", "LIMITS RCPTMAX=1000"} {
		if !caps[c] {
			t.Errorf("EHLO reply %q lacks %s", replies[1], c)
		}
	}
	for c := range caps {
		if strings.HasPrefix(c, "AUTH") || c == "STARTTLS" || c == "BINARYMIME" {
			t.Errorf("EHLO offers %s", c)
		}
	}
}

func TestTransactions(t *testing.T) {
	var st store
	script := crlf(`EHLO c
MAIL FROM:<a@example.com>
RCPT TO:<x@example.net>
RSET
MAIL FROM:<b@example.com> RET=HDRS ENVID=env+2B1
RCPT TO:<y@example.net> NOTIFY=SUCCESS,FAILURE
RCPT TO:<root@localhost>
RCPT TO:<y@EXAMPLE.NET>
RCPT TO:<ops@EXAMPLE.net>
DATA
first
.
NOOP
MAIL FROM:<>
RCPT TO:<z@example.net>
`) + "BDAT 8\r\nsecond\r\nBDAT 8\r\n chunk\r\nBDAT 0 LAST\r\nQUIT\r\n"
	replies, ids, err := serveScript(t, st.options(), script)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	wantReplies(t, replies, greeting, "250 ",
		"250 ", "250 ", "250 2.0.0 Session reset",
		"250 ", "250 ", "250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ID1",
		"250 2.0.0", // NOOP
		"250 ", "250 ", "250 2.0.0 Continue", "250 2.0.0 Continue", "250 2.0.0 Ok: queued as ID2",
		"221 ")
	if !reflect.DeepEqual(ids, []string{"ID1", "ID2"}) {
		t.Errorf("ids = %q", ids)
	}
	want := []committed{
		{ID: "ID1", Env: Envelope{From: "b@example.com", Return: "HDRS", EnvID: "env+1",
			Rcpts: []Rcpt{{Addr: "y@example.net", Notify: []string{"SUCCESS", "FAILURE"}}, {Addr: "ops@example.net"}, {Addr: "dev@example.net"}}},
			Data: "first\r\n"},
		{ID: "ID2", Env: Envelope{From: "", Rcpts: []Rcpt{{Addr: "z@example.net"}}}, Data: "second\r\n chunk\r\n"},
	}
	if !reflect.DeepEqual(st.committed, want) {
		t.Errorf("committed:\n%+v\nwant:\n%+v", st.committed, want)
	}
}

// TestRefusals checks the exact reply to each wrong command or address,
// and that the session goes on after each.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(*Options)
		script  string
		replies []string // after the greeting
	}{
		{
			name:    "unknown command",
			script:  "EHLO c\r\nXYZW\r\nFOO bar\r\n",
			replies: []string{"250 ", "500 5.5.2 Syntax errors, XYZW command unrecognized", "501 5.5.2 Bad command"},
		},
		{
			name:    "MAIL before EHLO",
			script:  "MAIL FROM:<a@example.com>\r\n",
			replies: []string{"502 5.5.1 Please introduce yourself first."},
		},
		{
			name:    "RCPT before MAIL",
			script:  "EHLO c\r\nRCPT TO:<a@example.net>\r\n",
			replies: []string{"250 ", "502 5.5.1 Missing MAIL FROM command."},
		},
		{
			name:    "DATA without RCPT",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nDATA\r\n",
			replies: []string{"250 ", "250 ", "502 5.5.1 Missing RCPT TO command."},
		},
		{
			name:    "MAIL without brackets or address",
			script:  "EHLO c\r\nMAIL FROM:\r\nMAIL TO:<a@example.com>\r\n",
			replies: []string{"250 ", "501 5.5.2", "501 5.5.2"},
		},
		{
			name:    "empty domain",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<root@>\r\n",
			replies: []string{"250 ", "250 ", "501 5.5.2 Was expecting RCPT arg syntax of TO:<address>"},
		},
		{
			name:    "bad recipient",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@@example.net>\r\nRCPT TO:<b@example.net>\r\n",
			replies: []string{"250 ", "250 ", `501 5.1.3 bad recipient "b@@example.net" in RCPT TO: invalid address`, "250 "},
		},
		{
			name:    "bad sender",
			script:  "EHLO c\r\nMAIL FROM:<a@@example.com>\r\nMAIL FROM:<a@example.com>\r\n",
			replies: []string{"250 ", `501 5.1.7 bad sender "a@@example.com"`, "250 "},
		},
		{
			name:    "CR and NUL in addresses",
			script:  "EHLO c\r\nMAIL FROM:<a\rb@example.com>\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b\x00@example.net>\r\n",
			replies: []string{"250 ", "501 5.1.7 bad sender address: contains a control character", "250 ", "501 5.1.3 bad recipient address: contains a control character"},
		},
		{
			name:    "non-ASCII address without SMTPUTF8",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<jörg@example.net>\r\nRSET\r\nMAIL FROM:<a@example.com> SMTPUTF8\r\nRCPT TO:<jörg@example.net>\r\n",
			replies: []string{"250 ", "250 ", "553 5.6.7 non-ASCII recipient address needs MAIL FROM with SMTPUTF8", "250 ", "250 ", "250 "},
		},
		{
			name:    "alias error is temporary",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<loop@localhost>\r\n",
			replies: []string{"250 ", "250 ", "451 4.3.0 sendmail.conf: [aliases] loop: alias loop"},
		},
		{
			name:    "BINARYMIME and unknown parameters",
			script:  "EHLO c\r\nMAIL FROM:<a@example.com> BODY=BINARYMIME\r\nMAIL FROM:<a@example.com> FOO=1\r\n",
			replies: []string{"250 ", "504 5.5.4 BINARYMIME is not implemented", "500 5.5.4 Unknown MAIL FROM argument"},
		},
		{
			name:    "no AUTH, no STARTTLS",
			script:  "EHLO c\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\nSTARTTLS\r\n",
			replies: []string{"250 ", "504 5.7.4 Unsupported authentication mechanism", "502 5.5.1 TLS not supported"},
		},
		{
			name:    "SIZE over the limit",
			opts:    func(o *Options) { o.MaxMessageBytes = 1000 },
			script:  "EHLO c\r\nMAIL FROM:<a@example.com> SIZE=1001\r\nMAIL FROM:<a@example.com> SIZE=1000\r\n",
			replies: []string{"250 ", "552 5.3.4 Max message size exceeded", "250 "},
		},
		{
			name:    "too many recipients",
			opts:    func(o *Options) { o.MaxRecipients = 2 },
			script:  "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n",
			replies: []string{"250 ", "250 ", "250 ", "250 ", "452 4.5.3 Maximum limit of 2 recipients reached"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st store
			opts := st.options()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			replies, ids, err := serveScript(t, opts, tt.script+"QUIT\r\n")
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			wantReplies(t, replies, append(append([]string{greeting}, tt.replies...), "221 ")...)
			if len(ids) != 0 || len(st.committed) != 0 {
				t.Errorf("committed %v", st.committed)
			}
		})
	}
}

// TestCommitErrors checks the reply to a message that cannot be committed
// and that the session goes on.
func TestCommitErrors(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(*Options)
		fail  error
		data  string
		reply string
	}{
		{name: "spool failure", fail: sysexits.Errorf(sysexits.TempFail, "write spool: no space left on device"),
			data: "x\r\n", reply: "451 4.3.0 write spool: no space left on device"},
		{name: "error without a code", fail: errors.New("something odd"), data: "x\r\n", reply: "451 4.3.0 something odd"},
		{name: "bad content", fail: sysexits.Errorf(sysexits.DataErr, "message header exceeds 1048576 bytes"),
			data: "x\r\n", reply: "554 5.6.0 message header exceeds 1048576 bytes"},
		{name: "message over the limit", opts: func(o *Options) { o.MaxMessageBytes = 100 },
			data: strings.Repeat("0123456789\r\n", 20), reply: "552 5.3.4 Maximum message size exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := store{failWith: tt.fail}
			opts := st.options()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			script := "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + tt.data + ".\r\nNOOP\r\nQUIT\r\n"
			replies, ids, err := serveScript(t, opts, script)
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			wantReplies(t, replies, greeting, "250 ", "250 ", "250 ", "354 ", tt.reply, "250 2.0.0", "221 ")
			if len(ids) != 0 || len(st.committed) != 0 {
				t.Errorf("committed %v", st.committed)
			}
		})
	}
}

// TestLongLine: a line over the limit ends the session, in the data or
// not. go-smtp drops the whole read that holds it, earlier commands
// included.
func TestLongLine(t *testing.T) {
	head := "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
	long := strings.Repeat("x", 150) + "\r\n.\r\nQUIT\r\n"
	tests := []struct {
		name    string
		parts   []string
		replies []string
	}{
		{name: "in the data", parts: []string{head, long},
			replies: []string{greeting, "250 ", "250 ", "250 ", "354 ", "554 5.6.0 message has a line longer than 100 bytes", "500 5.4.0 Too long line, closing connection"}},
		{name: "a command", parts: []string{"EHLO c\r\n", "MAIL FROM:<" + strings.Repeat("a", 150) + "@example.com>\r\nQUIT\r\n"},
			replies: []string{greeting, "250 ", "500 5.4.0 Too long line, closing connection"}},
		// The bare-name filter hands go-smtp the data apart from the
		// commands before it, so they are answered.
		{name: "in the data, pipelined with the commands", parts: []string{head + long},
			replies: []string{greeting, "250 ", "250 ", "250 ", "354 ", "554 5.6.0 message has a line longer than 100 bytes", "500 5.4.0 Too long line, closing connection"}},
		{name: "a command, pipelined with others", parts: []string{"EHLO c\r\nMAIL FROM:<" + strings.Repeat("a", 150) + "@example.com>\r\nQUIT\r\n"},
			replies: []string{greeting, "500 5.4.0 Too long line, closing connection"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st store
			opts := st.options()
			opts.MaxLineLength = 100
			replies, ids, err := serveScript(t, opts, tt.parts...)
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			wantReplies(t, replies, tt.replies...)
			if len(ids) != 0 || len(st.committed) != 0 {
				t.Errorf("committed %v", st.committed)
			}
		})
	}
}

// TestInputEnds: input that ends in the middle of a message commits
// nothing, DATA or BDAT, and Serve says so; input that ends between
// commands is a normal end.
func TestInputEnds(t *testing.T) {
	head := "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
	tests := []struct {
		name    string
		script  string
		wantErr string
		ids     []string
	}{
		{name: "in DATA", script: head + "DATA\r\nSubject: cut\r\n\r\nhalf a bo", wantErr: "went away in the middle of a message"},
		{name: "after DATA's last line", script: head + "DATA\r\nSubject: cut\r\n\r\nbody\r\n", wantErr: "went away in the middle of a message"},
		{name: "in a BDAT LAST chunk", script: head + "BDAT 100 LAST\r\nSubject: cut\r\n", wantErr: "went away in the middle of a message"},
		{name: "between BDAT chunks", script: head + "BDAT 5\r\nhello", wantErr: "went away in the middle of a message"},
		{name: "after an empty BDAT chunk", script: head + "BDAT 0\r\n", wantErr: "went away in the middle of a message"},
		{name: "after RCPT", script: head, wantErr: "went away in the middle of a message"},
		{name: "between transactions", script: head + "DATA\r\nx\r\n.\r\n", ids: []string{"ID1"}},
		{name: "after a BDAT LAST chunk", script: head + "BDAT 3 LAST\r\nx\r\n", ids: []string{"ID1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st store
			_, ids, err := serveScript(t, st.options(), tt.script)
			if !reflect.DeepEqual(ids, tt.ids) || len(st.committed) != len(tt.ids) {
				t.Errorf("ids = %q, committed %+v; want %q", ids, st.committed, tt.ids)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Serve: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Serve error = %v, want %q", err, tt.wantErr)
			case tt.wantErr != "" && sysexits.CodeOf(err) != sysexits.IOErr:
				t.Errorf("Serve error code = %v, want EX_IOERR", sysexits.CodeOf(err))
			}
		})
	}
}

// TestBDATInterrupted: a BDAT transaction cut short by RSET or by a chunk
// over the size limit commits nothing, and the next one works.
func TestBDATInterrupted(t *testing.T) {
	head := "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 5\r\nhello"
	next := "MAIL FROM:<a@example.com>\r\nRCPT TO:<c@example.net>\r\nBDAT 4 LAST\r\nbye\n" + "QUIT\r\n"
	tests := []struct {
		name   string
		middle string
		reply  string
	}{
		{name: "RSET", middle: "RSET\r\n", reply: "250 2.0.0 Session reset"},
		{name: "chunk over the limit", middle: "BDAT 200 LAST\r\n" + strings.Repeat("x", 200), reply: "552 5.3.4 Max message size exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st store
			opts := st.options()
			opts.MaxMessageBytes = 100
			replies, ids, err := serveScript(t, opts, head+tt.middle+next)
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
			wantReplies(t, replies, greeting, "250 ", "250 ", "250 ", "250 2.0.0 Continue", tt.reply,
				"250 ", "250 ", "250 2.0.0 Ok: queued as ID1", "221 ")
			if len(st.committed) != 1 || st.committed[0].Data != "bye\n" || st.committed[0].Env.Rcpts[0].Addr != "c@example.net" {
				t.Errorf("committed %+v", st.committed)
			}
			if !reflect.DeepEqual(ids, []string{"ID1"}) {
				t.Errorf("ids = %q", ids)
			}
		})
	}
}

// TestTimeout: a client that stays silent gets 421 and the session ends.
func TestTimeout(t *testing.T) {
	var st store
	opts := st.options()
	opts.Timeout = 200 * time.Millisecond
	pr, pw := io.Pipe()
	defer pw.Close()
	outR, outW := io.Pipe()
	type result struct {
		ids []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		ids, err := Serve(pr, outW, opts)
		outW.Close()
		done <- result{ids, err}
	}()
	br := bufio.NewReader(outR)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, greeting) {
		t.Fatalf("greeting %q", l)
	}
	io.WriteString(pw, "EHLO c\r\n")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	l, _ := br.ReadString('\n')
	if l != "421 4.4.2 Idle timeout, bye bye\r\n" {
		t.Errorf("after silence: %q, want 421 4.4.2", l)
	}
	select {
	case r := <-done:
		if sysexits.CodeOf(r.err) != sysexits.TempFail || !strings.Contains(r.err.Error(), "no input from the client") {
			t.Errorf("Serve error = %v (%v), want EX_TEMPFAIL", r.err, sysexits.CodeOf(r.err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the timeout")
	}
}

// TestInteractive drives a session line by line, as PHP does: each reply
// arrives before the next command is written.
func TestInteractive(t *testing.T) {
	var st store
	pr, pw := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan []string, 1)
	go func() {
		ids, _ := Serve(pr, outW, st.options())
		outW.Close()
		done <- ids
	}()
	br := bufio.NewReader(outR)
	read := func() string {
		t.Helper()
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read reply: %v", err)
			}
			if len(l) < 4 || l[3] != '-' {
				last = strings.TrimRight(l, "\r\n")
				break
			}
		}
		return last
	}
	steps := []struct{ send, want string }{
		{"", greeting},
		{"EHLO c\r\n", "250 "},
		{"MAIL FROM:<a@example.com>\r\n", "250 "},
		{"RCPT TO:<b@example.net>\r\n", "250 "},
		{"DATA\r\n", "354 "},
		{"Subject: x\r\n\r\nbody\r\n.\r\n", "250 2.0.0 Ok: queued as ID1"},
		{"QUIT\r\n", "221 "},
	}
	for _, s := range steps {
		if s.send != "" {
			io.WriteString(pw, s.send)
		}
		if got := read(); !strings.HasPrefix(got, s.want) {
			t.Fatalf("after %q: %q, want %q", s.send, got, s.want)
		}
	}
	pw.Close()
	if ids := <-done; !reflect.DeepEqual(ids, []string{"ID1"}) {
		t.Errorf("ids = %q", ids)
	}
}

// TestBareNames: a bare name in MAIL FROM or RCPT TO reaches the callbacks
// as the client wrote it (RFC 5321 4.5.1's postmaster, cron's root), and
// the replies name it so; message data is never rewritten, whatever it
// holds, and the filter follows DATA refused, 354 and the end of data as
// go-smtp does.
func TestBareNames(t *testing.T) {
	var saw []string
	st := &store{}
	opts := st.options()
	sender, rcpt := opts.Sender, opts.Recipient
	opts.Sender = func(a string) (string, error) { saw = append(saw, "from "+a); return sender(a) }
	opts.Recipient = func(a string) ([]string, error) { saw = append(saw, "to "+a); return rcpt(a) }
	// The data holds command lines with bare names, a "." line after a
	// bare LF and after CR CR LF (neither ends the data for go-smtp), and
	// the bare domain itself.
	data := "Subject: x\r\n\r\nRCPT TO:<root>\r\nnot the end\n.\r\nMAIL FROM:<daemon>\r\nx\r\r\n.\r\nRCPT TO:<a@bare-0.invalid>\r\n..stuffed\r\n"
	tests := []struct {
		name  string
		parts []string // the client's writes
	}{
		{"pipelined", []string{"EHLO c\r\nMAIL FROM:<daemon>\r\nDATA\r\nRCPT TO:<root>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n" + data + ".\r\nRCPT TO:<x>\r\nQUIT\r\n"}},
		{"byte by byte", strings.Split("EHLO c\r\nMAIL FROM:<daemon>\r\nDATA\r\nRCPT TO:<root>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n"+data+".\r\nRCPT TO:<x>\r\nQUIT\r\n", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saw, st.committed = nil, nil
			replies, ids, err := serveScript(t, opts, tt.parts...)
			if err != nil {
				t.Fatal(err)
			}
			wantReplies(t, replies, "220 ", "250 ",
				"250 2.0.0 Roger, accepting mail from <daemon>",
				"502 5.5.1 Missing RCPT TO command.",
				"250 2.0.0 I'll make sure <root> gets this",
				"250 2.0.0 I'll make sure <Postmaster> gets this",
				"354 ", "250 2.0.0 Ok: queued as ID1",
				"502 5.5.1 Missing MAIL FROM command.",
				"221 ")
			if want := []string{"from daemon", "to root", "to Postmaster"}; !reflect.DeepEqual(saw, want) {
				t.Errorf("callbacks saw %q, want %q", saw, want)
			}
			if len(ids) != 1 || len(st.committed) != 1 {
				t.Fatalf("committed %d messages (ids %q), want 1", len(st.committed), ids)
			}
			if want := strings.Replace(data, "..stuffed", ".stuffed", 1); st.committed[0].Data != want {
				t.Errorf("data = %q, want %q", st.committed[0].Data, want)
			}
		})
	}
}

// failWriter is a client that does not read its replies: every write
// fails, as a write to a pipe whose reader is gone does.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestBareNamesRepliesLost: go-smtp's replies never reach the client (it
// stopped reading), yet the data is stored byte for byte: the filter
// learns that data follows from the session, not from the replies.
func TestBareNamesRepliesLost(t *testing.T) {
	st := &store{}
	data := "Subject: unread\r\n\r\nRCPT TO:<root>\r\nMAIL FROM:<daemon>\r\n"
	ids, _ := Serve(strings.NewReader("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"+data+".\r\nQUIT\r\n"), failWriter{}, st.options())
	if len(ids) != 1 || len(st.committed) != 1 {
		t.Fatalf("committed %d messages, want 1", len(st.committed))
	}
	if got := st.committed[0].Data; got != data {
		t.Errorf("data = %q, want %q", got, data)
	}
}

// TestAfterQuit: commands the client pipelined after QUIT are not acted
// on: the client has seen 221, nothing is committed.
func TestAfterQuit(t *testing.T) {
	st := &store{}
	replies, ids, err := serveScript(t, st.options(),
		"EHLO c\r\nQUIT\r\nEHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: t\r\n\r\nRCPT TO:<root>\r\n.\r\n")
	if err != nil {
		t.Fatal(err)
	}
	wantReplies(t, replies, "220 ", "250 ", "221 ")
	if len(ids) != 0 || len(st.committed) != 0 {
		t.Errorf("committed %v after QUIT", st.committed)
	}
}

// TestTimeoutThenBDAT: after an idle timeout in the middle of a DATA,
// go-smtp gives the data up; the filter stops rewriting, so a BDAT chunk
// sent next arrives as it was, however much it looks like commands.
func TestTimeoutThenBDAT(t *testing.T) {
	st := &store{}
	opts := st.options()
	opts.Timeout = 200 * time.Millisecond
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		Serve(pr, &out, opts)
		pr.Close()
		close(done)
	}()
	io.WriteString(pw, "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: x\r\n")
	time.Sleep(3 * opts.Timeout) // the Commit's read, then go-smtp's drain, time out
	chunk := "a\r\n.\r\nRCPT TO:<root>\r\nb\r\n"
	io.WriteString(pw, fmt.Sprintf("MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.net>\r\nBDAT %d LAST\r\n%s", len(chunk), chunk))
	pw.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	for _, c := range st.committed {
		if c.Data != chunk {
			t.Errorf("committed %q, want the chunk as sent, %q", c.Data, chunk)
		}
	}
}

// TestBareNameLimits: a bare-name line that the marker would push over the
// line limit goes to go-smtp as it is (and gets its 501), the commands
// before it are answered; an address a client writes under a .invalid
// domain of its own reaches the callback untouched.
func TestBareNameLimits(t *testing.T) {
	st := &store{}
	opts := st.options()
	var saw []string
	rcpt := opts.Recipient
	opts.Recipient = func(a string) ([]string, error) { saw = append(saw, a); return rcpt(a) }
	long := "RCPT TO:<" + strings.Repeat("r", DefaultMaxLineLength-20) + ">\r\n"
	replies, _, err := serveScript(t, opts, "EHLO c\r\nMAIL FROM:<a@example.com>\r\n"+long+
		"RCPT TO:<victim@bare-0123456789abcdef.invalid>\r\nQUIT\r\n")
	if err != nil {
		t.Fatal(err)
	}
	wantReplies(t, replies, "220 ", "250 ", "250 ", "501 5.5.2", "250 ", "221 ")
	if want := []string{"victim@bare-0123456789abcdef.invalid"}; !reflect.DeepEqual(saw, want) {
		t.Errorf("Recipient saw %q, want %q", saw, want)
	}
}
