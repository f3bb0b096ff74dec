// Command smarthost runs the test smarthost of relaymail/internal/smarthost
// on its own, in one of two modes.
//
// Serve (the default, or -listen-only) listens on 127.0.0.1 on a free port
// and prints every message it accepts until it has -count of them, or until
// SIGINT or SIGTERM without -count:
//
//	go run ./test/smarthost -conf /tmp/r.conf -count 1
//
// -conf writes a relaymail config for the server (its CA next to it as
// PATH.ca.pem), -ca writes the CA alone. A line on stderr says where the
// server listens, once the config is written.
//
// Demo (-demo BINARY) is make demo: it starts a STARTTLS server with AUTH
// PLAIN and LOGIN, writes a config into a temporary directory, pipes a
// sample message into "BINARY -C config -t -i" and shows the command, its
// exit code and stderr, what the smarthost received, and a short check
// list.
//
// # Output
//
// Each message is printed as
//
//	=== message N: MAIL FROM:<a@example.com> RCPT TO:<b@example.net>,<c@example.net> (TLS, AUTH demo) ===
//	the message, CRLF shown as newlines
//	=== end ===
//
// With -hash-only the message is replaced by its size and SHA-256; with
// -quiet only the first line is printed. Diagnostics go to stderr.
//
// Exit status: 0 when done (or interrupted without -count), 1 on failure
// (the demo's binary failed or nothing arrived), 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"relaymail/internal/smarthost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// settings are the parsed command line.
type settings struct {
	demo       string
	listenOnly bool
	tls        string
	user, pass string
	mechanisms string
	authReq    bool
	conf, ca   string
	count      int
	hashOnly   bool
	quiet      bool
	maxSize    int64
	dsn        bool
	smtputf8   bool
	verbose    bool
}

// run is the whole command; ctx ends on SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var st settings
	fs := flag.NewFlagSet("smarthost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&st.demo, "demo", "", "run `binary` -C config -t -i with a sample message and show what arrives (make demo)")
	fs.BoolVar(&st.listenOnly, "listen-only", false, "serve and print messages (the default without -demo)")
	fs.StringVar(&st.tls, "tls", "starttls", "TLS `mode`: starttls, tls (implicit) or none")
	fs.StringVar(&st.user, "user", "demo", "AUTH user `name`; empty: no AUTH")
	fs.StringVar(&st.pass, "pass", "demo-password", "AUTH `password`")
	fs.StringVar(&st.mechanisms, "mechanisms", "", "comma-separated SASL `list` to offer (default PLAIN,LOGIN)")
	fs.BoolVar(&st.authReq, "auth-required", false, "refuse MAIL before AUTH")
	fs.StringVar(&st.conf, "conf", "", "write a relaymail config for the server to `path` (CA in path.ca.pem)")
	fs.StringVar(&st.ca, "ca", "", "write the CA certificate to `path`")
	fs.IntVar(&st.count, "count", 0, "exit after `n` messages (0: serve until SIGINT or SIGTERM)")
	fs.BoolVar(&st.hashOnly, "hash-only", false, "keep only the size and SHA-256 of each message")
	fs.BoolVar(&st.quiet, "quiet", false, "print only the === line of each message")
	fs.Int64Var(&st.maxSize, "max-size", 0, "advertise and enforce SIZE `bytes` (0: no limit)")
	fs.BoolVar(&st.dsn, "dsn", false, "advertise DSN")
	fs.BoolVar(&st.smtputf8, "smtputf8", false, "advertise SMTPUTF8")
	fs.BoolVar(&st.verbose, "v", false, "log every SMTP event to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "smarthost: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if st.demo != "" {
		var other []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "demo" && f.Name != "v" {
				other = append(other, "-"+f.Name)
			}
		})
		if len(other) > 0 {
			fmt.Fprintf(stderr, "smarthost: -demo takes only -v, not %s\n", strings.Join(other, " "))
			return 2
		}
		return runDemo(ctx, st.demo, st.verbose, stdout, stderr)
	}
	opts, err := st.options(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "smarthost: %v\n", err)
		return 2
	}
	return serve(ctx, st, opts, stdout, stderr)
}

// options turns the serve-mode flags into smarthost.Options.
func (st settings) options(stderr io.Writer) (smarthost.Options, error) {
	var opts smarthost.Options
	switch st.tls {
	case "starttls":
		opts.TLS = smarthost.StartTLS
	case "tls":
		opts.TLS = smarthost.ImplicitTLS
	case "none":
		opts.TLS = smarthost.NoTLS
	default:
		return opts, fmt.Errorf("-tls %q: want starttls, tls or none", st.tls)
	}
	if st.count < 0 {
		return opts, fmt.Errorf("-count %d is negative", st.count)
	}
	if st.user != "" {
		opts.Users = map[string]string{st.user: st.pass}
	}
	if st.mechanisms != "" {
		opts.Mechanisms = strings.Split(st.mechanisms, ",")
	}
	opts.AuthRequired = st.authReq
	opts.HashOnly = st.hashOnly
	opts.MaxMessageBytes = st.maxSize
	opts.DSN = st.dsn
	opts.SMTPUTF8 = st.smtputf8
	if st.verbose {
		opts.Logf = stderrLogf(stderr)
	}
	return opts, nil
}

func stderrLogf(w io.Writer) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// serve runs the server until -count messages have arrived or ctx ends.
func serve(ctx context.Context, st settings, opts smarthost.Options, stdout, stderr io.Writer) int {
	srv, err := smarthost.Start(opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer srv.Close()
	if st.ca != "" {
		if err := srv.WriteCA(st.ca); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if st.conf != "" {
		if err := srv.WriteConfig(st.conf, ""); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	auth := "no AUTH"
	if st.user != "" {
		auth = fmt.Sprintf("AUTH as %s", st.user)
	}
	fmt.Fprintf(stderr, "smarthost: listening on %s (%s, %s)\n", srv.Addr(), opts.TLS, auth)

	// Close the server on a signal, which wakes WaitMessage.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-stop:
		}
	}()

	for i := 0; st.count == 0 || i < st.count; {
		m, err := srv.WaitMessage(i, time.Hour)
		if err != nil {
			if ctx.Err() == nil {
				continue // an hour without mail
			}
			if st.count > 0 {
				fmt.Fprintf(stderr, "smarthost: interrupted after %d of %d messages\n", i, st.count)
				return 1
			}
			return 0
		}
		i++
		printMessage(stdout, i, m, st.quiet)
	}
	waitForQuit(srv, 2*time.Second)
	return 0
}

// waitForQuit gives the clients of the messages received a moment to say
// QUIT before the server closes under them.
func waitForQuit(srv *smarthost.Server, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		sessions := srv.Sessions()
		done := true
		for _, m := range srv.Messages() {
			ev := sessions[m.Session].Events
			if ev[len(ev)-1] != "QUIT" {
				done = false
				break
			}
		}
		if done {
			return
		}
	}
}

// printMessage prints message number n in the format of the package doc.
func printMessage(w io.Writer, n int, m smarthost.Message, quiet bool) {
	rcpts := make([]string, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rcpts[i] = "<" + r + ">"
	}
	tls, auth := "no TLS", "no AUTH"
	if m.TLS {
		tls = "TLS"
	}
	if m.AuthUser != "" {
		auth = "AUTH " + m.AuthUser
	}
	fmt.Fprintf(w, "=== message %d: MAIL FROM:<%s> RCPT TO:%s (%s, %s) ===\n", n, m.From, strings.Join(rcpts, ","), tls, auth)
	if quiet {
		return
	}
	if m.Data == nil {
		fmt.Fprintf(w, "(%d bytes, SHA-256 %x; -hash-only keeps no content)\n", m.Size, m.SHA256)
	} else {
		text := bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n"))
		w.Write(text)
		if len(text) > 0 && text[len(text)-1] != '\n' {
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "=== end ===")
}
