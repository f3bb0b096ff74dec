package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"relaymail/internal/smarthost"
)

const (
	demoUser     = "demo"
	demoPassword = "demo-password"
	// binaryTimeout bounds the run of the binary under demonstration.
	binaryTimeout = 60 * time.Second
	// arrivalTimeout bounds the wait for the message once the binary
	// succeeded; after a failure only failedArrival is spent.
	arrivalTimeout = 10 * time.Second
	failedArrival  = 2 * time.Second
)

// demoMessage is what a script would pipe into sendmail -t: LF line
// endings, recipients only in the header, a Bcc, an RFC 2047 subject, a
// UTF-8 body, a line holding a lone dot (which -i keeps), and no Date or
// Message-ID, so that relaymail's header completion shows.
const demoMessage = `From: Demo Sender <demo-sender@relaymail.test>
To: Alice Example <alice@example.net>, bob@example.net
Cc: Carol <carol@example.org>
Bcc: dave@example.org
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_from_the_relaymail_demo_=E2=9C=89?=
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Hello from make demo.

This body is UTF-8: Grüße, café, 日本語, ✉.
The message had no Date or Message-ID header; relaymail adds them.
The Bcc header must not reach the smarthost, but dave@example.org must
still be a recipient in the envelope.
The next line is a lone dot, which ends nothing when sendmail runs with -i:
.
End of the demo message.
`

// Recipients the envelope must hold after -t.
var (
	demoVisible = []string{"alice@example.net", "bob@example.net", "carol@example.org"}
	demoBcc     = "dave@example.org"
)

// runDemo is make demo: see the package doc.
func runDemo(ctx context.Context, binary string, verbose bool, stdout, stderr io.Writer) int {
	opts := smarthost.Options{Users: map[string]string{demoUser: demoPassword}}
	if verbose {
		opts.Logf = stderrLogf(stderr)
	}
	srv, err := smarthost.Start(opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer srv.Close()
	dir, err := os.MkdirTemp("", "relaymail-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "smarthost: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "relaymail.conf")
	if err := srv.WriteConfig(conf, ""); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	confText, err := os.ReadFile(conf)
	if err != nil {
		fmt.Fprintf(stderr, "smarthost: %v\n", err)
		return 1
	}

	fmt.Fprintf(stdout, "A throwaway smarthost listens on %s (STARTTLS, AUTH PLAIN and LOGIN, user %q).\n", srv.Addr(), demoUser)
	fmt.Fprintf(stdout, "\nrelaymail config %s:\n\n%s\n", conf, indent(string(confText)))
	args := []string{"-C", conf, "-t", "-i"}
	fmt.Fprintf(stdout, "$ %s %s <<'EOF'\n%sEOF\n\n", binary, strings.Join(args, " "), demoMessage)

	code, out, errOut, err := runBinary(ctx, binary, args, demoMessage)
	if err != nil {
		fmt.Fprintf(stdout, "cannot run %s: %v\n", binary, err)
		return 1
	}
	fmt.Fprintf(stdout, "exit code: %d\n", code)
	if len(out) > 0 {
		fmt.Fprintf(stdout, "stdout:\n%s", indent(out))
	}
	if len(errOut) > 0 {
		fmt.Fprintf(stdout, "stderr:\n%s", indent(errOut))
	} else {
		fmt.Fprintln(stdout, "stderr: (empty)")
	}

	wait := arrivalTimeout
	if code != 0 {
		wait = failedArrival
	}
	m, err := srv.WaitMessage(0, wait)
	if err != nil {
		fmt.Fprintf(stdout, "\nNothing arrived at the smarthost within %v.\n", wait)
		return 1
	}
	fmt.Fprintln(stdout, "\nThe smarthost received:")
	fmt.Fprintln(stdout)
	printMessage(stdout, 1, m, false)
	fmt.Fprintln(stdout)
	for _, c := range checks(m) {
		fmt.Fprintf(stdout, "%-34s %s\n", c[0]+":", c[1])
	}
	if n := len(srv.Messages()); n > 1 {
		fmt.Fprintf(stdout, "\n%d messages arrived, want 1.\n", n)
		return 1
	}
	if code != 0 {
		return 1
	}
	return 0
}

// runBinary runs binary with args and stdin, and returns its exit code and
// output. err is set only if it could not be run at all.
func runBinary(ctx context.Context, binary string, args []string, stdin string) (code int, stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, binaryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code, err = exitErr.ExitCode(), nil
		if ctx.Err() != nil {
			fmt.Fprintf(&errb, "(killed: %v)\n", ctx.Err())
		}
	default:
		return 0, "", "", err
	}
	return code, outb.String(), errb.String(), nil
}

// checks lists what the demo shows about the message that arrived.
func checks(m smarthost.Message) [][2]string {
	header := headerFields(m.Data)
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	visible := true
	for _, r := range demoVisible {
		visible = visible && slices.Contains(m.Rcpts, r)
	}
	subject := "(none)"
	if s := header["subject"]; s != "" {
		if dec, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
			subject = dec
		} else {
			subject = s
		}
	}
	auth := "none"
	if m.AuthUser != "" {
		auth = m.AuthUser
	}
	body := string(m.Data)
	return [][2]string{
		{"Bcc header removed", yes(!strings.Contains(strings.ToLower(headerBlock(m.Data)), "\nbcc:"))},
		{"Bcc recipient in envelope", yes(slices.Contains(m.Rcpts, demoBcc))},
		{"To and Cc recipients in envelope", yes(visible)},
		{"Date added", yes(header["date"] != "")},
		{"Message-ID added", yes(header["message-id"] != "")},
		{"lone dot line kept (-i)", yes(strings.Contains(body, "with -i:\r\n.\r\nEnd of the demo message."))},
		{"CRLF line endings only", yes(!strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n"))},
		{"Subject (decoded)", subject},
		{"TLS", yes(m.TLS)},
		{"AUTH", auth},
	}
}

// headerBlock returns the header of a message, starting with a newline so
// that every field follows one.
func headerBlock(data []byte) string {
	head, _, _ := strings.Cut(string(data), "\r\n\r\n")
	return "\n" + strings.ReplaceAll(head, "\r\n", "\n")
}

// headerFields maps lower-case field names to the unfolded value of their
// first occurrence.
func headerFields(data []byte) map[string]string {
	fields := map[string]string{}
	var name string
	for _, line := range strings.Split(headerBlock(data)[1:], "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				fields[name] += " " + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			name = ""
			continue
		}
		name = strings.ToLower(strings.TrimSpace(k))
		if _, seen := fields[name]; seen {
			name = "" // keep the first occurrence
			continue
		}
		fields[name] = strings.TrimSpace(v)
	}
	return fields
}

// indent prefixes every line of s but empty ones with four spaces and
// ends it with a newline.
func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line != "" {
			b.WriteString("    ")
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
