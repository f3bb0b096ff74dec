package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// fakeEnv makes the test binary act as a minimal sendmail -t (see
// fakeSendmail), so that the demo can be tested while the real binary is
// being written.
const fakeEnv = "SMARTHOST_TEST_FAKE_SENDMAIL"

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "ok":
		os.Exit(fakeSendmail(os.Args[1:], os.Stdin, os.Stderr))
	case "fail":
		fmt.Fprintln(os.Stderr, "sendmail: queued as 01FAKE: smarthost unreachable (connection refused); will retry")
		os.Exit(75)
	}
	os.Exit(m.Run())
}

// relayConfig is the part of relaymail's config that WriteConfig fills in.
type relayConfig struct {
	Hostname  string `toml:"hostname"`
	Domain    string `toml:"domain"`
	Smarthost struct {
		Host          string `toml:"host"`
		Port          int    `toml:"port"`
		TLS           string `toml:"tls"`
		TLSServerName string `toml:"tls_server_name"`
		CAFile        string `toml:"ca_file"`
		Username      string `toml:"username"`
		Password      string `toml:"password"`
	} `toml:"smarthost"`
	Queue struct {
		Dir string `toml:"dir"`
	} `toml:"queue"`
}

func readConfig(path string) (relayConfig, error) {
	var c relayConfig
	_, err := toml.DecodeFile(path, &c)
	return c, err
}

// dialConfig connects and logs in as the config says.
func dialConfig(c relayConfig) (*smtp.Client, error) {
	pem, err := os.ReadFile(c.Smarthost.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	addr := net.JoinHostPort(c.Smarthost.Host, fmt.Sprint(c.Smarthost.Port))
	cl, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: pool, ServerName: c.Smarthost.TLSServerName})
	if err != nil {
		return nil, err
	}
	if err := cl.Hello(c.Hostname); err != nil {
		cl.Close()
		return nil, err
	}
	if err := cl.Auth(sasl.NewPlainClient("", c.Smarthost.Username, c.Smarthost.Password)); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// fakeSendmail does what the demo expects of "sendmail -C conf -t -i":
// recipients from To, Cc and Bcc, Bcc removed, Date and Message-ID added,
// CRLF line endings, sent over STARTTLS with AUTH PLAIN.
func fakeSendmail(args []string, stdin io.Reader, stderr io.Writer) int {
	if len(args) != 4 || args[0] != "-C" || args[2] != "-t" || args[3] != "-i" {
		fmt.Fprintf(stderr, "sendmail: fake wants -C conf -t -i, got %q\n", args)
		return 64
	}
	conf, err := readConfig(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		return 78
	}
	in, _ := io.ReadAll(stdin)
	msg, err := mail.ReadMessage(bytes.NewReader(in))
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		return 65
	}
	var rcpts []string
	for _, field := range []string{"To", "Cc", "Bcc"} {
		list, _ := msg.Header.AddressList(field)
		for _, a := range list {
			rcpts = append(rcpts, a.Address)
		}
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(in))
	inHeader := true
	for sc.Scan() {
		line := sc.Text()
		if inHeader && line == "" {
			inHeader = false
			fmt.Fprintf(&out, "Date: %s\r\nMessage-ID: <fake.1@%s>\r\n", time.Now().Format(time.RFC1123Z), conf.Hostname)
		}
		if inHeader && strings.HasPrefix(strings.ToLower(line), "bcc:") {
			continue
		}
		out.WriteString(line + "\r\n")
	}
	c, err := dialConfig(conf)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		return 75
	}
	defer c.Close()
	if err := c.SendMail("demo-sender@relaymail.test", rcpts, &out); err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		return 75
	}
	c.Quit()
	return 0
}

func TestDemo(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-demo", os.Args[0]}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	for _, want := range []string{
		" -C ", "relaymail.conf -t -i <<'EOF'\nFrom: Demo Sender",
		"exit code: 0\n", "stderr: (empty)\n",
		"=== message 1: MAIL FROM:<demo-sender@relaymail.test> RCPT TO:<alice@example.net>,<bob@example.net>,<carol@example.org>,<dave@example.org> (TLS, AUTH demo) ===\n",
		"\nMessage-ID: <fake.1@demo.relaymail.test>\n",
		"\nThis body is UTF-8: Grüße, café, 日本語, ✉.\n",
		"=== end ===\n",
		"Bcc header removed:                yes\n",
		"Bcc recipient in envelope:         yes\n",
		"To and Cc recipients in envelope:  yes\n",
		"Date added:                        yes\n",
		"Message-ID added:                  yes\n",
		"lone dot line kept (-i):           yes\n",
		"CRLF line endings only:            yes\n",
		"Subject (decoded):                 Grüße from the relaymail demo ✉\n",
		"TLS:                               yes\n",
		"AUTH:                              demo\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, arrived, _ := strings.Cut(out, "=== message 1"); strings.Contains(arrived, "Bcc:") {
		t.Errorf("the Bcc header shows in what arrived:\n%s", arrived)
	}
}

func TestDemoFailure(t *testing.T) {
	t.Setenv(fakeEnv, "fail")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-demo", os.Args[0]}, &stdout, &stderr)
	out := stdout.String()
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"exit code: 75\n", "stderr:\n    sendmail: queued as 01FAKE", "Nothing arrived at the smarthost within 2s."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDemoMissingBinary(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-demo", filepath.Join(t.TempDir(), "relaymail")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), "cannot run ") {
		t.Errorf("exit %d, output:\n%s", code, stdout.String())
	}
}

func TestDemoSubjectIsRFC2047(t *testing.T) {
	msg, err := mail.ReadMessage(strings.NewReader(demoMessage))
	if err != nil {
		t.Fatal(err)
	}
	raw := msg.Header.Get("Subject")
	dec, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil || dec != "Grüße from the relaymail demo ✉" {
		t.Errorf("subject %q decodes to %q, %v", raw, dec, err)
	}
	for _, h := range []string{"Date", "Message-ID"} {
		if msg.Header.Get(h) != "" {
			t.Errorf("the demo message has %s; relaymail must add it", h)
		}
	}
}

// TestServe runs serve mode with -count 2 and sends it two messages with
// the config it writes.
func TestServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "r.conf")
	ca := filepath.Join(dir, "ca.pem")
	var stdout, stderr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run(context.Background(), []string{"-listen-only", "-conf", conf, "-ca", ca, "-count", "2", "-user", "u1", "-pass", "p1"}, &stdout, &stderr)
	}()
	c := waitConfig(t, conf, done)
	if pem, err := os.ReadFile(ca); err != nil || !bytes.HasPrefix(pem, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("-ca file: %q, %v", pem, err)
	}
	if c.Smarthost.Username != "u1" || c.Smarthost.Password != "p1" || c.Smarthost.TLS != "starttls" || c.Queue.Dir != conf+".spool" {
		t.Errorf("config = %+v", c)
	}
	cl, err := dialConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nno final newline"} {
		if err := cl.SendMail("a@example.com", []string{"b@example.net", "c@example.net"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	cl.Quit()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d; stderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after -count messages")
	}
	want := "=== message 1: MAIL FROM:<a@example.com> RCPT TO:<b@example.net>,<c@example.net> (TLS, AUTH u1) ===\n" +
		"Subject: one\n\nfirst\n=== end ===\n" +
		"=== message 2: MAIL FROM:<a@example.com> RCPT TO:<b@example.net>,<c@example.net> (TLS, AUTH u1) ===\n" +
		"Subject: two\n\nno final newline\n=== end ===\n"
	if stdout.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "smarthost: listening on 127.0.0.1:") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

// waitConfig waits for serve mode to write its config.
func waitConfig(t *testing.T, path string, done <-chan int) relayConfig {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before writing %s", code, path)
		default:
		}
		if _, err := os.Stat(path); err == nil {
			c, err := readConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("%s not written within 10s", path)
	return relayConfig{}
}

func TestServeUntilSignal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-tls", "none", "-user", "", "-hash-only", "-quiet"}, &stdout, &stderr)
	}()
	cancel() // whenever the signal comes, serve must stop
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after a signal without -count; stderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on a signal")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-tls", "ssl"}, `-tls "ssl"`},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-demo", "./relaymail", "-count", "1"}, "-demo takes only -v, not -count"},
		{[]string{"-mechanisms", "CRAM-MD5"}, "CRAM-MD5"},
		{[]string{"-count", "-1"}, "-count -1"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tt.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
