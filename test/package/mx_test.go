//go:build interop

package pkgtest

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"relaymail/internal/smarthost"
)

// The smarthost: Debian's Postfix, installed with apt-get in its own root
// (it conflicts with relaymail, both being mail-transport-agent), listening
// on 127.0.0.1:<port> only. It offers STARTTLS with a certificate for
// localhost from a CA made here, takes mail only after SASL AUTH (Cyrus
// sasldb, PLAIN and LOGIN, only over TLS), and delivers every address at
// example.org, example.com and example.net to one Maildir
// (virtual delivery), adding Return-Path and Delivered-To. It leaves the
// header as relaymail sent it: no client's addresses are rewritten.
type postfix struct {
	r     *root
	port  int
	caPEM []byte
	// throttlePort is a second smtpd on 127.0.0.1 that takes at most
	// throttleRate messages per anvil_rate_time_unit (10 s) from one
	// client, answering "450 4.7.1 Error: too much mail from ..." beyond:
	// Postfix's own rate limit (anvil), with loopback not exempt.
	throttlePort int
}

// throttleRate is the throttle port's limit, in messages per 10 s.
const throttleRate = 5

const (
	mxUser     = "relayuser@example.com"
	mxPassword = "pkg-relay-secret"
)

// mxConfig configures Postfix; $1 is the port, $2 the throttle port, $3
// its rate, stdin the SASL password.
const mxConfig = `set -e
port=$1 throttle=$2 rate=$3
postconf -e myhostname=mx.example.test mydestination= \
	virtual_mailbox_domains='example.org example.com example.net' \
	virtual_mailbox_base=/var/mail/vhosts virtual_mailbox_maps=static:all/ \
	virtual_uid_maps=static:5000 virtual_gid_maps=static:5000 \
	message_size_limit=104857600 virtual_mailbox_limit=0 \
	smtpd_tls_cert_file=/etc/postfix/test-cert.pem smtpd_tls_key_file=/etc/postfix/test-key.pem \
	smtpd_tls_security_level=may smtpd_tls_auth_only=yes \
	smtpd_sasl_auth_enable=yes smtpd_sasl_type=cyrus smtpd_sasl_path=smtpd \
	cyrus_sasl_config_path=/etc/postfix/sasl smtpd_sasl_security_options=noanonymous \
	smtpd_sasl_authenticated_header=yes \
	smtpd_relay_restrictions='permit_sasl_authenticated, reject' \
	smtpd_recipient_restrictions='permit_sasl_authenticated, reject' \
	maillog_file=/var/log/postfix.log smtputf8_enable=yes local_header_rewrite_clients=
mkdir -p /var/mail/vhosts
chown 5000:5000 /var/mail/vhosts
printf 'pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: /etc/postfix/sasldb2\n' >/etc/postfix/sasl/smtpd.conf
saslpasswd2 -p -c -f /etc/postfix/sasldb2 -u example.com relayuser
chown root:postfix /etc/postfix/sasldb2
chmod 640 /etc/postfix/sasldb2
postconf -MX smtp/inet
postconf -M "127.0.0.1:$port/inet=127.0.0.1:$port inet n - n - - smtpd"
postconf -e anvil_rate_time_unit=10s
postconf -M "127.0.0.1:$throttle/inet=127.0.0.1:$throttle inet n - n - - smtpd -o smtpd_client_message_rate_limit=$rate -o smtpd_client_event_limit_exceptions="
postconf -F '*/*/chroot = n'
postfix check
`

// startPostfix installs, configures and starts the smarthost.
func startPostfix(t *testing.T, cache string) *postfix {
	t.Helper()
	r := newRoot(t, "mx", cache)
	r.must("postfix postfix/main_mailer_type select Internet Site\npostfix postfix/mailname string mx.example.test\n",
		"debconf-set-selections")
	r.aptInstall("postfix", "sasl2-bin", "libsasl2-modules")
	ca, cert, key, err := smarthost.ServerCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	r.writeFile("/etc/postfix/test-cert.pem", cert, 0o644)
	r.writeFile("/etc/postfix/test-key.pem", key, 0o600)
	p := &postfix{r: r, port: freePort(t), throttlePort: freePort(t), caPEM: ca}
	r.must(mxPassword+"\n", mxConfig, strconv.Itoa(p.port), strconv.Itoa(p.throttlePort), strconv.Itoa(throttleRate))
	r.start("exec postfix start-fg")
	waitPort(t, p.port, p.log)
	waitPort(t, p.throttlePort, p.log)
	t.Logf("smarthost: %s on 127.0.0.1:%d", strings.TrimSpace(r.must("", "dpkg-query -W -f '${Package} ${Version}' postfix")), p.port)
	return p
}

// log is Postfix's log so far.
func (p *postfix) log() string {
	b, _ := os.ReadFile(p.r.path("/var/log/postfix.log"))
	return string(b)
}

// delivered is one copy of a message in a recipient's Maildir.
type delivered struct {
	rcpt       string // Delivered-To
	returnPath string // the envelope sender, from Return-Path
	data       []byte // the file, CRLF line endings
	header     mail.Header
}

// mailbox reads every delivered copy.
func (p *postfix) mailbox(t *testing.T) []delivered {
	t.Helper()
	var out []delivered
	base := p.r.path("/var/mail/vhosts")
	filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(path)) != "new" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		r, err := mail.CreateReader(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: go-message cannot read it: %v", path, err)
			return nil
		}
		out = append(out, delivered{
			rcpt:       r.Header.Get("Delivered-To"),
			returnPath: r.Header.Get("Return-Path"),
			data:       b,
			header:     r.Header,
		})
		return nil
	})
	return out
}

// wait returns the copies whose decoded Subject contains token, once there
// are n of them (and fails after 60 s).
func (p *postfix) wait(t *testing.T, token string, n int) []delivered {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := deliveredWith(p.mailbox(t), token)
		if len(got) >= n {
			if len(got) > n {
				t.Errorf("%d copies of %q arrived, want %d", len(got), token, n)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d copies of %q arrived within 60 s; Postfix's log ends:\n%s", len(got), n, token, tail(p.log(), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantDelivery checks the copies of one message: one per recipient in
// rcpts, each with the envelope sender from, the same header and body; no
// Bcc; exactly one Date, Message-ID and From; received over TLS after
// AUTH as mxUser. It returns one copy.
func wantDelivery(t *testing.T, copies []delivered, from string, rcpts ...string) delivered {
	t.Helper()
	var got []string
	for _, c := range copies {
		got = append(got, c.rcpt)
		if c.returnPath != "<"+from+">" {
			t.Errorf("%s: Return-Path %q, want <%s>", c.rcpt, c.returnPath, from)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(rcpts))
	if !slices.Equal(got, want) {
		t.Errorf("delivered to %q, want %q", got, want)
	}
	c := copies[0]
	for _, f := range []string{"Date", "Message-Id", "From"} {
		if n := len(c.header.Values(f)); n != 1 {
			t.Errorf("%d %s fields, want 1", n, f)
		}
	}
	if c.header.Has("Bcc") {
		t.Errorf("Bcc arrived: %q", c.header.Get("Bcc"))
	}
	received := strings.Join(c.header.Values("Received"), "\n")
	if !strings.Contains(received, "Authenticated sender: "+mxUser) || !strings.Contains(received, "with ESMTPSA") {
		t.Errorf("not received over TLS after AUTH as %s:\n%s", mxUser, received)
	}
	return c
}

// parts decodes a delivered message: its text/plain parts and its
// attachments by file name.
func parts(t *testing.T, d delivered) (texts []string, attachments map[string][]byte) {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(d.data))
	if err != nil {
		t.Fatal(err)
	}
	attachments = map[string][]byte{}
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
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			if ct, _, _ := h.ContentType(); ct == "text/plain" || ct == "" {
				texts = append(texts, strings.ReplaceAll(string(b), "\r\n", "\n"))
			}
		case *mail.AttachmentHeader:
			name, _ := h.Filename()
			attachments[name] = b
		}
	}
	return texts, attachments
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dialTCP(port int) (net.Conn, error) {
	return net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
