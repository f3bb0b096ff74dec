package e2e

import (
	"bytes"
	"os"
	"regexp"
	"testing"

	"relaymail/internal/smarthost"
)

// The real callers of CALLERS.md, each with its exact argv and the kind of
// message it writes. The login user of the test process is whoever runs the
// tests, so cases that depend on it give -f or set from in the config.
func TestCallers(t *testing.T) {
	const aliasRoot = "[aliases]\nroot = \"ops@example.net\"\n"
	tests := []struct {
		name     string
		args     []string
		top      string // config lines before any table
		tail     string // config tables after [queue]
		stdin    string
		wantFrom string
		wantTo   []string
		// want is the exact message that must arrive; "" means check
		// wantHeaders instead (for messages whose Date/Message-ID we add).
		want        string
		wantHeaders map[string]string
	}{
		{
			name:     "php mail()",
			args:     []string{"-t", "-i"},
			top:      `from = "www-data@example.com"`,
			stdin:    "To: alice@example.net\r\nSubject: Welcome\r\nFrom: shop@example.com\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@shop>\r\n\r\nHello Alice\r\n.\r\nstill body\r\n",
			wantFrom: "www-data@example.com",
			wantTo:   []string{"alice@example.net"},
			want:     "To: alice@example.net\r\nSubject: Welcome\r\nFrom: shop@example.com\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@shop>\r\n\r\nHello Alice\r\n.\r\nstill body\r\n",
		},
		{
			name:     "php mail() with -f additional parameter",
			args:     []string{"-t", "-i", "-fbounce@example.com"},
			stdin:    "To: a@example.net, \"Doe, John\" <john@example.net>\nCc: c@example.net\nSubject: x\nFrom: shop@example.com\nDate: Mon, 02 Jan 2006 15:04:05 +0000\nMessage-ID: <2@shop>\n\nbody\n",
			wantFrom: "bounce@example.com",
			wantTo:   []string{"a@example.net", "john@example.net", "c@example.net"},
			want:     "To: a@example.net, \"Doe, John\" <john@example.net>\r\nCc: c@example.net\r\nSubject: x\r\nFrom: shop@example.com\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <2@shop>\r\n\r\nbody\r\n",
		},
		{
			name:     "debian cron",
			args:     []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			top:      `from = "cron@example.com"`,
			tail:     aliasRoot,
			stdin:    "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@app01> /usr/local/bin/backup\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\nbackup done: 3 files, 0 errors — ok\n",
			wantFrom: "cron@example.com",
			wantTo:   []string{"ops@example.net"},
			wantHeaders: map[string]string{
				"From": "root (Cron Daemon)", "To": "root", "X-Cron-Env": "<SHELL=/bin/sh>",
				"Message-ID": `^<[^@>]+@app01\.example\.com>$`, "Date": `^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} `,
			},
		},
		{
			name:        "cron MAILTO with two addresses in one word",
			args:        []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "a@example.net,b@example.net"},
			top:         `from = "cron@example.com"`,
			stdin:       "From: root (Cron Daemon)\nTo: a@example.net,b@example.net\nSubject: Cron\n\nout\n",
			wantFrom:    "cron@example.com",
			wantTo:      []string{"a@example.net", "b@example.net"},
			wantHeaders: map[string]string{"Subject": "Cron"},
		},
		{
			name:        "cronie",
			args:        []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"},
			tail:        aliasRoot,
			stdin:       "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@app01> date\nAuto-Submitted: auto-generated\nX-Cron-Env: <MAILTO=root>\n\nThu Nov 26 10:00:01 UTC 2026\n",
			wantFrom:    "root@example.com",
			wantTo:      []string{"ops@example.net"},
			wantHeaders: map[string]string{"Auto-Submitted": "auto-generated", "To": "root"},
		},
		{
			name:        "anacron",
			args:        []string{"-FAnacron", "-odi", "admin@example.net"},
			top:         `from = "root@example.com"`,
			stdin:       "From: Anacron <root>\nTo: admin@example.net\nSubject: Anacron job 'cron.daily' on app01\n\nrun-parts: ok\n",
			wantFrom:    "root@example.com",
			wantTo:      []string{"admin@example.net"},
			wantHeaders: map[string]string{"Subject": "Anacron job 'cron.daily' on app01"},
		},
		{
			name:        "bsd-mailx keeps Bcc for sendmail to strip",
			args:        []string{"-i", "-t", "-f", "me@example.com"},
			stdin:       "To: a@example.net\nCc: c@example.net\nBcc: secret@example.net\nSubject: hi\n\nbody\n",
			wantFrom:    "me@example.com",
			wantTo:      []string{"a@example.net", "c@example.net", "secret@example.net"},
			wantHeaders: map[string]string{"Bcc": "", "To": "a@example.net", "From": "^<me@example.com>$|^.+ <me@example.com>$"},
		},
		{
			name:     "s-nail recipients on argv",
			args:     []string{"-i", "-F", "Jane Roe", "-f", "jane@example.com", "--", "a@example.net", "b@example.net"},
			stdin:    "Date: Thu, 26 Nov 2026 10:00:00 +0000\nFrom: Jane Roe <jane@example.com>\nTo: a@example.net\nCc: b@example.net\nSubject: s-nail\nMessage-ID: <20261126@example.com>\n\nhello\n",
			wantFrom: "jane@example.com",
			wantTo:   []string{"a@example.net", "b@example.net"},
			want:     "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nFrom: Jane Roe <jane@example.com>\r\nTo: a@example.net\r\nCc: b@example.net\r\nSubject: s-nail\r\nMessage-ID: <20261126@example.com>\r\n\r\nhello\r\n",
		},
		{
			name:        "gnu mailutils",
			args:        []string{"-oi", "-f", "user@app01.example.com", "-t"},
			stdin:       "To: <a@example.net>\nBcc: <hidden@example.net>\nSubject: mailutils\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n\nbody\n",
			wantFrom:    "user@app01.example.com",
			wantTo:      []string{"a@example.net", "hidden@example.net"},
			wantHeaders: map[string]string{"Bcc": "", "To": "<a@example.net>", "Date": "Thu, 26 Nov 2026 10:00:00 +0000"},
		},
		{
			name:     "mutt",
			args:     []string{"-oem", "-oi", "-f", "me@example.com", "-N", "failure,delay", "-R", "hdrs", "-B8BITMIME", "--", "a@example.net", "-dash@example.net"},
			stdin:    "Date: Thu, 26 Nov 2026 10:00:00 +0000\nFrom: Me <me@example.com>\nTo: a@example.net, -dash@example.net\nSubject: mutt\nMessage-ID: <m@example.com>\n\nbody\n",
			wantFrom: "me@example.com",
			wantTo:   []string{"a@example.net", "-dash@example.net"},
			want:     "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nFrom: Me <me@example.com>\r\nTo: a@example.net, -dash@example.net\r\nSubject: mutt\r\nMessage-ID: <m@example.com>\r\n\r\nbody\r\n",
		},
		{
			name:     "git send-email",
			args:     []string{"-i", "-f", "dev@example.com", "maint@example.net", "list@example.net"},
			stdin:    "From: Dev <dev@example.com>\nTo: maint@example.net\nCc: list@example.net\nSubject: [PATCH] fix it\nDate: Thu, 26 Nov 2026 10:00:00 +0000\nMessage-ID: <p1@example.com>\n\n---\n.\n..\ndiff --git a/x b/x\n",
			wantFrom: "dev@example.com",
			wantTo:   []string{"maint@example.net", "list@example.net"},
			want:     "From: Dev <dev@example.com>\r\nTo: maint@example.net\r\nCc: list@example.net\r\nSubject: [PATCH] fix it\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@example.com>\r\n\r\n---\r\n.\r\n..\r\ndiff --git a/x b/x\r\n",
		},
		{
			name:        "unattended-upgrades",
			args:        []string{"-oi", "-t"},
			top:         `from = "root@example.com"`,
			tail:        aliasRoot,
			stdin:       "From: root\nTo: root\nSubject: unattended-upgrades result for app01: SUCCESS\nAuto-Submitted: auto-generated\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\nUnattended upgrade result: All upgrades installed=0A\n",
			wantFrom:    "root@example.com",
			wantTo:      []string{"ops@example.net"},
			wantHeaders: map[string]string{"From": "root", "Message-ID": `@app01\.example\.com>$`},
		},
		{
			name:     "logwatch without -i: a lone dot ends the message",
			args:     []string{"-t"},
			top:      `from = "root@example.com"`,
			stdin:    "To: admin@example.net\nFrom: Logwatch\nSubject: Logwatch\nDate: Thu, 26 Nov 2026 10:00:00 +0000\nMessage-ID: <lw@x>\n\nreport\n.\nnot sent\n",
			wantFrom: "root@example.com",
			wantTo:   []string{"admin@example.net"},
			want:     "To: admin@example.net\r\nFrom: Logwatch\r\nSubject: Logwatch\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lw@x>\r\n\r\nreport\r\n",
		},
		{
			name:        "fail2ban to root@localhost",
			args:        []string{"-f", "root@app01.example.com", "root@localhost"},
			tail:        aliasRoot,
			stdin:       "Subject: [Fail2Ban] sshd: banned 192.0.2.7\nDate: Thu, 26 Nov 2026 10:00:00 +0000\nFrom: Fail2Ban <root@app01.example.com>\nTo: root@localhost\n\nbanned\n",
			wantFrom:    "root@app01.example.com",
			wantTo:      []string{"ops@example.net"},
			wantHeaders: map[string]string{"To": "root@localhost"},
		},
		{
			name:        "mdadm -t with display name",
			args:        []string{"-t"},
			top:         `from = "root@example.com"`,
			stdin:       "From: mdadm monitoring <root@app01.example.com>\nTo: raid-admins@example.net\nSubject: Fail event on /dev/md0:app01\n\nA Fail event had been detected\n",
			wantFrom:    "root@example.com",
			wantTo:      []string{"raid-admins@example.net"},
			wantHeaders: map[string]string{"Subject": "Fail event on /dev/md0:app01"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, smarthost.Options{}, tt.top, "")
			if tt.tail != "" {
				appendConfig(t, s.conf, tt.tail)
			}
			o := s.run(tt.stdin, tt.args...)
			wantCode(t, o, 0, "")
			if o.stderr != "" {
				t.Errorf("stderr = %q, want nothing on success", o.stderr)
			}
			m := s.one()
			wantEnvelope(t, m, tt.wantFrom, tt.wantTo...)
			if tt.want != "" && string(m.Data) != tt.want {
				t.Errorf("message =\n%q\nwant\n%q", m.Data, tt.want)
			}
			if bytes.Contains(m.Data, []byte("\nBcc:")) || bytes.HasPrefix(m.Data, []byte("Bcc:")) {
				t.Errorf("Bcc header was sent:\n%s", m.Data)
			}
			for name, pattern := range tt.wantHeaders {
				got := header(m.Data, name)
				if pattern == "" {
					if got != "" {
						t.Errorf("%s header = %q, want none", name, got)
					}
					continue
				}
				if !regexp.MustCompile(pattern).MatchString(got) && got != pattern {
					t.Errorf("%s header = %q, want %q", name, got, pattern)
				}
			}
			for _, name := range []string{"Date", "Message-ID", "From"} {
				if header(m.Data, name) == "" {
					t.Errorf("no %s header in\n%s", name, m.Data)
				}
			}
			if bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("bare LF in the message")
			}
		})
	}
}

func TestMuttDSNOptions(t *testing.T) {
	s := newSetup(t, smarthost.Options{DSN: true}, "", "")
	o := s.run("Subject: x\n\nbody\n", "-oem", "-oi", "-f", "me@example.com", "-N", "failure,delay", "-R", "hdrs", "-V", "env-1", "-B8BITMIME", "--", "a@example.net")
	wantCode(t, o, 0, "")
	m := s.one()
	if m.MailOpts.Return != "HDRS" || m.MailOpts.EnvelopeID != "env-1" || m.MailOpts.Body != "8BITMIME" {
		t.Errorf("MAIL options = %+v, want RET=HDRS ENVID=env-1 BODY=8BITMIME", m.MailOpts)
	}
	if len(m.RcptOpts) != 1 || len(m.RcptOpts[0].Notify) != 2 || m.RcptOpts[0].Notify[0] != "FAILURE" || m.RcptOpts[0].Notify[1] != "DELAY" {
		t.Errorf("RCPT options = %+v, want NOTIFY=FAILURE,DELAY", m.RcptOpts)
	}
}

func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, []byte("\n"+text)...), 0o600); err != nil {
		t.Fatal(err)
	}
}
