package maillog

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
		want string
	}{
		{
			name: "sent to two",
			e: Entry{ID: "01ABC", UID: 33, User: "www-data", From: "www-data@example.com", To: []string{"a@x", "b@y"},
				Relay: "smtp.example.com:587", Delay: 310 * time.Millisecond, Status: "sent", Reply: "250 2.0.0 Ok"},
			want: "01ABC: uid=33 user=www-data from=<www-data@example.com> to=<a@x>,<b@y> relay=smtp.example.com:587 delay=0.31 status=sent (250 2.0.0 Ok)",
		},
		{
			name: "null sender, no relay, reply with line break",
			e:    Entry{UID: -1, To: []string{"a@x"}, Status: "deferred", Reply: "451 try\r\nlater"},
			want: "from=<> to=<a@x> delay=0.00 status=deferred (451 try  later)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Format(tt.e); got != tt.want {
				t.Errorf("Format() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSyslog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var echo strings.Builder
	l := New(Options{Syslog: true, SyslogAddr: path, Fallback: &echo, Echo: true})
	defer l.Close()
	l.Log(Entry{ID: "01X", UID: 0, From: "a@b", To: []string{"c@d"}, Status: "sent", Reply: "250 ok"})

	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	// <22> is facility mail (2) * 8 + severity info (6).
	if !strings.HasPrefix(got, "<22>") || !strings.Contains(got, "relaymail[") ||
		!strings.Contains(got, "01X: uid=0 from=<a@b> to=<c@d> delay=0.00 status=sent (250 ok)") {
		t.Errorf("syslog datagram = %q", got)
	}
	if !strings.Contains(echo.String(), "status=sent") {
		t.Errorf("echo = %q, want the line", echo.String())
	}
}

func TestNoSyslogIsQuiet(t *testing.T) {
	var out strings.Builder
	l := New(Options{Syslog: true, SyslogAddr: filepath.Join(t.TempDir(), "missing"), Fallback: &out})
	l.Log(Entry{To: []string{"a@b"}, Status: "sent"})
	if out.Len() != 0 {
		t.Errorf("output without syslog and without echo = %q, want none", out.String())
	}
}

func TestLogEachGroups(t *testing.T) {
	var out strings.Builder
	l := New(Options{Fallback: &out, Echo: true})
	l.LogEach(Entry{ID: "01X", UID: -1, From: "a@b"}, []Outcome{
		{Rcpt: "c@d", Status: "sent", Reply: "250 ok"},
		{Rcpt: "e@f", Status: "bounced", Reply: "550 no"},
		{Rcpt: "g@h", Status: "sent", Reply: "250 ok"},
	})
	want := "01X: from=<a@b> to=<c@d>,<g@h> delay=0.00 status=sent (250 ok)\n" +
		"01X: from=<a@b> to=<e@f> delay=0.00 status=bounced (550 no)\n"
	if out.String() != want {
		t.Errorf("LogEach wrote\n%s\nwant\n%s", out.String(), want)
	}
}
