package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relaymail/internal/smarthost"
)

// sendmail -bs, as Symfony Mailer (-bs) and Laravel (-bs -i) run it: a
// scripted client on stdin, every command pipelined in one write, replies
// read from stdout after the process exits.

// replies splits an SMTP server's output into replies, each its lines
// joined by "|"; wantReplies compares each reply's last line to a prefix.
func replies(out string) []string {
	var rs, cont []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(line) > 3 && line[3] == '-' {
			cont = append(cont, line)
			continue
		}
		rs = append(rs, strings.Join(append(cont, line), "|"))
		cont = nil
	}
	return rs
}

func wantReplies(t *testing.T, out string, want ...string) {
	t.Helper()
	got := replies(out)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		last := got[i][strings.LastIndexByte(got[i], '|')+1:]
		ok = strings.HasPrefix(last, want[i])
	}
	if !ok {
		t.Errorf("replies:\n\t%s\nwant (prefixes):\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

var queuedAs = regexp.MustCompile(`(?m)^250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})\r$`)

// delivered waits for n messages, then for the spool to empty and the
// background runners to finish, and checks that no message came twice.
func (s *setup) delivered(n int) []smarthost.Message {
	s.t.Helper()
	msgs, err := s.srv.WaitMessages(n, 20*time.Second)
	if err != nil {
		s.t.Fatalf("%d of %d messages arrived: %v", len(msgs), n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.spoolFiles()) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f := s.spoolFiles(); len(f) != 0 {
		s.t.Errorf("spool still holds %q", f)
	}
	waitRunners(filepath.Join(s.dir, "spool"))
	if msgs = s.srv.Messages(); len(msgs) != n {
		s.t.Errorf("%d messages arrived, want %d", len(msgs), n)
	}
	return msgs
}

// TestSMTPSession: one session, everything pipelined: a transaction
// dropped by RSET, one by DATA with a dot-stuffed line, an alias, a bare
// name (RFC 5321 4.5.1's postmaster, qualified) and a bad recipient, one by BDAT chunks with the null sender. Each message reaches
// the smarthost once, in the background after the session, with the exact
// envelope and bytes.
func TestSMTPSession(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	appendConfig(t, s.conf, "[aliases]\nroot = \"ops@example.net\"\n")
	first := "From: App <app@example.com>\r\nTo: a@example.net\r\nSubject: first\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@app>\r\n\r\n" +
		".dot-stuffed on the wire\r\n..two dots\r\n.\tdot and tab\r\nlast line\r\n"
	firstWire := strings.ReplaceAll(strings.ReplaceAll(first, "\r\n.", "\r\n.."), "Message-ID: <1@app>\r\n", "Message-ID: <1@app>\r\nBcc: hidden@example.net\r\n")
	chunk1 := "From: daemon@example.com\r\nTo: c@example.net\r\nSubject: second\r\nDate: Thu, 26 Nov 2026 10:00:01 +0000\r\nMessage-ID: <2@app>\r\n\r\n.a lone dot line follows\r\n"
	chunk2 := ".\r\nend\r\n"
	script := "EHLO app.example\r\n" +
		"MAIL FROM:<dropped@example.com>\r\nRCPT TO:<dropped@example.net>\r\nRSET\r\n" +
		"MAIL FROM:<app@example.com> BODY=8BITMIME\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<root@localhost>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<b@@example.net>\r\n" +
		"DATA\r\n" + firstWire + ".\r\n" +
		"MAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\n" +
		fmt.Sprintf("BDAT %d\r\n%sBDAT %d LAST\r\n%s", len(chunk1), chunk1, len(chunk2), chunk2) +
		"QUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs", "-i")
	wantCode(t, o, 0, "")
	if o.stderr != "" {
		t.Errorf("stderr = %q, want nothing", o.stderr)
	}
	wantReplies(t, o.stdout, "220 app01.example.com ESMTP", "250 ",
		"250 2.0.0", "250 2.0.0", "250 2.0.0 Session reset",
		"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0 I'll make sure <postmaster> gets this",
		`501 5.1.3 bad recipient "b@@example.net" in RCPT TO: `,
		"354 ", "250 2.0.0 Ok: queued as ",
		"250 2.0.0", "250 2.0.0", "250 2.0.0 Continue", "250 2.0.0 Ok: queued as ",
		"221 2.0.0")
	if ids := queuedAs.FindAllStringSubmatch(o.stdout, -1); len(ids) != 2 || ids[0][1] == ids[1][1] {
		t.Errorf("queue ids in the replies: %q", ids)
	}
	msgs := s.delivered(2)
	for _, m := range msgs {
		switch m.From {
		case "app@example.com":
			wantEnvelope(t, m, "app@example.com", "a@example.net", "ops@example.net", "postmaster@example.com")
			if string(m.Data) != first {
				t.Errorf("first message arrived as\n%q\nwant\n%q", m.Data, first)
			}
			if m.MailOpts.Body != "8BITMIME" {
				t.Errorf("first message: BODY=%q, want 8BITMIME", m.MailOpts.Body)
			}
		case "":
			wantEnvelope(t, m, "", "c@example.net")
			if want := chunk1 + chunk2; string(m.Data) != want {
				t.Errorf("second message arrived as\n%q\nwant\n%q", m.Data, want)
			}
		default:
			t.Errorf("unexpected message from <%s> to %q", m.From, m.Rcpts)
		}
	}
}

// TestSMTPSymfonyDialogue replays what Symfony Mailer's SendmailTransport
// says to "/usr/sbin/sendmail -bs", per its source (SmtpTransport): HELO,
// no ESMTP parameters, the data followed by "\r\n.\r\n", two messages
// through one transport, QUIT. Its pattern finds the queue id in each 250,
// and each message arrives once.
func TestSMTPSymfonyDialogue(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	msg := func(n int, to string) string {
		return fmt.Sprintf("Subject: order %d\r\nFrom: shop@example.com\r\nTo: %s\r\nBcc: audit@example.net\r\nMessage-ID: <%d@shop>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n..total: 42\r\n", n, to, n)
	}
	script := "HELO [127.0.0.1]\r\n" +
		"MAIL FROM:<shop@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<audit@example.net>\r\nDATA\r\n" + msg(1, "a@example.net") + "\r\n.\r\n" +
		"MAIL FROM:<shop@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<audit@example.net>\r\nDATA\r\n" + msg(2, "b@example.net") + "\r\n.\r\n" +
		"QUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs")
	wantCode(t, o, 0, "")
	wantReplies(t, o.stdout, "220 ", "250 2.0.0 Hello [127.0.0.1]",
		"250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ",
		"250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ", "221 ")
	// Symfony's SmtpTransport::parseMessageId, without its possessive
	// quantifiers.
	symfonyID := regexp.MustCompile(`(?im)^250 (?:\S+ )?Ok:? (?:queued as |id=)?(?P<id>[A-Z0-9._-]+)`)
	ids := symfonyID.FindAllStringSubmatch(o.stdout, -1)
	if len(ids) != 2 || ids[0][1] == ids[1][1] || len(ids[0][1]) != 16 {
		t.Errorf("Symfony's pattern finds %q in the replies", ids)
	}
	for _, m := range s.delivered(2) {
		to := m.Rcpts[0]
		n := map[string]int{"a@example.net": 1, "b@example.net": 2}[to]
		wantEnvelope(t, m, "shop@example.com", to, "audit@example.net")
		want := strings.Replace(msg(n, to), "Bcc: audit@example.net\r\n", "", 1)
		want = strings.Replace(want, "..total", ".total", 1) + "\r\n"
		if string(m.Data) != want {
			t.Errorf("message to %s arrived as\n%q\nwant\n%q", to, m.Data, want)
		}
	}
}

// TestSMTPQueueOnly: with -odq the session only queues; mailq shows the
// message under the id of the 250 reply, and a queue run delivers it with
// the headers relaymail completes.
func TestSMTPQueueOnly(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	script := "EHLO app.example\r\nMAIL FROM:<shop@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\nSubject: no date, no id\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs", "-odq")
	wantCode(t, o, 0, "")
	m := queuedAs.FindStringSubmatch(o.stdout)
	if m == nil {
		t.Fatalf("no queue id in %q", o.stdout)
	}
	if l := s.run("", "-bp"); !strings.Contains(l.stdout, m[1]) || !strings.Contains(l.stdout, "shop@example.com") {
		t.Errorf("mailq does not list %s from shop@example.com:\n%s", m[1], l.stdout)
	}
	if len(s.srv.Sessions()) != 0 {
		t.Errorf("-bs -odq connected to the smarthost")
	}
	wantCode(t, s.run("", "-q"), 0, "")
	got := s.delivered(1)[0]
	wantEnvelope(t, got, "shop@example.com", "a@example.net")
	if !strings.HasSuffix(header(got.Data, "From"), "<shop@example.com>") || header(got.Data, "Message-ID") == "" || header(got.Data, "Date") == "" {
		t.Errorf("headers not completed:\n%s", got.Data)
	}
}

// TestSMTPRefusals: wrong commands and addresses get the exact replies, the
// session goes on, and only the good message is delivered.
func TestSMTPRefusals(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	script := "MAIL FROM:<a@example.com>\r\n" + // before EHLO
		"EHLO app.example\r\n" +
		"XYZW\r\n" +
		"RCPT TO:<b@example.net>\r\n" + // before MAIL
		"MAIL FROM:<a@@example.com>\r\n" +
		"MAIL FROM:<a@example.com> SIZE=999999999\r\n" +
		"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\n" +
		"MAIL FROM:<a@example.com>\r\n" +
		"DATA\r\n" + // no recipient yet
		"RCPT TO:<root@>\r\n" + // no domain after the @
		"RCPT TO:<b\rc@example.net>\r\n" +
		"RCPT TO:<jörg@example.net>\r\n" + // no SMTPUTF8
		"RCPT TO:<b@example.net>\r\n" +
		"AUTH PLAIN AGEAYg==\r\n" +
		"STARTTLS\r\n" +
		"DATA\r\nSubject: ok\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs")
	wantCode(t, o, 0, "")
	wantReplies(t, o.stdout, "220 ",
		"502 5.5.1 Please introduce yourself first.",
		"250 ",
		"500 5.5.2 Syntax errors, XYZW command unrecognized",
		"502 5.5.1 Missing MAIL FROM command.",
		`501 5.1.7 bad sender "a@@example.com": `,
		"552 5.3.4 Max message size exceeded",
		"504 5.5.4 BINARYMIME is not implemented",
		"250 2.0.0",
		"502 5.5.1 Missing RCPT TO command.",
		"501 5.5.2 Was expecting RCPT arg syntax of TO:<address>",
		"501 5.1.3 bad recipient address: contains a control character",
		"553 5.6.7 non-ASCII recipient address needs MAIL FROM with SMTPUTF8",
		"250 2.0.0",
		"504 5.7.4 Unsupported authentication mechanism",
		"502 5.5.1 TLS not supported",
		"354 ", "250 2.0.0 Ok: queued as ",
		"221 ")
	wantEnvelope(t, s.delivered(1)[0], "a@example.com", "b@example.net")
}

// TestSMTPInputEnds: a client that goes away in the middle of a message
// leaves nothing queued and nothing delivered, while the message it
// finished before is delivered once. The exit code says it: 74.
func TestSMTPInputEnds(t *testing.T) {
	done := "EHLO app.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<done@example.net>\r\nDATA\r\nSubject: done\r\n\r\nok\r\n.\r\n"
	next := "MAIL FROM:<a@example.com>\r\nRCPT TO:<cut@example.net>\r\n"
	tests := []struct {
		name   string
		script string
	}{
		{"in DATA", next + "DATA\r\nSubject: cut\r\n\r\nhalf a li"},
		{"in a BDAT chunk", next + "BDAT 1000 LAST\r\nSubject: cut\r\n\r\nhalf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, smarthost.Options{}, "", "")
			o := runBinary(t, strings.NewReader(done+tt.script), "-C", s.conf, "-bs")
			wantCode(t, o, 74, "the client went away in the middle of a message: that message was not queued")
			if n := strings.Count(o.stdout, "queued as"); n != 1 {
				t.Errorf("%d messages queued, want 1:\n%s", n, o.stdout)
			}
			wantEnvelope(t, s.delivered(1)[0], "a@example.com", "done@example.net")
		})
	}
	t.Run("nothing else queued", func(t *testing.T) {
		s := newSetup(t, smarthost.Options{}, "", "")
		o := runBinary(t, strings.NewReader("EHLO app.example\r\n"+tests[0].script), "-C", s.conf, "-bs")
		wantCode(t, o, 74, "went away")
		if f := s.spoolFiles(); len(f) != 0 {
			t.Errorf("spool holds %q", f)
		}
		if len(s.srv.Sessions()) != 0 {
			t.Errorf("the smarthost was contacted")
		}
	})
}

// TestSMTPSpoolFull: a message the spool cannot hold gets 451 4.3.0 and
// leaves nothing behind; the session goes on.
func TestSMTPSpoolFull(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	spoolDir := filepath.Join(s.mountTmpfs("small", "size=64k"), "spool")
	s.setQueueDir(spoolDir)
	head := "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
	script := "EHLO app.example\r\n" + head + "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 2<<10) + ".\r\n" +
		head + "Subject: small\r\n\r\nfits\r\n.\r\nQUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs", "-odq")
	wantCode(t, o, 0, "")
	wantReplies(t, o.stdout, "220 ", "250 ", "250 ", "250 ", "354 ", "451 4.3.0 write message: write spool ",
		"250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ", "221 ")
	if !strings.Contains(o.stdout, "no space left on device\r\n") {
		t.Errorf("the 451 reply does not say why:\n%s", o.stdout)
	}
	entries, _ := os.ReadDir(spoolDir)
	var files []string
	for _, e := range entries {
		if !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	if len(files) != 2 {
		t.Errorf("spool holds %q, want the small message's .env and .msg", files)
	}
}

// TestSMTPLargeMessage streams 50 MB, with dot-stuffed lines, through one
// session and then a message over the 64 MiB limit: the first arrives with
// the same SHA-256, the second is refused with 552 after its data, and
// memory does not grow with either.
func TestSMTPLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("115 MB of input: skipped in -short mode")
	}
	s := newSetup(t, smarthost.Options{HashOnly: true}, "", "")
	head := "From: big@example.com\r\nTo: b@example.net\r\nSubject: big\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big@x>\r\n\r\n"
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-\r\n"
	dotLine := ".starts with a dot, so the client doubles it on the wire.........\r\n"
	h := sha256.New()
	pr, pipeW := io.Pipe()
	go func() {
		// One write per line would cost a system call per line.
		pw := bufio.NewWriterSize(pipeW, 64<<10)
		defer pipeW.Close()
		defer pw.Flush()
		body := func(size int, hash io.Writer) {
			for n, i := 0, 0; n < size; i++ {
				l := line
				if i%100 == 0 {
					l = dotLine
				}
				io.WriteString(hash, l)
				if l[0] == '.' {
					io.WriteString(pw, ".")
				}
				io.WriteString(pw, l)
				n += len(l)
			}
		}
		io.WriteString(pw, "EHLO app.example\r\nMAIL FROM:<big@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
		io.WriteString(pw, head)
		h.Write([]byte(head))
		body(50<<20, h)
		io.WriteString(pw, ".\r\nMAIL FROM:<big@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"+head)
		body(65<<20, io.Discard)
		io.WriteString(pw, ".\r\nQUIT\r\n")
	}()
	o := runBinary(t, pr, "-C", s.conf, "-bs")
	wantCode(t, o, 0, "")
	wantReplies(t, o.stdout, "220 ", "250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ",
		"250 ", "250 ", "354 ", "552 5.3.4 Maximum message size exceeded", "221 ")
	m := s.delivered(1)[0]
	var want [32]byte
	copy(want[:], h.Sum(nil))
	if m.SHA256 != want {
		t.Errorf("message of %d bytes arrived with a different hash", m.Size)
	}
	if strings.Join(m.Rcpts, " ") != "b@example.net" {
		t.Errorf("RCPT TO = %q", m.Rcpts)
	}
	t.Logf("-bs with 50 MB and 65 MiB messages: peak RSS of sendmail %d KiB", o.maxRSS)
	if o.maxRSS == 0 {
		t.Errorf("could not read the peak memory of sendmail from /proc")
	} else if o.maxRSS > 64<<10 {
		t.Errorf("peak RSS %d KiB, want under 64 MiB: the message is held in memory", o.maxRSS)
	}
}

// TestSMTPClientStopsReading: a client that closes its end of stdout (it
// will not read the replies) must not kill sendmail with SIGPIPE before
// the messages it sent are queued and handed to background delivery.
func TestSMTPClientStopsReading(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := exec.Command(binary, "-C", s.conf, "-bs")
	cmd.Stdin = strings.NewReader("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: unread\r\n\r\nhi\r\n.\r\nQUIT\r\n")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	err = cmd.Run()
	if err != nil {
		t.Errorf("sendmail: %v; stderr %q", err, stderr.String())
	}
	wantEnvelope(t, s.delivered(1)[0], "a@example.com", "b@example.net")
}

// TestSMTPWithoutSpool: with [queue] dir = "" there is nowhere to keep a
// message, so each is relayed before its reply, which carries the
// smarthost's verdict: 250 when it took every recipient, 550 when it
// refused one (the others got it, and the reply says so), 451 when it
// deferred one. The session goes on after a failed message.
func TestSMTPWithoutSpool(t *testing.T) {
	s := newSetup(t, smarthost.Options{Faults: []smarthost.Fault{
		{Stage: smarthost.Rcpt, Match: "nobody@example.net", Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "user unknown"},
		{Stage: smarthost.Rcpt, Match: "later@example.net", Code: 451, Enhanced: [3]int{4, 2, 0}, Text: "greylisted"},
	}}, "", "")
	s.setQueueDir("")
	msg := func(n int) string {
		return fmt.Sprintf("From: app@example.com\r\nTo: a@example.net\r\nSubject: %d\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@app>\r\n\r\n..dot %d\r\n", n, n, n)
	}
	script := "EHLO app.example\r\n" +
		"MAIL FROM:<app@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + msg(1) + ".\r\n" +
		"MAIL FROM:<app@example.com>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<nobody@example.net>\r\nDATA\r\n" + msg(2) + ".\r\n" +
		"MAIL FROM:<app@example.com>\r\nRCPT TO:<later@example.net>\r\nDATA\r\n" + msg(3) + ".\r\n" +
		"QUIT\r\n"
	o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs")
	wantCode(t, o, 0, "")
	wantReplies(t, o.stdout, "220 ", "250 ",
		"250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: sent as 1@app",
		"250 ", "250 ", "250 ", "354 ", "550 5.1.1 1 of 2 recipients refused, 1 delivered; 127.0.0.1:",
		"250 ", "250 ", "354 ", "451 4.4.0 1 of 1 recipients not confirmed, 0 delivered; 127.0.0.1:",
		"221 ")
	for _, want := range []string{"refused <nobody@example.net>: 550 5.1.1 user unknown", "deferred <later@example.net>: 451 4.2.0 greylisted"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("replies do not say %q:\n%s", want, o.stdout)
		}
	}
	// Relayed before the replies: everything has arrived by now.
	msgs := s.srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages arrived, want 2", len(msgs))
	}
	wantEnvelope(t, msgs[0], "app@example.com", "a@example.net", "b@example.net")
	wantEnvelope(t, msgs[1], "app@example.com", "a@example.net")
	for i, m := range msgs {
		if want := strings.ReplaceAll(msg(i+1), "..dot", ".dot"); string(m.Data) != want {
			t.Errorf("message %d arrived as\n%q\nwant\n%q", i+1, m.Data, want)
		}
	}
}

// TestSMTPNotifyPerRecipient: each RCPT's DSN NOTIFY reaches the relay
// with its own recipient, queued or relayed at once without a spool.
func TestSMTPNotifyPerRecipient(t *testing.T) {
	for _, spool := range []bool{true, false} {
		t.Run(fmt.Sprintf("spool=%v", spool), func(t *testing.T) {
			s := newSetup(t, smarthost.Options{DSN: true}, "", "")
			if !spool {
				s.setQueueDir("")
			}
			script := "EHLO c\r\nMAIL FROM:<app@example.com>\r\n" +
				"RCPT TO:<a@example.net> NOTIFY=NEVER\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net> NOTIFY=SUCCESS,FAILURE\r\n" +
				"DATA\r\nSubject: n\r\n\r\nbody\r\n.\r\nQUIT\r\n"
			o := runBinary(t, strings.NewReader(script), "-C", s.conf, "-bs")
			wantCode(t, o, 0, "")
			m := s.delivered(1)[0]
			wantEnvelope(t, m, "app@example.com", "a@example.net", "b@example.net", "c@example.net")
			want := [][]smtp.DSNNotify{{smtp.DSNNotifyNever}, nil, {smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}}
			for i, w := range want {
				if got := m.RcptOpts[i].Notify; !slices.Equal(got, w) {
					t.Errorf("%s: NOTIFY %v, want %v", m.Rcpts[i], got, w)
				}
			}
		})
	}
}
