//go:build interop

package interop

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relaymail/internal/smarthost"
)

// The bodies carry UTF-8, a line holding a lone dot (which ends the message
// unless sendmail got -i or -oi) and one starting with two dots.
const body = "Grüße — ünïcödé\n.\n..two dots\nlast line\n"

// TestPHP runs PHP's mail() from php8.2-cli with sendmail_path set, the
// To/Cc/Bcc of additional headers, and with and without the fifth
// parameter. php8.2-cli 8.2.36-1~deb12u1 runs sendmail_path through
// /bin/sh with the fifth parameter appended:
//
//	<sendmail> -t -i -fbounce@example.com
//	<sendmail> -t -i                        (no fifth parameter)
//
// and writes To and Subject, then the additional headers as given (CRLF
// or, from older scripts, LF between them), CRLF, an empty line, then the
// body as given plus a CRLF; no Date, no Message-ID, and the Bcc left for
// sendmail to remove.
func TestPHP(t *testing.T) {
	t.Parallel()
	php := needClient(t, "php")
	const headers = "From: Shop <shop@example.com>\r\nCc: carol@example.net\r\nBcc: dave@example.net, erin@example.net\r\nContent-Type: text/plain; charset=UTF-8"
	tests := []struct {
		name     string
		headers  string // mail()'s fourth parameter
		params   string // mail()'s fifth parameter
		wantArgs []string
		wantFrom string
	}{
		{"with -f", headers, "-fbounce@example.com", []string{"-t", "-i", "-fbounce@example.com"}, "bounce@example.com"},
		{"without -f", headers, "", []string{"-t", "-i"}, "www-data@example.com"},
		// Scripts written for PHP 7 separate their headers with LF, so
		// PHP 8 hands sendmail a header with mixed line endings.
		{"LF between additional headers", strings.ReplaceAll(headers, "\r\n", "\n"), "", []string{"-t", "-i"}, "www-data@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, smarthost.Options{}, "www-data@example.com", "")
			const script = `$ok = mail(getenv("TO"), getenv("SUBJECT"), getenv("BODY"), getenv("HEADERS"), getenv("PARAMS"));
exit($ok ? 0 : 1);`
			h.run(php, h.dir, nil, []string{
				"TO=Alice Example <alice@example.net>, bob@example.net",
				"SUBJECT=Bestellung Nr. 42",
				"BODY=" + body,
				"HEADERS=" + tt.headers,
				"PARAMS=" + tt.params,
			}, "-d", "sendmail_path="+h.wrapper+" -t -i", "-r", script)
			c := h.oneCall()
			wantArgs(t, c, tt.wantArgs...)
			m := h.one()
			t.Logf("smarthost saw %q", mailEvents(h.srv))
			check(t, c, m, want{
				from:  tt.wantFrom,
				rcpts: []string{"alice@example.net", "bob@example.net", "carol@example.net", "dave@example.net", "erin@example.net"},
				body:  body + "\n",
				headers: map[string]string{
					"To": "Alice Example <alice@example.net>, bob@example.net", "Cc": "carol@example.net",
					"From": "Shop <shop@example.com>", "Subject": "Bestellung Nr. 42",
				},
			})
		})
	}
}

// TestBSDMailx runs bsd-mailx (8.1.2-0.20220412cvs-1), unpacked, never
// installed: it Depends on an MTA. It has no option for the sendmail
// path; its "sendmail" variable, set in the file named by $MAILRC, is run
// with execv, so it cannot carry arguments and the wrapper adds -C. It
// calls
//
//	<sendmail> -i -t                     (no -r)
//	<sendmail> -i -t -f me@example.com   (-r "Me <me@example.com>")
//
// and writes To, Subject, Cc, Bcc (kept for sendmail to strip), MIME
// headers declaring UTF-8 8bit, a From only with -r, no Date or Message-ID.
// The Subject goes out as raw UTF-8.
func TestBSDMailx(t *testing.T) {
	t.Parallel()
	mailx := needClient(t, "bsd-mailx")
	tests := []struct {
		name     string
		args     []string
		wantArgs []string
		wantFrom string
		headers  map[string]string
	}{
		{
			name:     "cc and bcc",
			args:     []string{"-s", "Grüße von mailx", "-c", "cc@example.net", "-b", "bcc@example.net", "to@example.net"},
			wantArgs: []string{"-i", "-t"},
			wantFrom: "admin@example.com",
			// relaymail adds From: "<full name>" <admin@example.com>,
			// the full name being the test user's.
			headers: map[string]string{"To": "to@example.net", "Cc": "cc@example.net", "Subject": "Grüße von mailx"},
		},
		{
			name:     "with -r",
			args:     []string{"-r", "Me <me@example.com>", "-s", "from me", "-b", "bcc@example.net", "to@example.net"},
			wantArgs: []string{"-i", "-t", "-f", "me@example.com"},
			wantFrom: "me@example.com",
			headers:  map[string]string{"To": "to@example.net", "From": "Me <me@example.com>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, smarthost.Options{}, "admin@example.com", "")
			mailrc := filepath.Join(h.dir, "mailrc")
			if err := os.WriteFile(mailrc, []byte("set sendmail="+h.wrapper+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			h.run(mailx, h.dir, []byte(body), []string{"MAILRC=" + mailrc}, tt.args...)
			c := h.oneCall()
			wantArgs(t, c, tt.wantArgs...)
			if !bytes.Contains(c.stdin, []byte("\nBcc: bcc@example.net\n")) {
				t.Errorf("bsd-mailx no longer writes Bcc for sendmail to strip:\n%s", c.stdin)
			}
			m := h.one()
			t.Logf("smarthost saw %q", mailEvents(h.srv))
			rcpts := []string{"to@example.net", "cc@example.net", "bcc@example.net"}
			if !strings.Contains(strings.Join(tt.args, " "), "-c") {
				rcpts = []string{"to@example.net", "bcc@example.net"}
			}
			check(t, c, m, want{from: tt.wantFrom, rcpts: rcpts, body: body, headers: tt.headers})
			if from := fieldValues(headerFields(m.Data), "From"); len(from) != 1 || !strings.HasSuffix(from[0], "<"+tt.wantFrom+">") {
				t.Errorf("From = %q, want one ending in <%s>", from, tt.wantFrom)
			}
		})
	}
}

// TestMutt runs mutt 2.2.12 in batch mode with Debian's /etc/Muttrc and a
// muttrc of its own. It calls
//
//	<sendmail> -oem -oi -f me@example.com -- to@example.net cc@example.net bcc@example.net
//
// ($sendmail = "<sendmail> -oem -oi", use_envelope_from), and with
// use_8bitmime, dsn_notify and dsn_return
//
//	<sendmail> -oem -oi -B8BITMIME -f me@example.com -N failure,delay -R hdrs -- to@example.net ...
//
// It writes Date, From, To, Cc, Subject (RFC 2047), Message-ID and MIME
// headers, no Bcc: every recipient is on the command line.
func TestMutt(t *testing.T) {
	t.Parallel()
	mutt := needClient(t, "mutt")
	tests := []struct {
		name     string
		rc       string
		wantArgs []string
		dsn      bool
	}{
		{
			name:     "envelope from",
			wantArgs: []string{"-oem", "-oi", "-f", "me@example.com", "--", "to@example.net", "cc@example.net", "bcc@example.net"},
		},
		{
			name: "8bitmime and dsn",
			rc:   "set use_8bitmime=yes\nset dsn_notify=\"failure,delay\"\nset dsn_return=hdrs\n",
			wantArgs: []string{"-oem", "-oi", "-B8BITMIME", "-f", "me@example.com", "-N", "failure,delay", "-R", "hdrs",
				"--", "to@example.net", "cc@example.net", "bcc@example.net"},
			dsn: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, smarthost.Options{DSN: tt.dsn}, "nobody@example.com", "")
			muttrc := filepath.Join(h.dir, "muttrc")
			rc := `set sendmail="` + h.wrapper + ` -oem -oi"
set use_envelope_from=yes
set from="Me Myself <me@example.com>"
set charset="utf-8"
set send_charset="utf-8"
set copy=no
set folder="` + h.dir + `/Mail"
set spoolfile="` + h.dir + `/Mail/inbox"
` + tt.rc
			if err := os.WriteFile(muttrc, []byte(rc), 0o644); err != nil {
				t.Fatal(err)
			}
			h.run(mutt, h.dir, []byte(body), nil,
				"-F", muttrc, "-s", "Grüße von mutt", "-c", "cc@example.net", "-b", "bcc@example.net", "to@example.net")
			c := h.oneCall()
			wantArgs(t, c, tt.wantArgs...)
			m := h.one()
			t.Logf("smarthost saw %q", mailEvents(h.srv))
			check(t, c, m, want{
				from: "me@example.com", rcpts: []string{"to@example.net", "cc@example.net", "bcc@example.net"}, body: body,
				headers: map[string]string{"From": "Me Myself <me@example.com>", "To": "to@example.net", "Cc": "cc@example.net",
					"Subject": "=?utf-8?B?R3LDvMOfZQ==?= von mutt"},
			})
			if tt.dsn {
				if m.MailOpts.Body != "8BITMIME" || m.MailOpts.Return != "HDRS" {
					t.Errorf("MAIL FROM options = BODY=%q RET=%q, want BODY=8BITMIME RET=HDRS", m.MailOpts.Body, m.MailOpts.Return)
				}
				for i, o := range m.RcptOpts {
					if got := strings.Join(dsnNotify(o), ","); got != "FAILURE,DELAY" {
						t.Errorf("RCPT %d NOTIFY = %s, want FAILURE,DELAY", i, got)
					}
				}
			}
		})
	}
}

func dsnNotify(o smtp.RcptOptions) []string {
	var out []string
	for _, n := range o.Notify {
		out = append(out, string(n))
	}
	return out
}

// TestGitSendEmail runs git send-email (git-email 1:2.39.5) on a patch
// from git format-patch. With --sendmail-cmd=<sendmail> git runs
// sh -c '<sendmail> "$@"' and with --smtp-server=<absolute path> it runs
// the program itself; either way the recipients go on the command line:
//
//	<sendmail> -i maint@example.net list@example.net dev@example.com hidden@example.net
//	<sendmail> -f dev@example.com -i maint@example.net ...   (--envelope-sender=auto)
//
// git adds the author (dev@example.com) to Cc unless --suppress-cc=self,
// puts --bcc only on the command line, and writes Message-Id (so spelt),
// Date, X-Mailer and MIME headers itself.
func TestGitSendEmail(t *testing.T) {
	t.Parallel()
	needClient(t, "git-send-email")
	rcpts := []string{"maint@example.net", "list@example.net", "dev@example.com", "hidden@example.net"}
	tests := []struct {
		name     string
		args     func(wrapper string) []string
		wantArgs []string
		wantFrom string
	}{
		{
			name:     "sendmail-cmd",
			args:     func(w string) []string { return []string{"--sendmail-cmd=" + w} },
			wantArgs: append([]string{"-i"}, rcpts...),
			wantFrom: "nobody@example.com",
		},
		{
			name:     "smtp-server path with envelope sender",
			args:     func(w string) []string { return []string{"--smtp-server=" + w, "--envelope-sender=auto"} },
			wantArgs: append([]string{"-f", "dev@example.com", "-i"}, rcpts...),
			wantFrom: "dev@example.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, smarthost.Options{}, "nobody@example.com", "")
			repo := filepath.Join(h.dir, "repo")
			env := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Dev Eloper", "GIT_AUTHOR_EMAIL=dev@example.com",
				"GIT_COMMITTER_NAME=Dev Eloper", "GIT_COMMITTER_EMAIL=dev@example.com",
				"GIT_AUTHOR_DATE=2026-11-26T10:00:00Z", "GIT_COMMITTER_DATE=2026-11-26T10:00:00Z"}
			gitCmd := client{name: "git", bin: "/usr/bin/git"}
			if err := os.Mkdir(repo, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(repo, "greeting.txt"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			h.run(gitCmd, repo, nil, env, "init", "-q")
			h.run(gitCmd, repo, nil, env, "add", "greeting.txt")
			h.run(gitCmd, repo, nil, env, "commit", "-q", "-m", "Add a greeting: grüße\n\nWith a lone dot in it.")
			h.run(gitCmd, repo, nil, env, "format-patch", "-q", "-1", "-o", h.dir)
			patches, _ := filepath.Glob(filepath.Join(h.dir, "0001-*.patch"))
			if len(patches) != 1 {
				t.Fatalf("format-patch wrote %q, want one patch", patches)
			}
			patch, err := os.ReadFile(patches[0])
			if err != nil {
				t.Fatal(err)
			}
			_, patchBody, _ := bytes.Cut(patch, []byte("\n\n"))
			version, _ := exec.Command("git", "--version").Output()
			t.Logf("%s", bytes.TrimSpace(version))

			args := append([]string{"send-email"}, tt.args(h.wrapper)...)
			args = append(args, "--to=maint@example.net", "--cc=list@example.net", "--bcc=hidden@example.net",
				"--from=Dev Eloper <dev@example.com>", "--confirm=never", "--no-chain-reply-to", "--quiet", patches[0])
			h.run(gitCmd, repo, nil, env, args...)
			c := h.oneCall()
			wantArgs(t, c, tt.wantArgs...)
			m := h.one()
			t.Logf("smarthost saw %q", mailEvents(h.srv))
			check(t, c, m, want{
				from: tt.wantFrom, rcpts: rcpts, body: string(patchBody),
				headers: map[string]string{"From": "Dev Eloper <dev@example.com>", "To": "maint@example.net",
					"Subject": "[PATCH] =?UTF-8?q?Add=20a=20greeting:=20gr=C3=BC=C3=9Fe?="},
			})
		})
	}
}
