// Command sendmail is relaymail, a drop-in /usr/sbin/sendmail that hands
// every message to a smarthost over TLS with SMTP AUTH.
//
// main.go is the only file that reads the process's surroundings: argv, the
// environment, the user, the clock and stdin. It turns the Config into each
// part's options and wires the parts together.
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"relaymail/internal/address"
	"relaymail/internal/aliases"
	"relaymail/internal/intake"
	"relaymail/internal/maillog"
	"relaymail/internal/secret"
	"relaymail/internal/sysexits"
	"relaymail/internal/transcript"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

const defaultConfigPath = "/etc/sendmail.conf"

const usageLine = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-B 8BITMIME|7BIT] [-N dsn] [-R full|hdrs] [-V envid] [-C config] [-v] [--] recipient..."

func main() {
	env := os.Getenv
	if os.Getegid() != os.Getgid() || os.Geteuid() != os.Getuid() {
		// Set-gid (the packaged install): the caller's environment must not
		// steer a process that can read the relay password.
		// TODO(#7): the rest of the privilege model (-C, file modes).
		env = nil
	}
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr, env))
}

// process is what run learns about its surroundings; tests fill it in.
type process struct {
	name   string // the name we were run as, for messages
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	env    func(string) string // nil when running privileged
	now    func() time.Time
	user   *user.User
}

// run is the whole program; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	name := "sendmail"
	if len(args) > 0 {
		name = filepath.Base(args[0])
		args = args[1:]
	}
	p := &process{name: name, stdin: stdin, stdout: stdout, stderr: stderr, env: env, now: time.Now}
	err := p.main(args)
	if err == nil {
		return 0
	}
	p.report(err)
	return int(sysexits.CodeOf(err))
}

// report prints err as one line, and its hint when it has one.
func (p *process) report(err error) {
	// One line per problem: a config can have several, joined by errors.Join.
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(p.stderr, "%s: %s\n", p.name, oneLine(line))
		}
	}
	var re *relayError
	if errors.As(err, &re) && re.Hint != "" {
		fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, re.Hint)
	}
	if sysexits.CodeOf(err) == sysexits.Usage {
		fmt.Fprintf(p.stderr, "%s: %s\n", p.name, usageLine)
	}
}

func (p *process) main(args []string) error {
	inv, err := parseArgs(p.name, args)
	if err != nil {
		return err
	}
	switch inv.Mode {
	case ModeVersion:
		fmt.Fprintf(p.stdout, "relaymail %s\n", version)
		return nil
	case ModeHelp:
		fmt.Fprintln(p.stdout, usageLine)
		return nil
	case ModeIgnore:
		return nil
	case ModeList:
		return sysexits.Errorf(sysexits.Usage, "listing the queue (mailq, -bp) is not supported yet")
	case ModeSMTP:
		return sysexits.Errorf(sysexits.Usage, "SMTP on standard input (-bs) is not supported yet")
	case ModeQueue:
		return sysexits.Errorf(sysexits.Usage, "running the queue (-q) is not supported yet: relaymail has no queue yet and delivers at once")
	case ModeDaemon:
		return sysexits.Errorf(sysexits.Usage, "daemon mode (-bd) is not supported yet")
	}

	cfg, err := p.loadConfig(inv)
	if err != nil {
		return err
	}
	switch inv.Mode {
	case ModeAliases:
		table, err := aliasTable(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(p.stdout, "%s: %d aliases in %s\n", p.name, len(table), cfg.Path)
		return nil
	case ModeVerify:
		return p.verify(cfg, inv)
	}
	return p.send(cfg, inv)
}

func (p *process) loadConfig(inv Invocation) (*Config, error) {
	path := defaultConfigPath
	if p.env != nil && p.env("SENDMAIL_CONF") != "" {
		path = p.env("SENDMAIL_CONF")
	}
	if inv.ConfigPath != "" {
		path = inv.ConfigPath
	}
	return loadConfig(path, ConfigDefaults{Hostname: fqdn()})
}

// fqdn returns the machine's fully qualified name when /etc/hosts gives one
// for its host name (Debian writes "127.0.1.1 host.example.com host"), else
// the host name. No DNS: a sendmail call must not wait for a resolver.
func fqdn() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "localhost"
	}
	if strings.Contains(host, ".") {
		return host
	}
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return host
	}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		names := strings.Fields(line)
		if len(names) < 2 || !slices.Contains(names[1:], host) {
			continue
		}
		for _, n := range names[1:] {
			if strings.HasPrefix(n, host+".") {
				return n
			}
		}
	}
	return host
}

func aliasTable(cfg *Config) (aliases.Table, error) {
	t, err := aliases.New(cfg.Aliases, address.ParseList)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "%s: [aliases] %v", cfg.Path, err)
	}
	return t, nil
}

// recipients turns recipient words (command-line arguments or header
// addresses) into envelope addresses: parsed, checked, aliased, qualified.
type recipients struct {
	cfg   *Config
	table aliases.Table
	list  []string
	seen  map[string]bool
}

// isLocal reports whether addr is for this machine: a bare name or one at
// localhost or the configured hostname. Those go through the aliases and
// are then qualified with the domain, since the smarthost cannot deliver
// to root@localhost.
func (r *recipients) isLocal(addr string) (string, bool) {
	local, domain, found := strings.Cut(addr, "@")
	if !found {
		return addr, true
	}
	domain = strings.ToLower(domain)
	if domain == "localhost" || domain == "localhost.localdomain" || domain == strings.ToLower(r.cfg.Hostname) {
		return local, true
	}
	return "", false
}

// add adds each address in word. code is the exit code for bad syntax:
// usage for arguments, data error for headers.
func (r *recipients) add(word string, code sysexits.Code, origin string) error {
	addrs, err := address.ParseList(word)
	if err != nil {
		return sysexits.Errorf(code, "bad recipient %q in %s: %v", word, origin, err)
	}
	for _, a := range addrs {
		if err := address.Check(a); err != nil {
			return sysexits.Errorf(code, "bad recipient in %s: %v", origin, err)
		}
		targets := []string{a}
		if name, ok := r.isLocal(a); ok {
			expanded, err := r.table.Expand(name)
			if err != nil {
				return sysexits.Errorf(sysexits.Config, "%s: [aliases] %v", r.cfg.Path, err)
			}
			if expanded != nil {
				targets = expanded
			} else {
				targets = []string{name}
			}
		}
		for _, t := range targets {
			if name, ok := r.isLocal(t); ok {
				t = address.Qualify(name, r.cfg.Domain)
			}
			if err := address.Check(t); err != nil {
				return sysexits.Errorf(sysexits.Config, "%s: [aliases] %v", r.cfg.Path, err)
			}
			key := dedupKey(t)
			if !r.seen[key] {
				r.seen[key] = true
				r.list = append(r.list, t)
			}
		}
	}
	return nil
}

// dedupKey compares addresses as mail servers do: the domain ignores case,
// the local part may not (RFC 5321 2.4), so it is kept.
func dedupKey(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i] + strings.ToLower(addr[i:])
}

// sender returns the envelope sender: -f/-r, else the config's from, else
// the login name at the domain. "" is the null sender.
func (p *process) sender(cfg *Config, inv Invocation) (string, error) {
	if inv.SenderSet {
		addrs, err := address.ParseList(inv.Sender)
		if err != nil {
			return "", sysexits.Errorf(sysexits.Usage, "bad sender %q: %v", inv.Sender, err)
		}
		switch len(addrs) {
		case 0:
			return "", nil // -f '<>'
		case 1:
			if err := address.Check(addrs[0]); err != nil {
				return "", sysexits.Errorf(sysexits.Usage, "bad sender: %v", err)
			}
			return address.Qualify(addrs[0], cfg.Domain), nil
		default:
			return "", sysexits.Errorf(sysexits.Usage, "bad sender %q: more than one address", inv.Sender)
		}
	}
	if cfg.From != "" {
		return cfg.From, nil
	}
	u, err := p.currentUser()
	if err != nil {
		return "", err
	}
	return address.Qualify(u.Username, cfg.Domain), nil
}

func (p *process) currentUser() (*user.User, error) {
	if p.user != nil {
		return p.user, nil
	}
	u, err := user.Current()
	if err != nil {
		return nil, sysexits.Errorf(sysexits.OSErr, "no login name for user id %d: %v", os.Getuid(), err)
	}
	p.user = u
	return u, nil
}

// fromHeader is the From field added to a message that has none: the full
// name from -F or the password file, and the envelope sender.
func (p *process) fromHeader(cfg *Config, inv Invocation, sender string) string {
	name := inv.FullName
	if !inv.FullNameSet {
		if u, err := p.currentUser(); err == nil {
			name, _, _ = strings.Cut(u.Name, ",") // GECOS: "Full Name,room,phone"
		}
	}
	if sender == "" {
		sender = "MAILER-DAEMON@" + cfg.Domain
	}
	a := mail.Address{Name: name, Address: sender}
	return a.String()
}

func (p *process) verify(cfg *Config, inv Invocation) error {
	rs := &recipients{cfg: cfg, seen: map[string]bool{}}
	table, err := aliasTable(cfg)
	if err != nil {
		return err
	}
	rs.table = table
	for _, word := range inv.Recipients {
		before := len(rs.list)
		if err := rs.add(word, sysexits.Usage, "arguments"); err != nil {
			return err
		}
		for _, a := range rs.list[before:] {
			fmt.Fprintf(p.stdout, "%s -> <%s>: deliverable via %s\n", word, a, smarthostAddr(cfg))
		}
	}
	if len(inv.Recipients) == 0 {
		return sysexits.Errorf(sysexits.Usage, "-bv needs at least one address")
	}
	return nil
}

func smarthostAddr(cfg *Config) string {
	return net.JoinHostPort(cfg.Smarthost.Host, strconv.Itoa(cfg.Smarthost.Port))
}

// send is sendmail's default mode: read the message, relay it, report.
func (p *process) send(cfg *Config, inv Invocation) error {
	start := p.now()
	table, err := aliasTable(cfg)
	if err != nil {
		return err
	}
	rs := &recipients{cfg: cfg, table: table, seen: map[string]bool{}}
	for _, word := range inv.Recipients {
		if err := rs.add(word, sysexits.Usage, "arguments"); err != nil {
			return err
		}
	}
	from, err := p.sender(cfg, inv)
	if err != nil {
		return err
	}

	// TODO(#4): the spool replaces this temporary file; the message is then
	// durable before the relay is tried.
	f, err := os.CreateTemp("", "relaymail-*")
	if err != nil {
		return sysexits.Errorf(sysexits.CantCreat, "create temporary file: %v", err)
	}
	os.Remove(f.Name()) // anonymous: gone when we exit, however we exit
	defer f.Close()

	w := bufio.NewWriterSize(f, 64<<10)
	res, err := intake.Copy(w, p.stdin, intake.Options{
		IgnoreDots:        inv.IgnoreDots,
		ExtractRecipients: inv.ReadHeaders,
		Hostname:          cfg.Hostname,
		From:              p.fromHeader(cfg, inv, from),
		Now:               p.now,
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return sysexits.Errorf(sysexits.TempFail, "write temporary file: %v", err)
	}
	for _, a := range res.Recipients {
		if err := rs.add(a, sysexits.DataErr, "message header"); err != nil {
			return err
		}
	}
	if len(rs.list) == 0 {
		if inv.ReadHeaders {
			return sysexits.Errorf(sysexits.Usage, "no recipients: none on the command line and none in To, Cc or Bcc")
		}
		return sysexits.Errorf(sysexits.Usage, "no recipients: give them as arguments, or use -t to read To, Cc and Bcc")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return sysexits.Errorf(sysexits.IOErr, "rewind temporary file: %v", err)
	}

	env := envelope{
		From: from, Rcpts: rs.list, Body: inv.Body, EightBit: res.EightBit, Size: res.Size,
		Notify: inv.DSNNotify, Return: inv.DSNReturn, EnvID: inv.EnvID,
	}
	opts, err := p.relayOptions(cfg, inv)
	if err != nil {
		return err
	}
	results, rerr := relay(context.Background(), opts, env, bufio.NewReaderSize(f, 64<<10))

	log := maillog.New(maillog.Options{Syslog: true, Fallback: p.stderr, Echo: inv.Verbose > 0})
	defer log.Close()
	uid := os.Getuid()
	id := res.MessageID
	logResults(log, maillog.Entry{ID: id, UID: uid, From: from, Relay: opts.Addr, Delay: p.now().Sub(start)}, results)

	quiet := inv.ErrorMode == 'q'
	if rerr != nil {
		var re *relayError
		if errors.As(rerr, &re) && re.Perm {
			return sysexits.Errorf(sysexits.Unavailable, "%w (message not sent)", rerr)
		}
		return sysexits.Errorf(sysexits.TempFail, "%w (message not sent, try again later)", rerr)
	}
	var sent, perm, temp int
	for _, r := range results {
		switch {
		case r.Sent():
			sent++
		case r.Permanent():
			perm++
			if !quiet {
				fmt.Fprintf(p.stderr, "%s: %s refused <%s>: %s\n", p.name, opts.Addr, r.Rcpt, r.Reply())
			}
		default:
			temp++
			if !quiet {
				fmt.Fprintf(p.stderr, "%s: %s deferred <%s>: %s\n", p.name, opts.Addr, r.Rcpt, r.Reply())
			}
		}
	}
	switch {
	case temp > 0:
		// TODO(#4): queue the message and exit 0 instead.
		return sysexits.Errorf(sysexits.TempFail, "%d of %d recipients not delivered (temporary failure), %d delivered; the message was not kept", temp+perm, len(results), sent)
	case perm == len(results):
		return sysexits.Errorf(sysexits.NoUser, "all %d recipients refused by %s", perm, opts.Addr)
	case perm > 0:
		return sysexits.Errorf(sysexits.NoUser, "%d of %d recipients refused by %s, %d delivered", perm, len(results), opts.Addr, sent)
	}
	return nil
}

// logResults writes one log line per outcome: recipients that share a
// status and reply share a line.
func logResults(log *maillog.Logger, base maillog.Entry, results []result) {
	type key struct{ status, reply string }
	var order []key
	groups := map[key][]string{}
	for _, r := range results {
		status := "deferred"
		if r.Sent() {
			status = "sent"
		} else if r.Permanent() {
			status = "bounced"
		}
		k := key{status, r.Reply()}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r.Rcpt)
	}
	for _, k := range order {
		e := base
		e.To, e.Status, e.Reply = groups[k], k.status, k.reply
		log.Log(e)
	}
}

// relayOptions turns the config's [smarthost] section into relay settings.
func (p *process) relayOptions(cfg *Config, inv Invocation) (relayOptions, error) {
	sh := cfg.Smarthost
	o := relayOptions{
		Addr:        smarthostAddr(cfg),
		TLS:         sh.TLS,
		ServerName:  sh.Host,
		Auth:        sh.Auth,
		Username:    sh.Username,
		Hostname:    cfg.Hostname,
		Timeout:     time.Duration(sh.Timeout),
		DataTimeout: 10 * time.Minute,
		Secret: secret.Source{
			Value:   string(sh.Password),
			File:    sh.PasswordFile,
			Command: sh.PasswordCommand,
			Env:     p.commandEnv(),
		},
	}
	if sh.TLSServerName != "" {
		o.ServerName = sh.TLSServerName
	}
	if sh.CAFile != "" {
		pem, err := os.ReadFile(sh.CAFile)
		if err != nil {
			return o, sysexits.Errorf(sysexits.Config, "%s: [smarthost] ca_file: %v", cfg.Path, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return o, sysexits.Errorf(sysexits.Config, "%s: [smarthost] ca_file %s holds no PEM certificate", cfg.Path, sh.CAFile)
		}
		o.RootCAs = pool
	}
	if inv.Verbose > 0 {
		o.Debug = transcript.New(p.stderr)
	}
	return o, nil
}

// commandEnv is the environment of password_command: PATH and HOME only.
func (p *process) commandEnv() []string {
	path := "/usr/local/bin:/usr/bin:/bin"
	home := "/"
	if p.env != nil {
		if v := p.env("PATH"); v != "" {
			path = v
		}
		if v := p.env("HOME"); v != "" {
			home = v
		}
	}
	return []string{"PATH=" + path, "HOME=" + home}
}
