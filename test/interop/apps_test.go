//go:build interop

package interop

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"relaymail/internal/smarthost"
)

// The application mail libraries each build the same message twice, as a
// web application does: From Shop <shop@example.com>, To Alice and Bob, Cc
// Carol, Bcc Dave, a UTF-8 subject (with " 1" or " 2" appended), a UTF-8
// text part holding a lone dot and a line starting with two dots, and the
// attachment report.bin. The scripts read these from the environment
// (SUBJECT, TEXT, ATTACH) so that no quoting rules of four languages get
// in the way.
const (
	appSubject = "Order #42 — Grüße aus Köln"
	appText    = "Hello Alice,\n\nyour order ships today. Grüße — ünïcödé\n.\n..two dots\nlast line\n"
	appFrom    = "shop@example.com"
)

var appRcpts = []string{"alice@example.net", "bob@example.net", "carol@example.net", "dave@example.net"}

// appAttachment is report.bin: every byte value, and the sequences that
// end an SMTP message or a line, so that a broken encoding shows.
func appAttachment() []byte {
	var b []byte
	for i := 0; i < 3000; i++ {
		b = append(b, byte(i*7+i/256))
		if i%500 == 0 {
			b = append(b, "\r\n.\r\n\n.\n\r\x00"...)
		}
	}
	return b
}

// appNamespace runs a library's script with sbinWrapper's /usr/sbin, so
// the library finds the wrapper where its default names sendmail.
// Arguments: a private directory, the wrapper, then the interpreter and
// its arguments.
const appNamespace = `set -eu
W=$1 WRAP=$2
shift 2
` + sbinWrapper + `exec "$@"
`

// Symfony Mailer 5.4 (php-symfony-mailer): Transport::fromDsn(DSN), one
// Mailer sending both messages, as an application's mailer service does.
const symfonyScript = `<?php
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport;
use Symfony\Component\Mime\Address;
use Symfony\Component\Mime\Email;

$mailer = new Mailer(Transport::fromDsn(getenv('DSN')));
for ($n = 1; $n <= 2; $n++) {
    $email = (new Email())
        ->from(new Address('shop@example.com', 'Shop'))
        ->to(new Address('alice@example.net', 'Alice Example'), 'bob@example.net')
        ->cc('carol@example.net')
        ->bcc('dave@example.net')
        ->subject(getenv('SUBJECT') . " $n")
        ->text(getenv('TEXT'))
        ->attachFromPath(getenv('ATTACH'), 'report.bin', 'application/octet-stream');
    $mailer->send($email);
    echo "sent $n\n";
}
`

// PHPMailer 6.6 (libphp-phpmailer) with isSendmail() and setFrom's
// default, which also sets the envelope sender (Sender), or with
// NO_SENDER set without it. send() throws when sendmail exits non-zero.
const phpmailerScript = `<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\PHPMailer\PHPMailer;

for ($n = 1; $n <= 2; $n++) {
    $m = new PHPMailer(true);
    $m->isSendmail();
    $m->CharSet = PHPMailer::CHARSET_UTF8;
    $m->setFrom('shop@example.com', 'Shop', getenv('NO_SENDER') === false);
    $m->addAddress('alice@example.net', 'Alice Example');
    $m->addAddress('bob@example.net');
    $m->addCC('carol@example.net');
    $m->addBCC('dave@example.net');
    $m->Subject = getenv('SUBJECT') . " $n";
    $m->Body = getenv('TEXT');
    $m->addAttachment(getenv('ATTACH'), 'report.bin', PHPMailer::ENCODING_BASE64, 'application/octet-stream');
    $m->send();
    echo "sent $n\n";
}
`

// Ruby's mail gem 2.7 (ruby-mail) with delivery_method :sendmail. Note
// that 2.7 ignores sendmail's exit status (2.8 raises on it).
const rubyScript = `require 'mail'

(1..2).each do |n|
  m = Mail.new
  m.from = 'Shop <shop@example.com>'
  m.to = 'Alice Example <alice@example.net>, bob@example.net'
  m.cc = 'carol@example.net'
  m.bcc = 'dave@example.net'
  m.charset = 'UTF-8'
  m.subject = "#{ENV['SUBJECT']} #{n}"
  text = Mail::Part.new
  text.content_type = 'text/plain; charset=UTF-8'
  text.body = ENV['TEXT']
  m.text_part = text
  m.add_file(filename: 'report.bin', content: File.binread(ENV['ATTACH']), mime_type: 'application/octet-stream')
  m.delivery_method :sendmail
  m.deliver!
  puts "sent #{n}"
end
`

// Perl's Email::Sender::Simple (libemail-sender-perl) with an Email::MIME
// message. Its Sendmail transport takes the envelope from the To and Cc
// fields only: Bcc recipients must be passed as "to" (ENVELOPE_TO here),
// as its manual says. sendmail() dies when sendmail fails.
const perlScript = `use strict;
use warnings;
use Encode qw(decode);
use Email::MIME;
use Email::Sender::Simple qw(sendmail);

open(my $fh, '<:raw', $ENV{ATTACH}) or die "$ENV{ATTACH}: $!";
my $attach = do { local $/; <$fh> };
for my $n (1, 2) {
    my $email = Email::MIME->create(
        header_str => [
            From    => 'Shop <shop@example.com>',
            To      => 'Alice Example <alice@example.net>, bob@example.net',
            Cc      => 'carol@example.net',
            Bcc     => 'dave@example.net',
            Subject => decode('UTF-8', $ENV{SUBJECT}) . " $n",
        ],
        parts => [
            Email::MIME->create(
                attributes => {content_type => 'text/plain', charset => 'UTF-8', encoding => 'quoted-printable'},
                body_str   => decode('UTF-8', $ENV{TEXT}),
            ),
            Email::MIME->create(
                attributes => {content_type => 'application/octet-stream', name => 'report.bin',
                    filename => 'report.bin', disposition => 'attachment', encoding => 'base64'},
                body => $attach,
            ),
        ],
    );
    my @to = split ' ', ($ENV{ENVELOPE_TO} // '');
    sendmail($email, @to ? {to => \@to} : {});
    print "sent $n\n";
}
`

// Nodemailer (npm) with its sendmail transport, which runs "sendmail"
// from PATH and rejects the promise when sendmail exits non-zero.
const nodeScript = `const fs = require('fs');
const nodemailer = require('nodemailer');

async function main() {
  const transport = nodemailer.createTransport({ sendmail: true });
  for (const n of [1, 2]) {
    const info = await transport.sendMail({
      from: '"Shop" <shop@example.com>',
      to: '"Alice Example" <alice@example.net>, bob@example.net',
      cc: 'carol@example.net',
      bcc: 'dave@example.net',
      subject: process.env.SUBJECT + ' ' + n,
      text: process.env.TEXT,
      attachments: [{ filename: 'report.bin', content: fs.readFileSync(process.env.ATTACH), contentType: 'application/octet-stream' }],
    });
    console.log('sent ' + n + ' ' + info.messageId);
  }
}
main().catch((err) => { console.error(err); process.exit(1); });
`

// TestApps sends through the application mail libraries, each with its
// default path /usr/sbin/sendmail (or sendmail from PATH) and its own way
// of calling it, recorded here as the wrapper saw it (Debian 12's
// packages, Nodemailer from npm):
//
//	Symfony Mailer 5.4, default sendmail://default:
//	    <sendmail> -bs                 one SMTP session, both messages
//	Laravel's sendmail mailer (its config's default path):
//	    <sendmail> -bs -i
//	Symfony with ?command=/usr/sbin/sendmail -t -i (recipients known, so it
//	drops -t):
//	    <sendmail> -i -fshop@example.com -- alice@... bob@... carol@... dave@...
//	PHPMailer 6.6 isSendmail() (php.ini's sendmail_path "-t -i" plus its own):
//	    <sendmail> -t -i -oi -fshop@example.com -t     Bcc in the header
//	    <sendmail> -t -i -oi -t                        setFrom(..., false)
//	Ruby mail 2.7:
//	    <sendmail> -i -f shop@example.com -- alice@... bob@... carol@... dave@...
//	Perl Email::Sender::Simple (envelope from To and Cc unless told):
//	    <sendmail> -i -f shop@example.com -- alice@... bob@... carol@...
//	Nodemailer:
//	    <sendmail> -i -f shop@example.com alice@... bob@... carol@... dave@...
//	                                   Bcc left in the header for sendmail
//
// Each test checks the envelope, that the header arrives as the library
// wrote it less Bcc, the body byte for byte, and the MIME structure
// parsed by go-message: decoded subject, text and the attachment's bytes.
func TestApps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, client, script string
		env                  []string
		args                 []string // sendmail's arguments, for every call
		calls                int      // sendmail runs for the two messages
		from                 string   // the envelope sender, if not appFrom
		rcpts                []string // the envelope, sorted
	}{
		{name: "symfony-bs", client: "symfony-mailer", script: symfonyScript,
			env: []string{"DSN=sendmail://default"}, args: []string{"-bs"}, calls: 1, rcpts: appRcpts},
		{name: "laravel-bs-i", client: "symfony-mailer", script: symfonyScript,
			env: []string{"DSN=sendmail://default?command=/usr/sbin/sendmail%20-bs%20-i"}, args: []string{"-bs", "-i"}, calls: 1, rcpts: appRcpts},
		{name: "symfony-t-i", client: "symfony-mailer", script: symfonyScript,
			env:  []string{"DSN=sendmail://default?command=/usr/sbin/sendmail%20-t%20-i"},
			args: append([]string{"-i", "-f" + appFrom, "--"}, appRcpts...), calls: 2, rcpts: appRcpts},
		{name: "phpmailer", client: "phpmailer", script: phpmailerScript,
			args: []string{"-t", "-i", "-oi", "-f" + appFrom, "-t"}, calls: 2, rcpts: appRcpts},
		{name: "phpmailer-no-sender", client: "phpmailer", script: phpmailerScript, env: []string{"NO_SENDER=1"},
			args: []string{"-t", "-i", "-oi", "-t"}, calls: 2, from: "nobody@example.com", rcpts: appRcpts},
		{name: "ruby-mail", client: "ruby-mail", script: rubyScript,
			args: append([]string{"-i", "-f", appFrom, "--"}, appRcpts...), calls: 2, rcpts: appRcpts},
		{name: "email-sender", client: "email-sender", script: perlScript,
			args: append([]string{"-i", "-f", appFrom, "--"}, appRcpts[:3]...), calls: 2, rcpts: appRcpts[:3]},
		{name: "email-sender-envelope", client: "email-sender", script: perlScript,
			env:  []string{"ENVELOPE_TO=" + strings.Join(appRcpts, " ")},
			args: append([]string{"-i", "-f", appFrom, "--"}, appRcpts...), calls: 2, rcpts: appRcpts},
		{name: "nodemailer", client: "nodemailer", script: nodeScript,
			args: append([]string{"-i", "-f", appFrom}, appRcpts...), calls: 2, rcpts: appRcpts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := needClient(t, tt.client)
			// The config's from is the envelope sender when the library
			// gives none.
			h := newHarness(t, smarthost.Options{}, "nobody@example.com", "")
			from := cmp.Or(tt.from, appFrom)
			out := h.runApp(c, tt.script, tt.env)
			for _, n := range []string{"1", "2"} {
				if !strings.Contains(out, "sent "+n) {
					t.Errorf("%s did not report message %s as sent; it printed:\n%s", tt.client, n, out)
				}
			}
			msgs, err := h.srv.WaitMessages(2, 20*time.Second)
			if err != nil {
				t.Fatalf("the two messages did not arrive: %v", err)
			}
			if len(msgs) != 2 {
				t.Fatalf("%d messages arrived, want 2", len(msgs))
			}

			// What the library handed over: each call's stdin, or the
			// DATA of each transaction of an SMTP session.
			var handed []call
			calls := h.recordedCalls()
			if len(calls) != tt.calls {
				t.Errorf("sendmail was called %d times, want %d", len(calls), tt.calls)
			}
			for _, cl := range calls {
				h.logCall(cl)
				wantArgs(t, cl, tt.args...)
				if !slices.Contains(tt.args, "-bs") {
					handed = append(handed, cl)
					continue
				}
				cmds, datas := smtpSession(t, cl.stdin)
				t.Logf("SMTP commands: %q", cmds)
				for _, d := range datas {
					handed = append(handed, call{argv: cl.argv, stdin: d, at: cl.at})
				}
			}
			if len(handed) != 2 {
				t.Fatalf("the library handed over %d messages, want 2", len(handed))
			}

			subjects := map[string]bool{appSubject + " 1": true, appSubject + " 2": true}
			for i, m := range msgs {
				t.Run(fmt.Sprint("message", i+1), func(t *testing.T) {
					_, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
					k := slices.IndexFunc(handed, func(c call) bool {
						_, in, _ := bytes.Cut(crlf(c.stdin), []byte("\r\n\r\n"))
						return bytes.Equal(in, body)
					})
					if k < 0 {
						t.Fatalf("arrived body matches nothing the library wrote:\n%s", m.Data)
					}
					sorted := m
					sorted.Rcpts = slices.Sorted(slices.Values(m.Rcpts))
					check(t, handed[k], sorted, want{from: from, rcpts: tt.rcpts})
					subject := checkAppMIME(t, m.Data)
					if !subjects[subject] {
						t.Errorf("Subject %q: want one of %v, each once", subject, subjects)
					}
					delete(subjects, subject)
				})
			}
		})
	}
}

// runApp writes script to a file and runs it with the client's
// interpreter, in a mount namespace where /usr/sbin/sendmail is the
// wrapper and PATH holds /usr/sbin, and returns what it printed.
func (h *harness) runApp(c client, script string, env []string) string {
	h.t.Helper()
	file := filepath.Join(h.dir, "app")
	attach := filepath.Join(h.dir, "report.bin")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(attach, appAttachment(), 0o644); err != nil {
		h.t.Fatal(err)
	}
	env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SUBJECT=" + appSubject, "TEXT=" + appText, "ATTACH=" + attach}, env...)
	if c.nodePath != "" {
		env = append(env, "NODE_PATH="+c.nodePath)
	}
	before := systemSendmail()
	out := h.run(client{name: c.name, bin: "/usr/bin/unshare"}, h.dir, nil, env,
		"-m", "--propagation", "private", "/bin/sh", "-c", appNamespace, "sh", h.dir, h.wrapper, c.bin, file)
	if after := systemSendmail(); after != before {
		h.t.Errorf("the machine's /usr/sbin/sendmail changed: was %s, is %s", before, after)
	}
	return out
}

// smtpSession splits what an SMTP client wrote into its commands and the
// messages of its DATA commands (dot-stuffing removed, CRLF endings). It
// fails the test on BDAT, which none of the libraries sends.
func smtpSession(t *testing.T, in []byte) (cmds []string, datas [][]byte) {
	t.Helper()
	var data []byte
	inData := false
	for _, line := range strings.SplitAfter(string(in), "\n") {
		if line == "" {
			continue
		}
		text := strings.TrimRight(line, "\r\n")
		if !inData {
			cmds = append(cmds, text)
			if strings.HasPrefix(strings.ToUpper(text), "BDAT") {
				t.Fatalf("the client sent BDAT; this test reads DATA only: %q", text)
			}
			if strings.EqualFold(text, "DATA") {
				inData, data = true, nil
			}
			continue
		}
		if text == "." {
			datas = append(datas, data)
			inData = false
			continue
		}
		data = append(data, strings.TrimPrefix(text, ".")+"\r\n"...)
	}
	if inData {
		t.Fatalf("the SMTP session ended inside DATA:\n%s", in)
	}
	return cmds, datas
}

// checkAppMIME parses a message the libraries built and checks what a
// mail reader would show: no Bcc, the text (line endings aside) and
// report.bin's exact bytes. It returns the decoded subject.
func checkAppMIME(t *testing.T, data []byte) string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-message cannot read the message: %v", err)
	}
	subject, err := r.Header.Subject()
	if err != nil {
		t.Errorf("Subject: %v", err)
	}
	if r.Header.Has("Bcc") {
		t.Errorf("Bcc arrived: %q", r.Header.Get("Bcc"))
	}
	var texts []string
	var attachments [][]byte
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("go-message: next part: %v", err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("go-message: reading a part: %v", err)
		}
		switch ph := p.Header.(type) {
		case *mail.InlineHeader:
			if ct, _, _ := ph.ContentType(); ct == "text/plain" {
				texts = append(texts, string(b))
			}
		case *mail.AttachmentHeader:
			name, _ := ph.Filename()
			if name != "report.bin" {
				t.Errorf("attachment named %q, want report.bin", name)
			}
			attachments = append(attachments, b)
		}
	}
	// Line endings aside: the mail gem 2.7 encodes the CR of each CRLF as
	// =0D in quoted-printable (its bug, fixed in 2.8), so its text decodes
	// to CR CR LF. The bytes themselves are compared with what the library
	// wrote in check.
	norm := func(s string) string { return strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n") }
	if len(texts) != 1 || norm(texts[0]) != norm(appText) {
		t.Errorf("text parts %q, want one with %q", texts, appText)
	}
	if len(attachments) != 1 || !bytes.Equal(attachments[0], appAttachment()) {
		t.Errorf("%d attachments arrived, want report.bin with its %d bytes intact", len(attachments), len(appAttachment()))
	}
	return subject
}
