// Command sendmail is relaymail, a drop-in /usr/sbin/sendmail that hands
// every message to a smarthost over TLS with SMTP AUTH.
//
// main.go is the only file that reads the process's surroundings: argv, the
// environment, the user, the clock and stdin. It turns the Config into each
// part's options and wires the parts together.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"relaymail/internal/address"
	"relaymail/internal/aliases"
	"relaymail/internal/hint"
	"relaymail/internal/intake"
	"relaymail/internal/limits"
	"relaymail/internal/maillog"
	"relaymail/internal/mailx"
	"relaymail/internal/privilege"
	"relaymail/internal/queue"
	"relaymail/internal/recipient"
	"relaymail/internal/secret"
	"relaymail/internal/smtpd"
	"relaymail/internal/spool"
	"relaymail/internal/sysexits"
	"relaymail/internal/transcript"
	"relaymail/internal/trust"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// defaultConfigPath is the config read without -C. Builds may set it
// (-ldflags "-X main.defaultConfigPath=..."): the setgid tests do, and a
// packager may.
var defaultConfigPath = "/etc/sendmail.conf"

const usageLine = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-B 8BITMIME|7BIT] [-N dsn] [-R full|hdrs] [-V envid] [-C config] [-v] [--] recipient..."

func main() {
	env := os.Getenv
	if currentPrivileges().Raised() {
		// Set-gid (the packaged install): the caller must not steer a
		// process that can read the relay password (see package privilege).
		syscall.Umask(0o077)
		os.Clearenv()
		env = nil
	}
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr, env))
}

// currentPrivileges reads the ids the process runs with.
func currentPrivileges() privilege.Privileges {
	groups, _ := os.Getgroups()
	return privilege.Privileges{UID: os.Getuid(), GID: os.Getgid(), EUID: os.Geteuid(), EGID: os.Getegid(), Groups: groups}
}

// process is what run learns about its surroundings; tests fill it in.
type process struct {
	name   string // the name we were run as, for messages
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	env    func(string) string // nil when running privileged
	priv   privilege.Privileges
	now    func() time.Time
	user   *user.User
	// listening is set in sendmail -bd: the senders are the clients', not
	// root's, and [rewrite] holds for them as for any user.
	listening bool
	// aliases are those of cfg, loaded once (aliasTable).
	aliases struct {
		cfg   *Config
		table aliases.Table
		err   error
	}
}

// run is the whole program; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) (code int) {
	name := "sendmail"
	if len(args) > 0 {
		name = filepath.Base(args[0])
		args = args[1:]
	}
	defer func() {
		// A bug must not print a stack trace at a cron job or a web
		// page: one line, and EX_SOFTWARE. A message already queued
		// stays queued; one that was not, the caller now knows about.
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "%s: internal error: %s (please report it)\n", name, oneLine(fmt.Sprint(r)))
			code = int(sysexits.Software)
		}
	}()
	p := &process{name: name, stdin: stdin, stdout: stdout, stderr: stderr, env: env, priv: currentPrivileges(), now: time.Now}
	err := p.main(args)
	if err == nil {
		return 0
	}
	p.report(err)
	return int(sysexits.CodeOf(err))
}

// report prints err as one line, and its hint when it has one.
func (p *process) report(err error) {
	var qe *quietError
	if errors.As(err, &qe) {
		return
	}
	// One line per problem: a config can have several, joined by errors.Join.
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(p.stderr, "%s: %s\n", p.name, oneLine(line))
		}
	}
	var re *relayError
	var he *hintError
	switch {
	case errors.As(err, &re) && re.Hint != "":
		fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, re.Hint)
	case errors.As(err, &he):
		fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, he.hint)
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
	}

	cfg, err := p.loadConfig(inv)
	if err != nil {
		return err
	}
	if w := exposedSecret(cfg); w != "" {
		p.warn(inv, w, "make it readable by root and the relaymail group only (chmod 0640; the package installs /etc/sendmail.conf so), or keep the password in password_file (mode 0640) or password_command")
	}
	switch inv.Mode {
	case ModeAliases:
		table, err := p.aliasTable(cfg)
		if err != nil {
			return err
		}
		where := cfg.Path
		if cfg.AliasesFile != "" {
			where += " and " + cfg.AliasesFile
		}
		fmt.Fprintf(p.stdout, "%s: %d aliases in %s\n", p.name, len(table), where)
		return nil
	case ModeVerify:
		return p.verify(cfg, inv)
	case ModeList:
		return p.listQueue(cfg, inv)
	case ModeQueue:
		if !p.priv.Admin() {
			// A queue run delivers everyone's mail; -v would show
			// everyone's envelopes and the relay's replies to a user
			// whose mailq shows only its own.
			inv.Verbose = 0
		}
		return p.runQueue(cfg, inv)
	case ModeDelete, ModeRequeue:
		return p.adminQueue(cfg, inv)
	case ModeCheck:
		return p.checkSetup(cfg, inv)
	case ModeSMTP:
		return p.serveSMTP(cfg, inv)
	case ModeMail:
		return p.sendMail(cfg, inv)
	case ModeDaemon:
		return p.daemon(cfg, inv)
	}
	return p.send(cfg, inv)
}

// daemon is sendmail -bd: the SMTP listener of [listen] for programs that
// send to localhost:25. Each session is -bs's, on a connection: a message
// is committed to the spool before its 250. Clients from other than
// loopback are refused. The process also runs the queue, after each
// session that committed mail and every -q interval (5m by default), and
// stops on SIGTERM or SIGINT once the sessions in progress are over.
func (p *process) daemon(cfg *Config, inv Invocation) error {
	if cfg.Queue.Dir == "" {
		return sysexits.Errorf(sysexits.Config, "%s: sendmail -bd needs the spool ([queue] dir), where each message is committed before its reply", cfg.Path)
	}
	if _, err := p.recipients(cfg); err != nil {
		return err
	}
	sp, err := p.openSpool(cfg)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.Listen.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Listen.TLSCertFile, cfg.Listen.TLSKeyFile)
		if err != nil {
			return sysexits.Errorf(sysexits.Config, "%s: [listen] certificate: %v", cfg.Path, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	users, err := loadListenUsers(cfg)
	if err != nil {
		return err
	}
	p.listening = true
	log := p.logger(inv)
	defer log.Close()
	log.EchoWithoutSyslog()
	listeners, err := smtpd.Listeners(cfg.Listen.Addresses)
	if err != nil {
		return err
	}
	for _, l := range listeners {
		log.Log(maillog.Entry{UID: -1, Status: "listening", Reply: "SMTP on " + l.Addr().String()})
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The queue: one goroutine runs it, woken by sessions that committed
	// mail, and every interval.
	wake := make(chan struct{}, 1)
	interval := inv.QueueInterval
	if interval == 0 {
		interval = 5 * time.Minute
	}
	known := map[string]relayOptions{}
	if opts, err := p.relayOptions(cfg, inv, &cfg.Smarthost); err == nil {
		known[""] = opts
	} else {
		p.report(err)
	}
	runner := p.runner(cfg, sp, inv, false, log, known)
	queueDone := make(chan struct{})
	go func() {
		defer close(queueDone)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			runner.Drain(ctx, cfg.Smarthost.MaxConnections, time.Duration(cfg.Queue.Linger))
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-tick.C:
			}
		}
	}()

	how := "SMTP (-bd)"
	opts := p.smtpOptions(cfg, inv, sp, log, how)
	remote := opts
	remote.LoginRequired = true
	remote.Login = func(user, password string) error {
		hash, ok := users[user]
		if !ok {
			hash = users[""] // the same work for a user that does not exist
		}
		if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
			log.Log(maillog.Entry{UID: -1, Status: "refused", Reply: fmt.Sprintf("AUTH for %q failed", user)})
			return errors.New("authentication failed")
		}
		return nil
	}
	lo := smtpd.ListenOptions{
		Local: opts, Remote: &remote, TLS: tlsConfig,
		MaxConnections: cfg.Listen.MaxConnections, Hostname: cfg.Hostname,
		Log: func(status, text string) { log.Log(maillog.Entry{UID: -1, Status: status, Reply: text}) },
		Committed: func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		},
	}
	if users == nil {
		lo.Remote = nil // other machines are refused
	}
	context.AfterFunc(ctx, stop) // a second signal kills, as it would without us
	smtpd.Listen(ctx, listeners, lo)
	<-queueDone
	return nil
}

// loadListenUsers reads [listen] users_file: "user:bcrypt-hash" lines,
// "#" comments. It returns nil without the file, and always holds a dummy
// hash under "" for unknown users.
func loadListenUsers(cfg *Config) (map[string][]byte, error) {
	if cfg.Listen.UsersFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.Listen.UsersFile)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "%s: [listen] users_file: %v", cfg.Path, err)
	}
	users := map[string][]byte{}
	cost := bcrypt.MinCost
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		c, err := bcrypt.Cost([]byte(hash))
		if !ok || user == "" || err != nil {
			return nil, sysexits.Errorf(sysexits.Config, "%s:%d: not user:bcrypt-hash (make one with htpasswd -nB user)", cfg.Listen.UsersFile, n+1)
		}
		users[user], cost = []byte(hash), max(cost, c)
	}
	// An unknown user costs the same work as a known one: no telling which
	// exist by the time of the refusal.
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, err
	}
	users[""] = dummy
	return users, nil
}

// sendMail is the mail personality (internal/mailx): it builds a MIME
// message of stdin and the attachments and sends it as sendmail would,
// to the To, Cc and Bcc recipients, from -r when given.
func (p *process) sendMail(cfg *Config, inv Invocation) error {
	m := *inv.Mail
	// The caller's files, opened with the caller's rights: the raised
	// group may read what the caller may not (the config).
	var files []mailx.Attachment
	var headers []string
	err := p.priv.AsCaller(func() error {
		var err error
		files, headers, err = m.Open(func(name string) (*os.File, error) {
			return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		})
		return err
	})
	if err != nil {
		return sysexits.Errorf(sysexits.NoInput, "%v", err)
	}
	body := bufio.NewReader(p.stdin)
	if m.SkipEmpty && len(files) == 0 {
		empty, err := mailx.Empty(body)
		if err != nil {
			return sysexits.Errorf(sysexits.IOErr, "read the text: %v", err)
		}
		if empty {
			if inv.Verbose > 0 {
				fmt.Fprintf(p.stderr, "%s: empty body and nothing attached: nothing sent (-E)\n", p.name)
			}
			return nil
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(mailx.Write(pw, m, headers, body, files)) }()
	defer pr.Close()
	inv.Mode, inv.Recipients, inv.IgnoreDots = ModeSend, m.Recipients(), true
	if m.From != "" {
		inv.Sender, inv.SenderSet = m.From, true
	}
	stdin := p.stdin
	p.stdin = pr
	defer func() { p.stdin = stdin }()
	return p.send(cfg, inv)
}

// exposedSecret says which file holding the relay's password every user
// can read, or "".
func exposedSecret(cfg *Config) string {
	if cfg.Mode&0o002 != 0 {
		return fmt.Sprintf("%s can be changed by every user (mode %04o), and with it where mail and the password go", cfg.Path, cfg.Mode)
	}
	hosts := []*Smarthost{&cfg.Smarthost}
	for i := range cfg.Routes {
		hosts = append(hosts, &cfg.Routes[i].Smarthost)
	}
	for _, sh := range hosts {
		if sh.Password != "" && cfg.Mode&0o004 != 0 {
			return fmt.Sprintf("%s holds the relay password of %s and every user can read it (mode %04o)", cfg.Path, cfg.Label(sh), cfg.Mode)
		}
		for _, f := range []struct{ key, path string }{{"password_file", sh.PasswordFile}, {"tls_key_file", sh.TLSKeyFile}} {
			if f.path == "" {
				continue
			}
			if fi, err := os.Stat(f.path); err == nil && fi.Mode().Perm()&0o006 != 0 {
				return fmt.Sprintf("%s %s can be read or changed by every user (mode %04o)", f.key, f.path, fi.Mode().Perm())
			}
		}
	}
	return ""
}

// warn tells of a problem with the setup that does not stop us: in the
// log, and on stderr when a person is likely to read it (the modes that
// do not send, and -v); a program that pipes mail in gets no extra stderr.
func (p *process) warn(inv Invocation, text, hint string) {
	log := maillog.New(maillog.Options{Syslog: true})
	log.Warn(text)
	log.Close()
	switch inv.Mode {
	case ModeSend, ModeSMTP:
		if inv.Verbose == 0 {
			return
		}
	}
	fmt.Fprintf(p.stderr, "%s: warning: %s\n%s: hint: %s\n", p.name, oneLine(text), p.name, hint)
}

func (p *process) loadConfig(inv Invocation) (*Config, error) {
	path := defaultConfigPath
	if p.env != nil && p.env("SENDMAIL_CONF") != "" {
		path = p.env("SENDMAIL_CONF")
	}
	if inv.ConfigPath != "" && inv.ConfigPath != path {
		path = inv.ConfigPath
		if p.priv.Raised() && p.priv.UID != 0 {
			// A config of the caller's choosing is read, and used, with
			// the caller's own rights: dropped for good, so a background
			// child runs the setgid binary afresh and drops again.
			priv, err := p.priv.Drop()
			if err != nil {
				return nil, sysexits.Errorf(sysexits.OSErr, "-C %s: drop the set-group-id privilege: %v", path, err)
			}
			p.priv = priv
		}
	}
	return loadConfig(path, ConfigDefaults{Hostname: fqdn(), Env: p.env})
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

func (p *process) aliasTable(cfg *Config) (aliases.Table, error) {
	// Once per process: -bs asks for every RCPT.
	if p.aliases.cfg != cfg {
		p.aliases.cfg = cfg
		p.aliases.table, p.aliases.err = loadAliases(cfg)
	}
	return p.aliases.table, p.aliases.err
}

// loadAliases builds the aliases of the config's [aliases] table and
// aliases_file.
func loadAliases(cfg *Config) (aliases.Table, error) {
	t, err := aliases.New(cfg.Aliases, address.ParseList)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "%s: [aliases] %v", cfg.Path, err)
	}
	if cfg.AliasesFile != "" {
		f, err := os.Open(cfg.AliasesFile)
		if err != nil {
			return nil, sysexits.Errorf(sysexits.Config, "%s: aliases_file: %v", cfg.Path, err)
		}
		defer f.Close()
		entries, errs := aliases.ParseFile(cfg.AliasesFile, f, address.ParseList)
		if len(errs) > 0 {
			// A wrong alias could send root's mail to the wrong place:
			// nothing goes until the file is right.
			return nil, sysexits.Wrap(sysexits.Config, errors.Join(errs...))
		}
		t.Add(entries)
	}
	// A target at a local address is the local name: "root: admin@localhost"
	// goes on through admin's alias, as "root: admin" does.
	rl := recipient.New(recipient.Options{Hostname: cfg.Hostname, LocalDomains: cfg.LocalDomains})
	for name, targets := range t {
		for i, target := range targets {
			if at := strings.LastIndexByte(target, '@'); at > 0 && rl.IsLocal(target) {
				targets[i] = target[:at]
			}
		}
		t[name] = targets
	}
	return t, nil
}

// recipients returns an empty recipient list for the config.
func (p *process) recipients(cfg *Config) (*recipient.List, error) {
	table, err := p.aliasTable(cfg)
	if err != nil {
		return nil, err
	}
	return recipient.New(recipient.Options{Hostname: cfg.Hostname, LocalDomains: cfg.LocalDomains, Domain: cfg.Domain,
		Aliases: table, DefaultRecipient: cfg.DefaultRecipient}), nil
}

// addRecipient adds word to rs. code is the exit code for bad syntax:
// usage for arguments, data error for headers.
func addRecipient(cfg *Config, rs *recipient.List, word string, code sysexits.Code, origin string) error {
	err := rs.Add(word)
	var ae *recipient.AliasError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return sysexits.Errorf(sysexits.Config, "%s: [aliases] %v", cfg.Path, err)
	}
	return sysexits.Errorf(code, "bad recipient %q in %s: %v", word, origin, err)
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
			// -f '<>', for a bounce or an auto-reply: root's stays, but a
			// user's null sender passes [rewrite] only when allow_from
			// lists "<>", else it would slip by sender and allow_from.
			if p.trusted() || cfg.Rewrite.Sender == "" && (cfg.Rewrite.AllowFrom == nil || slices.Contains(cfg.Rewrite.AllowFrom, "<>")) {
				return "", nil
			}
			if cfg.Rewrite.Sender != "" {
				return cfg.Rewrite.Sender, nil
			}
			return p.notAllowed(cfg, inv, "<>")
		case 1:
			if err := address.Check(addrs[0]); err != nil {
				return "", sysexits.Errorf(sysexits.Usage, "bad sender: %v", err)
			}
			s := address.Qualify(addrs[0], cfg.Domain)
			if p.senderAllowed(cfg, s) {
				return p.forcedSender(cfg, s), nil
			}
			return p.notAllowed(cfg, inv, s)
		default:
			return "", sysexits.Errorf(sysexits.Usage, "bad sender %q: more than one address", inv.Sender)
		}
	}
	s, err := p.usualSender(cfg)
	if err != nil {
		return "", err
	}
	return p.forcedSender(cfg, s), nil
}

// notAllowed is the sender of a user whose -f (s) [rewrite] allow_from
// does not let through: the usual one, as the log says.
func (p *process) notAllowed(cfg *Config, inv Invocation, s string) (string, error) {
	if p.listening {
		// A listener's client has no usual sender to fall back on.
		return "", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("sender <%s> is not allowed here ([rewrite] allow_from)", s)}
	}
	usual, err := p.usualSender(cfg)
	if err != nil {
		return "", err
	}
	log := maillog.New(maillog.Options{Syslog: true, Fallback: p.stderr, Echo: inv.Verbose > 0})
	log.Warn(fmt.Sprintf("-f %s is not in [rewrite] allow_from for uid %d: sending as %s", s, p.priv.UID, usual))
	log.Close()
	return p.forcedSender(cfg, usual), nil
}

// usualSender is the envelope sender without -f: the user's address from
// [rewrite.users], else the config's from, else login@domain.
func (p *process) usualSender(cfg *Config) (string, error) {
	u, err := p.currentUser()
	if a := cfg.Rewrite.Users[p.loginName(u, err)]; a != "" {
		return a, nil
	}
	if cfg.From != "" {
		return cfg.From, nil
	}
	if err != nil {
		return "", err
	}
	return address.Qualify(u.Username, cfg.Domain), nil
}

// loginName is the user's login name, or "" when unknown.
func (p *process) loginName(u *user.User, err error) string {
	if err != nil || u == nil {
		return ""
	}
	return u.Username
}

// forcedSender applies [rewrite] sender.
func (p *process) forcedSender(cfg *Config, s string) string {
	if cfg.Rewrite.Sender != "" {
		return cfg.Rewrite.Sender
	}
	return s
}

// senderAllowed reports whether this user may give s with -f: root always,
// others when [rewrite] allow_from is unset or matches.
func (p *process) senderAllowed(cfg *Config, s string) bool {
	if cfg.Rewrite.AllowFrom == nil || p.trusted() {
		return true
	}
	for _, pat := range cfg.Rewrite.AllowFrom {
		if globMatch(pat, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// trusted reports a sender [rewrite] allow_from does not hold: root on
// the command line, never the clients of the listener.
func (p *process) trusted() bool { return p.priv.UID == 0 && !p.listening }

// qualifyDomain is intake's QualifyDomain: the domain with [rewrite]
// qualify_headers, else "".
func qualifyDomain(cfg *Config) string {
	if cfg.Rewrite.QualifyHeaders {
		return cfg.Domain
	}
	return ""
}

// fromRewrite is intake's RewriteFrom for the config: [rewrite] from for
// every message, else the user's [rewrite.users] address for a From at a
// local address (www-data@localhost, cron's root). Nil when neither is set.
func (p *process) fromRewrite(cfg *Config) func([]string) (string, bool) {
	u, err := p.currentUser()
	own := cfg.Rewrite.Users[p.loginName(u, err)]
	if cfg.Rewrite.From == "" && own == "" {
		return nil
	}
	rs, _ := p.recipients(cfg)
	return func(addrs []string) (string, bool) {
		local := len(addrs) == 1 && rs != nil && rs.IsLocal(addrs[0])
		if cfg.Rewrite.From != "" {
			// Whatever the field holds, even nothing that parses. A
			// local From is no address to reply to.
			same := len(addrs) == 1 && strings.EqualFold(addrs[0], cfg.Rewrite.From)
			return cfg.Rewrite.From, cfg.Rewrite.ReplyTo && !local && !same && len(addrs) > 0
		}
		if local {
			return own, false
		}
		return "", false
	}
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
	if _, err := p.recipients(cfg); err != nil {
		return err
	}
	for _, word := range inv.Recipients {
		// Each address on its own: two that reach the same place both
		// say so.
		rs, _ := p.recipients(cfg)
		if err := addRecipient(cfg, rs, word, sysexits.Usage, "arguments"); err != nil {
			return err
		}
		for _, a := range rs.Addrs() {
			fmt.Fprintf(p.stdout, "%s -> <%s>: deliverable via %s\n", word, a, smarthostAddr(&cfg.Smarthost))
		}
	}
	if len(inv.Recipients) == 0 {
		return sysexits.Errorf(sysexits.Usage, "-bv needs at least one address")
	}
	return nil
}

func smarthostAddr(sh *Smarthost) string {
	return net.JoinHostPort(sh.Host, strconv.Itoa(sh.Port))
}

// accepted is a message read from stdin, with its envelope.
type accepted struct {
	from   string
	rcpts  []string
	notify map[string][]string // DSN NOTIFY of recipients that have their own (-bs)
	intake intake.Result
}

// accept reads the message from stdin into w and works out its envelope.
// Errors carry their exit code; nothing has been sent or committed.
func (p *process) accept(cfg *Config, inv Invocation, w io.Writer) (accepted, error) {
	var a accepted
	rs, err := p.recipients(cfg)
	if err != nil {
		return a, err
	}
	for _, word := range inv.Recipients {
		if err := addRecipient(cfg, rs, word, sysexits.Usage, "arguments"); err != nil {
			return a, err
		}
	}
	if a.from, err = p.sender(cfg, inv); err != nil {
		return a, err
	}
	a.intake, err = intake.Copy(w, p.stdin, intake.Options{
		IgnoreDots:        inv.IgnoreDots,
		ExtractRecipients: inv.ReadHeaders,
		Hostname:          cfg.Hostname,
		From:              p.fromHeader(cfg, inv, a.from),
		Now:               p.now,
		MaxBytes:          int64(cfg.MaxMessageSize),
		RewriteFrom:       p.fromRewrite(cfg),
		QualifyDomain:     qualifyDomain(cfg),
	})
	if err != nil {
		return a, err
	}
	for _, addr := range a.intake.Recipients {
		if err := addRecipient(cfg, rs, addr, sysexits.DataErr, "message header"); err != nil {
			return a, err
		}
	}
	if len(rs.Addrs()) == 0 {
		return a, sysexits.Errorf(sysexits.Usage, "no recipients: none on the command line and none in To, Cc or Bcc")
	}
	if n := len(rs.Addrs()); cfg.MaxRecipients > 0 && n > cfg.MaxRecipients {
		code := sysexits.Usage
		if len(a.intake.Recipients) > 0 {
			code = sysexits.DataErr
		}
		return a, sysexits.Errorf(code, "%d recipients (after aliases), more than max_recipients = %d in %s", n, cfg.MaxRecipients, cfg.Path)
	}
	a.rcpts = rs.Addrs()
	return a, nil
}

// deliveryMode is -od? when given, else the config's delivery.
func deliveryMode(cfg *Config, inv Invocation) DeliveryMode {
	switch inv.Delivery {
	case 'i':
		return DeliverInteractive
	case 'b':
		return DeliverBackground
	case 'q':
		return DeliverQueue
	}
	return cfg.Delivery
}

// spoolMessage creates a spool file, has fill write the message into it
// and return its envelope, and commits it: the one way into the spool of
// the command line and of -bs. On any error the file is removed, so
// nothing half-written is left; the error is fill's, or the spool's
// (TempFail, CantCreat, with a hint).
func (p *process) spoolMessage(cfg *Config, sp *spool.Spool, fill func(w io.Writer) (*spool.Envelope, error)) (*spool.Envelope, error) {
	env, _, err := p.spoolMessageLocked(cfg, sp, false, fill)
	return env, err
}

// spoolMessageLocked is spoolMessage that, with lock, keeps the committed
// message locked and returns it, for a sender that delivers it itself:
// no queue runner can take it in between. The caller must Unlock it.
func (p *process) spoolMessageLocked(cfg *Config, sp *spool.Spool, lock bool, fill func(w io.Writer) (*spool.Envelope, error)) (*spool.Envelope, *spool.Item, error) {
	w, err := sp.Create()
	if err != nil {
		return nil, nil, spoolHint(cfg, err)
	}
	defer w.Abort() // after Commit it does nothing
	env, err := fill(w)
	if err != nil {
		return nil, nil, err
	}
	if lock {
		item, err := w.CommitLocked(env)
		return env, item, err
	}
	return env, nil, w.Commit(env)
}

// envelope is the spool envelope of a, with the DSN, body and error mode
// settings of inv.
func (p *process) envelope(inv Invocation, a accepted) *spool.Envelope {
	env := &spool.Envelope{
		From: a.from, Body: inv.Body, EightBit: a.intake.EightBit,
		Return: inv.DSNReturn, EnvID: inv.EnvID, ErrorMode: string(inv.ErrorMode),
		MessageID: a.intake.MessageID, NextAttempt: p.now(),
		UID: os.Getuid(),
	}
	if u, err := p.currentUser(); err == nil {
		env.User = u.Username
	}
	for _, r := range a.rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r, State: spool.Pending, Notify: inv.DSNNotify})
	}
	return env
}

// serveSMTP is -bs: one SMTP session on stdin and stdout, for Symfony
// Mailer and Laravel. MAIL FROM counts as -f and each RCPT TO as a
// command-line recipient; each message takes the command line's intake and
// spool path and earns its 250 only once committed. The caller waits for
// the process to exit, so nothing is delivered during the session: after
// it, the committed messages are delivered in the background as with -odb
// (also for the default interactive mode; Postfix's -bs only queues), or
// only queued with -odq. Without a spool each message is relayed before
// its reply instead (relaySMTP). -t is refused with -bs (as Postfix does); -i, -f,
// -B and the DSN flags do not apply (SMTP says all that), -F still names
// the From added to a message without one.
func (p *process) serveSMTP(cfg *Config, inv Invocation) error {
	if _, err := p.recipients(cfg); err != nil {
		return err // a broken [aliases] table stops us before the greeting
	}
	direct := cfg.Queue.Dir == ""
	var sp *spool.Spool
	if !direct {
		var err error
		if sp, err = p.openSpool(cfg); err != nil {
			return err
		}
	}
	mode := deliveryMode(cfg, inv)
	// -v shows the log lines, not the conversation: the client has it, and
	// go-smtp's debug copy of a pipelined session runs ahead of the
	// replies, message data included.
	log := p.logger(inv)
	defer log.Close()
	how := "SMTP on stdin (-bs), delivery after the session"
	if mode == DeliverQueue {
		how = "SMTP on stdin (-bs), delivery mode queue (-odq)"
	}
	opts := p.smtpOptions(cfg, inv, sp, log, how)
	if direct {
		opts.Accepted = "Ok: sent as %s"
	}
	out, closeOut := p.smtpOut()
	ids, err := smtpd.Serve(p.stdin, out, opts)
	closeOut()
	if !direct && len(ids) > 0 && mode != DeliverQueue && queue.SlotFree(sp.Dir(), cfg.Smarthost.MaxConnections) {
		if berr := p.background(cfg, "--drain"); berr != nil {
			fmt.Fprintf(p.stderr, "%s: queued %d message(s); background delivery did not start (%v): the next queue run delivers them\n", p.name, len(ids), berr)
		}
	}
	return err
}

// smtpOptions are the SMTP server's callbacks for -bs and -bd: the sender
// and each recipient as the command line would take them, and each
// message committed to the spool sp (or, with no spool, relayed before
// the reply), logged as how.
func (p *process) smtpOptions(cfg *Config, inv Invocation, sp *spool.Spool, log *maillog.Logger, how string) smtpd.Options {
	return smtpd.Options{
		Hostname:        cfg.Hostname,
		MaxMessageBytes: int64(cfg.MaxMessageSize),
		MaxRecipients:   cfg.MaxRecipients,
		Sender: func(addr string) (string, error) {
			i := inv
			i.Sender, i.SenderSet = addr, true
			return p.sender(cfg, i)
		},
		Recipient: func(addr string) ([]string, error) {
			rs, err := p.recipients(cfg)
			if err == nil {
				err = addRecipient(cfg, rs, addr, sysexits.Usage, "RCPT TO")
			}
			if err != nil {
				return nil, err
			}
			return rs.Addrs(), nil
		},
		Commit: func(e smtpd.Envelope, data io.Reader) (string, error) {
			i := inv
			i.Body, i.DSNReturn, i.EnvID, i.DSNNotify = e.Body, e.Return, e.EnvID, nil
			a := accepted{from: e.From, notify: map[string][]string{}}
			for _, r := range e.Rcpts {
				a.rcpts = append(a.rcpts, r.Addr)
				a.notify[r.Addr] = r.Notify
			}
			copyIn := func(w io.Writer) (err error) {
				a.intake, err = intake.Copy(w, data, intake.Options{
					IgnoreDots:    true, // SMTP has removed the dot-stuffing
					Hostname:      cfg.Hostname,
					From:          p.fromHeader(cfg, inv, e.From),
					Now:           p.now,
					RewriteFrom:   p.fromRewrite(cfg),
					QualifyDomain: qualifyDomain(cfg),
				})
				return err
			}
			if sp == nil {
				return p.relaySMTP(cfg, i, log, func(w io.Writer) (accepted, error) { return a, copyIn(w) })
			}
			env, err := p.spoolMessage(cfg, sp, func(w io.Writer) (*spool.Envelope, error) {
				if err := copyIn(w); err != nil {
					return nil, err
				}
				env := p.envelope(i, a)
				env.SMTPUTF8 = e.SMTPUTF8
				for k, r := range e.Rcpts {
					env.Recipients[k].Notify = r.Notify
				}
				return env, nil
			})
			if err != nil {
				return "", err
			}
			log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, To: a.rcpts, Status: "queued", Reply: how})
			return env.ID, nil
		},
	}
}

// smtpOut is where -bs writes its replies: a duplicate of stdout's file
// descriptor when stdout is a file. A Go program that writes to a closed
// pipe on fd 1 dies of SIGPIPE, on another descriptor the write fails with
// EPIPE: a client that closes its end early must not stop the delivery of
// what it committed. The duplicate is close-on-exec, so the background
// runner does not hold the client's pipe open.
func (p *process) smtpOut() (io.Writer, func()) {
	f, ok := p.stdout.(*os.File)
	if !ok {
		return p.stdout, func() {}
	}
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(int(f.Fd()))
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return p.stdout, func() {}
	}
	d := os.NewFile(uintptr(fd), "stdout")
	return d, func() { d.Close() }
}

// send is sendmail's default mode: spool the message, then deliver it as
// the delivery mode says. Once the spool commit succeeds the message is
// safe, and every later trouble ends with it queued and exit 0.
func (p *process) send(cfg *Config, inv Invocation) error {
	if cfg.Queue.Dir == "" {
		return p.sendDirect(cfg, inv)
	}
	sp, err := p.openSpool(cfg)
	if err != nil {
		return err
	}
	var a accepted
	mode := deliveryMode(cfg, inv)
	// Every mode but -odq and -odb delivers here, from the locked message.
	env, item, err := p.spoolMessageLocked(cfg, sp, mode != DeliverQueue && mode != DeliverBackground, func(w io.Writer) (*spool.Envelope, error) {
		var err error
		if a, err = p.accept(cfg, inv, w); err != nil {
			return nil, err
		}
		return p.envelope(inv, a), nil
	})
	if err != nil {
		return err
	}

	log := p.logger(inv)
	defer log.Close()
	switch mode {
	case DeliverQueue:
		log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, To: a.rcpts, Status: "queued", Reply: "delivery mode queue (-odq)"})
		return nil
	case DeliverBackground:
		if !queue.SlotFree(sp.Dir(), cfg.Smarthost.MaxConnections) {
			// Every runner slot is held by a runner that will see this
			// message before it lets go: no process to start.
			log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, To: a.rcpts, Status: "queued", Reply: "background delivery (-odb) by a running queue runner"})
			return nil
		}
		log.Log(maillog.Entry{ID: env.ID, UID: env.UID, User: env.User, From: env.From, To: a.rcpts, Status: "queued", Reply: "background delivery (-odb)"})
		if err := p.background(cfg, "--drain"); err != nil {
			fmt.Fprintf(p.stderr, "%s: queued as %s; background delivery did not start (%v): the next queue run delivers it\n", p.name, env.ID, err)
		}
		return nil
	}

	// The settings of the message's route, checked before the session:
	// a broken one leaves it queued, with the reason.
	route, sh := cfg.RouteFor(env.From)
	opts, err := p.relayOptions(cfg, inv, sh)
	if err != nil {
		item.Unlock()
		fmt.Fprintf(p.stderr, "%s: queued as %s: %v\n", p.name, env.ID, err)
		return nil
	}
	runner := p.runner(cfg, sp, inv, true, log, map[string]relayOptions{route: opts})
	// -oep, -oew and -oeq tell the caller through stderr and the exit code
	// when every recipient is refused; -oem and -oee mail a bounce.
	callerTold := inv.ErrorMode != 'm' && inv.ErrorMode != 'e'
	out, err := runner.DeliverItem(context.Background(), item, callerTold)
	if err != nil {
		// The message is committed: it waits for the next queue run.
		fmt.Fprintf(p.stderr, "%s: queued as %s: %v\n", p.name, env.ID, err)
		return nil
	}
	var hold *queue.Hold
	if out.Bounced || out.Pending == 0 && !sp.Empty() || errors.As(out.Err, &hold) {
		// A bounce was queued, or older messages wait while the relay
		// works: deliver them now rather than at the next queue run, which
		// a container without cron may never have; or the message waits
		// for a rate-limit slot or the end of a pause, which a drain stays
		// for. --drain exits at once when the runner slots are all busy,
		// and leaves messages that are not due yet alone.
		if queue.SlotFree(sp.Dir(), cfg.Smarthost.MaxConnections) {
			p.background(cfg, "--drain")
		}
	}
	return p.tell(inv, opts.Addr, env.ID, out)
}

// tell says what an interactive delivery did: refused recipients, the
// reason a message stays queued, and exit 67 or 69 when every recipient
// was refused and no bounce will say so.
func (p *process) tell(inv Invocation, relay, id string, out queue.Outcome) error {
	quiet := inv.ErrorMode == 'q'
	perm := 0
	hinted := ""
	for _, r := range out.Results {
		if r.Permanent() {
			perm++
			if !quiet {
				fmt.Fprintf(p.stderr, "%s: %s refused <%s>: %s\n", p.name, relay, r.Rcpt, r.Reply)
			}
			if h := refusalHint(relay, out, r); hinted == "" && h != "" {
				hinted = h
			}
		}
	}
	if hinted != "" && !quiet {
		fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, hinted)
	}
	var hold *queue.Hold
	if errors.As(out.Err, &hold) && !quiet {
		fmt.Fprintf(p.stderr, "%s: queued as %s: %s, next slot in %s\n", p.name, id, hold.Reason, max(time.Until(hold.Until), 0).Round(time.Second))
		var re *relayError
		if errors.As(out.Err, &re) && re.Hint != "" {
			fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, re.Hint)
		}
		return nil
	}
	if out.Pending > 0 && !quiet {
		reason := "temporary failure"
		if out.Err != nil {
			reason = oneLine(out.Err.Error())
		} else {
			for _, r := range out.Results {
				if !r.Sent() && !r.Permanent() {
					reason = fmt.Sprintf("<%s>: %s", r.Rcpt, r.Reply)
					break
				}
			}
		}
		fmt.Fprintf(p.stderr, "%s: queued as %s: %s; will retry\n", p.name, id, reason)
		var re *relayError
		if errors.As(out.Err, &re) && re.Hint != "" {
			fmt.Fprintf(p.stderr, "%s: hint: %s\n", p.name, re.Hint)
		}
	}
	if out.Bounced {
		if !quiet {
			fmt.Fprintf(p.stderr, "%s: %s: a bounce goes to the sender for %d refused recipient(s)\n", p.name, id, len(out.Failed))
		}
		return nil
	}
	if out.Told {
		err := p.allRefused(relay, id, out, perm)
		if quiet {
			return &quietError{err}
		}
		return err
	}
	return nil
}

// refusalHint is what to do about a refused recipient: the hint of the
// message's failure, or the catalogue's for the recipient's reply.
func refusalHint(relay string, out queue.Outcome, r queue.Result) string {
	var re *relayError
	if errors.As(out.Err, &re) && re.Hint != "" {
		return re.Hint
	}
	host, _, _ := net.SplitHostPort(relay)
	return hint.Reply(hint.FromResult(r.Code, r.Reply, host, ""))
}

// allRefused is the exit of an interactive send whose every recipient was
// refused: 69 when the message as a whole was, else 67.
func (p *process) allRefused(relay, id string, out queue.Outcome, perm int) error {
	var re *relayError
	if errors.As(out.Err, &re) && re.Perm {
		return sysexits.Errorf(sysexits.Unavailable, "%s: %v", id, out.Err)
	}
	return sysexits.Errorf(sysexits.NoUser, "all %d recipients refused by %s", perm, relay)
}

// quietError is a failure the caller asked not to hear about (-oeq): only
// the exit code tells.
type quietError struct{ err error }

func (e *quietError) Error() string { return e.err.Error() }
func (e *quietError) Unwrap() error { return e.err }

// sendDirect delivers without a spool ([queue] dir = ""), for read-only
// containers: the caller learns every failure from the exit code.
func (p *process) sendDirect(cfg *Config, inv Invocation) error {
	log := p.logger(inv)
	defer log.Close()
	o, err := p.relayNow(cfg, inv, log, func(w io.Writer) (accepted, error) { return p.accept(cfg, inv, w) })
	if err != nil {
		return err
	}
	quiet := inv.ErrorMode == 'q'
	if rerr := o.err; rerr != nil {
		var re *relayError
		if errors.As(rerr, &re) && re.Perm {
			return sysexits.Errorf(sysexits.Unavailable, "%w (message not sent)", rerr)
		}
		return sysexits.Errorf(sysexits.TempFail, "%w (message not sent, try again later)", rerr)
	}
	var sent, perm, temp int
	for _, r := range o.results {
		switch {
		case r.Sent():
			sent++
		case r.Permanent():
			perm++
			if !quiet {
				fmt.Fprintf(p.stderr, "%s: %s refused <%s>: %s\n", p.name, o.relay, r.Rcpt, r.Reply())
			}
		default:
			temp++
			if !quiet {
				fmt.Fprintf(p.stderr, "%s: %s deferred <%s>: %s\n", p.name, o.relay, r.Rcpt, r.Reply())
			}
		}
	}
	switch {
	case temp > 0:
		return sysexits.Errorf(sysexits.TempFail, "%d of %d recipients not delivered (temporary failure), %d delivered; no spool ([queue] dir = \"\"), so the message was not kept", temp+perm, len(o.results), sent)
	case perm == len(o.results):
		return sysexits.Errorf(sysexits.NoUser, "all %d recipients refused by %s", perm, o.relay)
	case perm > 0:
		return sysexits.Errorf(sysexits.NoUser, "%d of %d recipients refused by %s, %d delivered", perm, len(o.results), o.relay, sent)
	}
	return nil
}

// relaySMTP is a message of -bs without a spool: it is relayed before
// its reply, which is the smarthost's verdict. The id is its Message-ID.
// Like the command line, a message some recipients refused or deferred
// fails as a whole, saying how many got it: there is nowhere to keep it.
func (p *process) relaySMTP(cfg *Config, inv Invocation, log *maillog.Logger, fill func(w io.Writer) (accepted, error)) (string, error) {
	o, err := p.relayNow(cfg, inv, log, fill)
	if err != nil {
		return "", err
	}
	if o.err != nil {
		var re *relayError
		if errors.As(o.err, &re) && re.Perm {
			return "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 0, 0}, Message: fmt.Sprintf("not sent: %v", o.err)}
		}
		return "", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: fmt.Sprintf("not sent, try again later: %v", o.err)}
	}
	var sent, perm int
	var firstTemp, firstPerm *result
	for k, r := range o.results {
		switch {
		case r.Sent():
			sent++
		case r.Permanent():
			perm++
			if firstPerm == nil {
				firstPerm = &o.results[k]
			}
		case firstTemp == nil:
			firstTemp = &o.results[k]
		}
	}
	n := len(o.results)
	switch {
	case firstTemp != nil:
		// A recipient without a reply (the connection broke) may have got
		// the message: "not confirmed", not "not delivered".
		refused := ""
		if perm > 0 {
			refused = fmt.Sprintf(" (%d of them refused)", perm)
		}
		return "", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: fmt.Sprintf(
			"%d of %d recipients not confirmed%s, %d delivered; %s deferred <%s>: %s; no spool ([queue] dir = \"\"), so the message was not kept",
			n-sent, n, refused, sent, o.relay, firstTemp.Rcpt, firstTemp.Reply())}
	case perm > 0:
		return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf(
			"%d of %d recipients refused, %d delivered; %s refused <%s>: %s", perm, n, sent, o.relay, firstPerm.Rcpt, firstPerm.Reply())}
	}
	return o.a.intake.MessageID, nil
}

// checkSetup is --check: the config as loaded, its secret masked, then a
// connection to the smarthost that does STARTTLS (or TLS) and AUTH as a
// delivery would, and says QUIT without sending anything. The exit code is
// a delivery's: 0 when mail can go, 75 or 69 (and the hint) when not.
func (p *process) checkSetup(cfg *Config, inv Invocation) error {
	w := p.stdout
	fmt.Fprintf(w, "config %s\n", cfg.Path)
	from := cfg.From
	if from == "" {
		from = "<login name>@" + cfg.Domain
	}
	fmt.Fprintf(w, "  hostname %s, domain %s, sender %s\n", cfg.Hostname, cfg.Domain, from)
	queueDir := cfg.Queue.Dir
	if queueDir == "" {
		queueDir = "none (deliver directly)"
	}
	fmt.Fprintf(w, "  delivery %s, spool %s\n", cfg.Delivery, queueDir)
	table, err := p.aliasTable(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %d aliases\n", len(table))
	// Every route, the default last: the first failure is the exit code.
	var first error
	for i := range cfg.Routes {
		fmt.Fprintf(w, "route %d, for senders %s\n", i+1, strings.Join(cfg.Routes[i].Senders, ", "))
		if err := p.checkSmarthost(cfg, inv, &cfg.Routes[i].Smarthost); err != nil {
			p.report(err)
			first = cmp.Or(first, err)
		}
	}
	if len(cfg.Routes) > 0 {
		fmt.Fprintf(w, "[smarthost], for every other sender\n")
	}
	if err := p.checkSmarthost(cfg, inv, &cfg.Smarthost); err != nil {
		if first != nil {
			p.report(err)
		}
		return cmp.Or(first, err)
	}
	if first != nil {
		return &quietError{first} // reported above
	}
	return nil
}

// checkSmarthost is --check for one smarthost: its settings, then a login.
func (p *process) checkSmarthost(cfg *Config, inv Invocation, sh *Smarthost) error {
	w := p.stdout
	tlsText := string(sh.TLS)
	if sh.TLS != TLSNone {
		tlsText += ", TLS " + string(sh.TLSMinVersion) + " or newer"
		switch {
		case len(sh.TLSFingerprint) > 0:
			tlsText += fmt.Sprintf(", certificate pinned (%d fingerprints)", len(sh.TLSFingerprint))
		case sh.CAFile != "":
			tlsText += ", trusting the system's CAs and " + sh.CAFile
		default:
			tlsText += ", trusting the system's CAs"
		}
		if sh.TLSCertFile != "" {
			tlsText += ", client certificate " + sh.TLSCertFile
		}
	}
	fmt.Fprintf(w, "  smarthost %s (%s)\n", smarthostAddr(sh), tlsText)
	if len(sh.Fallback) > 0 {
		fmt.Fprintf(w, "  fallback %s\n", strings.Join(sh.Fallback, ", "))
	}
	if pol := sh.Policy(); !pol.Zero() || sh.MaxMessagesPerConnection > 0 {
		limit := pol.String()
		if sh.MaxMessagesPerConnection > 0 {
			limit = strings.TrimPrefix(limit+fmt.Sprintf(", %d messages per connection", sh.MaxMessagesPerConnection), ", ")
		}
		fmt.Fprintf(w, "  limits %s\n", limit)
	}
	switch {
	case sh.Auth == AuthNone || sh.Username == "":
		fmt.Fprintf(w, "  no login\n")
	case sh.Password != "":
		fmt.Fprintf(w, "  login %q, auth %s, password in the config (not shown)\n", sh.Username, sh.Auth)
	case sh.PasswordFile != "":
		fmt.Fprintf(w, "  login %q, auth %s, password from %s\n", sh.Username, sh.Auth, sh.PasswordFile)
	default:
		// Only the program: its arguments may hold a token.
		fmt.Fprintf(w, "  login %q, auth %s, password from the command %s (arguments not shown)\n", sh.Username, sh.Auth, sh.PasswordCommand[0])
	}
	opts, err := p.relayOptions(cfg, inv, sh)
	if err != nil {
		return err
	}
	start := p.now()
	r, err := check(context.Background(), opts)
	if err != nil {
		var re *relayError
		if errors.As(err, &re) && re.Perm {
			return sysexits.Errorf(sysexits.Unavailable, "check %w", err)
		}
		return sysexits.Errorf(sysexits.TempFail, "check %w", err)
	}
	for _, why := range r.Skipped {
		fmt.Fprintf(w, "warning: %s\n", why)
	}
	fmt.Fprintf(w, "smarthost %s answered in %v\n", r.Addr, p.now().Sub(start).Round(time.Millisecond))
	if r.TLS != nil {
		fmt.Fprintf(w, "  %s, %s\n", tls.VersionName(r.TLS.Version), tls.CipherSuiteName(r.TLS.CipherSuite))
		if len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			cert, _ := trust.Fingerprints(c)
			days := int(c.NotAfter.Sub(p.now()).Hours() / 24)
			fmt.Fprintf(w, "  certificate %s, issued by %s, valid until %s (%d days)\n", c.Subject, c.Issuer, c.NotAfter.UTC().Format("2006-01-02"), days)
			fmt.Fprintf(w, "  certificate SHA-256 %s\n", trust.Hex(cert))
			if days < 14 {
				fmt.Fprintf(w, "  warning: the certificate expires in %d days\n", days)
			}
		}
	}
	fmt.Fprintf(w, "  offers %s\n", strings.Join(r.Extensions, ", "))
	if r.Mechanism != "" {
		fmt.Fprintf(w, "  logged in as %q with %s\n", sh.Username, r.Mechanism)
	}
	if r.Addr != opts.Addr {
		fmt.Fprintf(w, "ok: mail can be relayed through the fallback %s, not %s (nothing was sent)\n", r.Addr, opts.Addr)
		return nil
	}
	fmt.Fprintf(w, "ok: mail can be relayed through %s (nothing was sent)\n", r.Addr)
	return nil
}

// directOutcome is what relaying a message without a spool came to.
type directOutcome struct {
	a       accepted
	relay   string   // host:port of the smarthost
	results []result // each recipient's fate, when err is nil
	err     error    // the session failed as a whole (*relayError or I/O)
}

// relayNow is delivery without a spool: fill writes the message into an
// anonymous temporary file (gone however we exit), which is then relayed
// at once and the outcome logged. The error is fill's, or one that kept
// the message from being relayed at all; nothing was sent then.
func (p *process) relayNow(cfg *Config, inv Invocation, log *maillog.Logger, fill func(w io.Writer) (accepted, error)) (directOutcome, error) {
	var o directOutcome
	start := p.now()
	f, err := os.CreateTemp("", "relaymail-*")
	if err != nil {
		return o, sysexits.Errorf(sysexits.CantCreat, "create temporary file: %v", err)
	}
	os.Remove(f.Name())
	defer f.Close()
	bw := bufio.NewWriterSize(f, 64<<10)
	if o.a, err = fill(bw); err != nil {
		return o, err
	}
	if err := bw.Flush(); err != nil {
		return o, sysexits.Errorf(sysexits.TempFail, "write temporary file: %v", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return o, sysexits.Errorf(sysexits.IOErr, "rewind temporary file: %v", err)
	}
	a := o.a
	env := envelope{
		From: a.from, Rcpts: a.rcpts, Body: inv.Body, EightBit: a.intake.EightBit, Size: a.intake.Size,
		Notify: inv.DSNNotify, RcptNotify: a.notify, Return: inv.DSNReturn, EnvID: inv.EnvID,
	}
	// The route of the message's sender.
	_, sh := cfg.RouteFor(a.from)
	opts, err := p.relayOptions(cfg, inv, sh)
	if err != nil {
		return o, err
	}
	o.results, o.relay, o.err = relay(context.Background(), opts, env, bufio.NewReaderSize(f, 64<<10))
	var name string
	if u, err := p.currentUser(); err == nil {
		name = u.Username
	}
	logResults(log, maillog.Entry{ID: a.intake.MessageID, UID: os.Getuid(), User: name, From: a.from, Relay: o.relay, Delay: p.now().Sub(start)}, o.results)
	return o, nil
}

func (p *process) logger(inv Invocation) *maillog.Logger {
	return maillog.New(maillog.Options{Syslog: true, Fallback: p.stderr, Echo: inv.Verbose > 0})
}

// logResults writes one log line per outcome of a direct delivery.
func logResults(log *maillog.Logger, base maillog.Entry, results []result) {
	outcomes := make([]maillog.Outcome, len(results))
	for i, r := range results {
		status := "deferred"
		if r.Sent() {
			status = "sent"
		} else if r.Permanent() {
			status = "bounced"
		}
		outcomes[i] = maillog.Outcome{Rcpt: r.Rcpt, Status: status, Reply: r.Reply()}
	}
	log.LogEach(base, outcomes)
}

// relayOptions turns the config's [smarthost] section into relay settings.
func (p *process) relayOptions(cfg *Config, inv Invocation, sh *Smarthost) (relayOptions, error) {
	o := relayOptions{
		Addr:        smarthostAddr(sh),
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
			Dir:     p.commandDir(),
		},
	}
	if sh.TLSServerName != "" {
		o.ServerName = sh.TLSServerName
	}
	if sh.CAFile != "" {
		pem, err := os.ReadFile(sh.CAFile)
		if err != nil {
			return o, sysexits.Errorf(sysexits.Config, "%s: %s ca_file: %v", cfg.Path, cfg.Label(sh), err)
		}
		pool, err := trust.PoolFromPEM(pem)
		if err != nil {
			return o, sysexits.Errorf(sysexits.Config, "%s: %s ca_file %s %v", cfg.Path, cfg.Label(sh), sh.CAFile, err)
		}
		o.RootCAs = pool
	}
	o.CertFiles, o.CertDirs = trust.FromEnv(p.env)
	o.Pins = sh.TLSFingerprint
	o.PlaintextAuth = sh.AllowPlaintextAuth || sh.InsecurePlaintextAuth
	o.Fallback, o.FixedServerName = sh.Fallback, sh.TLSServerName != ""
	o.MinVersion = sh.TLSMinVersion.Number()
	if sh.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(sh.TLSCertFile, sh.TLSKeyFile)
		if err != nil {
			return o, sysexits.Errorf(sysexits.Config, "%s: %s tls_cert_file and tls_key_file: %v", cfg.Path, cfg.Label(sh), err)
		}
		o.ClientCert = &cert
	}
	if inv.Verbose > 0 {
		o.Debug = transcript.New(p.stderr)
	}
	return o, nil
}

// commandDir is where password_command runs: "/" when setgid (the
// caller's directory could hold a module the command loads, like a
// Python script's json.py), else the caller's.
func (p *process) commandDir() string {
	if p.priv.Raised() {
		return "/"
	}
	return ""
}

// commandEnv is the environment of password_command: PATH and HOME only.
func (p *process) commandEnv() []string {
	path := "/usr/local/bin:/usr/bin:/bin"
	home := "/"
	if p.priv.Raised() {
		// Nothing of the caller's: its HOME holds the dot files that
		// steer many programs (~/.curlrc), and the command runs with the
		// group's rights (and in /, see relayOptions).
		return []string{"PATH=" + path, "HOME=" + home}
	}
	if u, err := p.currentUser(); err == nil && u.HomeDir != "" {
		home = u.HomeDir
	}
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

// hintError is an error with a known fix.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// spoolHint explains the fix for a spool that cannot be created or written.
func spoolHint(cfg *Config, err error) error {
	if err == nil || sysexits.CodeOf(err) != sysexits.CantCreat && sysexits.CodeOf(err) != sysexits.NoPerm {
		return err
	}
	return &hintError{err: err, hint: fmt.Sprintf("[queue] dir %q in %s must be a writable directory; in a read-only container set dir = \"\" to deliver without a spool", cfg.Queue.Dir, cfg.Path)}
}

// openSpool opens the spool directory of the config.
func (p *process) openSpool(cfg *Config) (*spool.Spool, error) {
	sp, err := spool.Open(spool.Options{Dir: cfg.Queue.Dir, Now: p.now})
	return sp, spoolHint(cfg, err)
}

// runner returns the delivery engine for the config's smarthost.
// runner returns the queue runner for cfg. Each route's relay options are
// made from the config the first time it is dialled, so a route whose
// settings are broken (an unreadable ca_file) defers its own messages
// only.
func (p *process) runner(cfg *Config, sp *spool.Spool, inv Invocation, skipQuitReply bool, log *maillog.Logger, known map[string]relayOptions) *queue.Runner {
	routeOpts := map[string]relayOptions{}
	for route, o := range known { // made already: ca_file is not read twice
		o.SkipQuitReply = skipQuitReply
		routeOpts[route] = o
	}
	optsFor := func(route string) (relayOptions, error) {
		if o, ok := routeOpts[route]; ok {
			return o, nil
		}
		o, err := p.relayOptions(cfg, inv, cfg.SmarthostOf(route))
		if err != nil {
			return o, err
		}
		o.SkipQuitReply = skipQuitReply
		routeOpts[route] = o
		return o, nil
	}
	var route func(*spool.Envelope) string
	if len(cfg.Routes) > 0 {
		route = func(env *spool.Envelope) string {
			name, _ := cfg.RouteFor(env.From)
			return name
		}
	}
	store := limits.Open(sp.Dir(), p.now)
	var storeErr error // said once per process
	noteStore := func(err error) {
		if err != nil && storeErr == nil {
			storeErr = err
			log.Notice(maillog.Entry{UID: -1, Status: "error", Reply: fmt.Sprintf("%v; sending without the rate limits", err)})
		}
	}
	return queue.New(queue.Options{
		Spool: sp,
		Route: route,
		Dial: func(ctx context.Context, route string) (queue.Session, error) {
			o, err := optsFor(route)
			if err != nil {
				return nil, err
			}
			o.Paused = func(addr string) (time.Time, string) {
				until, reason, err := store.Paused(addr)
				noteStore(err)
				return until, reason
			}
			s, err := dial(ctx, o)
			var re *relayError
			if errors.As(err, &re) && !re.Until.IsZero() {
				return nil, &queue.Hold{Until: re.Until, Reason: re.Error(), Err: re}
			}
			if err != nil {
				// Queue runs leave the messages of a relay that is down
				// untouched: mailq tells why from here.
				noteStore(store.Unreachable(o.Addr, strings.TrimPrefix(err.Error(), o.Addr+": ")))
				return nil, err
			}
			var throttled bool
			if s.o.Addr == o.Addr { // the primary answered, not a fallback: its outage is over
				throttled, err = store.Reachable(o.Addr)
				noteStore(err)
			} else {
				throttled = store.Throttled(s.o.Addr)
			}
			return &relaySession{s: s, store: store, throttled: throttled, log: log,
				pause: time.Duration(cfg.SmarthostOf(route).ThrottlePause)}, nil
		},
		Limit: func(route string, n int) (int, *queue.Hold, func(int)) {
			sh := cfg.SmarthostOf(route)
			pol := sh.Policy()
			if pol.Zero() {
				return n, nil, nil
			}
			granted, next, stamp, err := store.Reserve(sh.LimitKey(), pol, n)
			noteStore(err)
			release := func(k int) { noteStore(store.Release(sh.LimitKey(), stamp, k)) }
			if err != nil || granted >= n {
				return n, nil, release
			}
			return granted, &queue.Hold{Until: next, Reason: fmt.Sprintf("rate limit %s for %s", pol, sh.Addr())}, release
		},
		Down: func(route string) (int, time.Time) {
			o, err := optsFor(route)
			if err != nil {
				return 0, time.Time{}
			}
			out, err := store.Down(o.Addr)
			noteStore(err)
			return out.Failures, out.Last
		},
		MaxPerSession: func(route string) int { return cfg.SmarthostOf(route).MaxMessagesPerConnection },
		Hint: func(env *spool.Envelope, res queue.Result) string {
			return recipientHint(cfg, env.From, res.Code, res.Reply)
		},
		Relay: func(route string) string {
			o, _ := optsFor(route)
			return o.Addr
		},
		Log:    log,
		Now:    p.now,
		MaxAge: time.Duration(cfg.Queue.MaxAge),
		Bounce: queue.NewBouncer(queue.BounceOptions{
			Spool: sp, ReportingMTA: cfg.Hostname, Domain: cfg.Domain,
			RemoteMTA: cfg.Smarthost.Host, Now: p.now,
			Hint: func(env *spool.Envelope, rc spool.Recipient) string {
				return recipientHint(cfg, env.From, rc.Code, rc.Reply)
			},
		}),
	})
}

// dropped reports a connection the server closed (not a timeout of
// ours): a server that drops a client right after MAIL is turning it away.
func dropped(re *relayError) bool {
	if re.Err == nil {
		return false
	}
	if errors.Is(re.Err, io.EOF) || errors.Is(re.Err, syscall.ECONNRESET) || errors.Is(re.Err, syscall.EPIPE) {
		return true
	}
	t := re.Err.Error()
	return strings.Contains(t, "EOF") || strings.Contains(t, "connection reset") || strings.Contains(t, "broken pipe")
}

// recipientHint is the catalogue's hint (internal/hint) for a recipient's
// recorded reply, on the route of the sender from.
func recipientHint(cfg *Config, from string, code int, reply string) string {
	_, sh := cfg.RouteFor(from)
	return hint.Reply(hint.FromResult(code, reply, sh.Host, string(sh.TLS)))
}

// relaySession lets the queue drive a relay session, and keeps the
// smarthost's throttle state (internal/limits) from what it answers.
type relaySession struct {
	s         *session
	store     *limits.Store
	throttled bool          // the host had been paused since its last success
	pause     time.Duration // its first pause (throttle_pause)
	log       *maillog.Logger
}

func (r *relaySession) Send(env *spool.Envelope, rcpts []string, body io.Reader) ([]queue.Result, error) {
	results, err := r.s.send(relayEnvelope(env, rcpts), body)
	r.observe(results, err)
	return queueResults(results), err
}

// Used counts the messages the session carried (max_messages_per_connection).
func (r *relaySession) Used() int { return r.s.used }

// observe pauses the host when a reply asks us to slow down (or the
// connection dropped right after MAIL), and ends its pause after a
// success. A daily quota refused with a 5xx becomes a 451: the message
// waits for the quota, it does not bounce.
func (r *relaySession) observe(results []result, err error) {
	if r.store == nil {
		return
	}
	reason := ""
	var re *relayError
	if errors.As(err, &re) {
		switch {
		case re.Code != 0 && limits.Throttling(re.Code, enhanced(re.Enhanced), re.Text):
			reason = result{Code: re.Code, Enhanced: re.Enhanced, Text: re.Text}.Reply()
		case re.Code == 0 && re.Stage == "MAIL FROM" && dropped(re):
			reason = "the connection dropped right after MAIL FROM"
		}
	}
	sent := slices.ContainsFunc(results, result.Sent)
	for i := range results {
		res := &results[i]
		// A refused recipient is the server slowing us down only when it
		// took none of the message's and says so.
		if reason == "" && !sent && limits.RecipientThrottling(res.Code, res.Text) {
			reason = res.Reply()
		}
		if limits.Quota(res.Code, enhanced(res.Enhanced), res.Text) {
			res.Code, res.Text = 451, "sending quota: "+res.Text
		}
	}
	addr := r.s.o.Addr
	if reason == "" {
		if sent && r.throttled {
			r.throttled = false
			if err := r.store.Clear(addr); err != nil {
				r.log.Notice(maillog.Entry{UID: -1, Status: "error", Reply: err.Error()})
			}
		}
		return
	}
	r.s.broken = true // the next message waits for the pause, or a fallback host
	until, first, err := r.store.Throttle(addr, reason, r.pause)
	switch {
	case err != nil:
		r.log.Notice(maillog.Entry{UID: -1, Status: "error", Reply: fmt.Sprintf("%v; %s was not paused", err, addr)})
	case first:
		// Logged, not said: the sender hears of its message's delay.
		r.log.Log(maillog.Entry{UID: -1, Relay: addr, Status: "throttled",
			Reply: fmt.Sprintf("%s asked us to slow down (%s): no mail goes to it until %s (%s)",
				addr, reason, until.Format("15:04:05"), until.Sub(r.store.Now()).Round(time.Second))})
	}
}

// SendBatch sends several messages in one flight when the server allows.
func (r *relaySession) SendBatch(jobs []queue.Job) []queue.Sent {
	envs := make([]envelope, len(jobs))
	bodies := make([]io.Reader, len(jobs))
	for i, j := range jobs {
		envs[i], bodies[i] = relayEnvelope(j.Env, j.Rcpts), j.Body
	}
	results, errs := r.s.sendBatch(envs, bodies)
	for i := range jobs {
		r.observe(results[i], errs[i])
	}
	out := make([]queue.Sent, len(jobs))
	for i := range jobs {
		out[i] = queue.Sent{Results: queueResults(results[i]), Err: errs[i]}
	}
	return out
}

// relayEnvelope is what MAIL and RCPT say for a queued message sent to
// rcpts.
func relayEnvelope(env *spool.Envelope, rcpts []string) envelope {
	e := envelope{
		From: env.From, Rcpts: rcpts, Body: env.Body, EightBit: env.EightBit, Size: env.Size,
		Return: env.Return, EnvID: env.EnvID,
	}
	e.RcptNotify = map[string][]string{}
	for _, rc := range env.Recipients {
		if slices.Contains(rcpts, rc.Addr) {
			e.RcptNotify[rc.Addr] = rc.Notify
		}
	}
	return e
}

func queueResults(results []result) []queue.Result {
	out := make([]queue.Result, len(results))
	for i, res := range results {
		out[i] = queue.Result{Rcpt: res.Rcpt, Code: res.Code, Reply: res.Reply()}
	}
	return out
}

func (r *relaySession) Broken() bool { return r.s.broken }
func (r *relaySession) Close()       { r.s.close() }

// background starts a detached sendmail that runs the queue with args
// (-qI<id> for one message), so the caller need not wait.
func (p *process) background(cfg *Config, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{fd, fd, fd},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	argv := []string{p.name}
	if cfg.Path != defaultConfigPath {
		// The child must read the same config; the default needs no -C,
		// which a set-gid install may refuse from ordinary users (#7).
		argv = append(argv, "-C", cfg.Path)
	}
	// syscall.ForkExec rather than os.StartProcess: the latter first forks
	// a throwaway child to probe for pidfd support, half a millisecond of
	// a -odb caller's time, for a process we never wait for.
	_, err = syscall.ForkExec(exe, append(argv, args...), attr)
	return err
}

// runQueue is sendmail -q: deliver what is queued, once, or every interval
// with -q5m, or one message with -qI<id>.
func (p *process) runQueue(cfg *Config, inv Invocation) error {
	if cfg.Queue.Dir == "" {
		return sysexits.Errorf(sysexits.Usage, "no queue: [queue] dir is empty in %s", cfg.Path)
	}
	sp, err := p.openSpool(cfg)
	if err != nil {
		return err
	}
	// Broken [smarthost] settings stop the run, unless routes can still
	// deliver theirs: then they are said, the default route's mail waits,
	// and the exit code tells once the run is done.
	var defaultErr error
	known := map[string]relayOptions{}
	if opts, err := p.relayOptions(cfg, inv, &cfg.Smarthost); err != nil {
		if len(cfg.Routes) == 0 {
			return err
		}
		p.report(err)
		defaultErr = &quietError{err}
	} else {
		known[""] = opts
	}
	log := p.logger(inv)
	defer log.Close()
	runner := p.runner(cfg, sp, inv, false, log, known)
	ctx := context.Background()
	if inv.QueueID != "" {
		out, err := runner.DeliverID(ctx, inv.QueueID, false)
		switch {
		case errors.Is(err, queue.ErrBusy):
			return nil // someone is delivering it right now
		case errors.Is(err, spool.ErrNotFound):
			return sysexits.Errorf(sysexits.NoInput, "no message %q in the queue", inv.QueueID)
		case err != nil:
			return sysexits.Errorf(sysexits.TempFail, "%s: %v", inv.QueueID, err)
		}
		if out.Pending > 0 && inv.Verbose > 0 {
			fmt.Fprintf(p.stderr, "%s: %s still queued: %v\n", p.name, inv.QueueID, out.Err)
		}
		return defaultErr
	}
	if inv.Drain {
		st, err := runner.Drain(ctx, cfg.Smarthost.MaxConnections, time.Duration(cfg.Queue.Linger))
		if err != nil {
			return sysexits.Errorf(sysexits.TempFail, "%v", err)
		}
		if inv.Verbose > 0 {
			fmt.Fprintf(p.stderr, "%s: drain: %d attempted, %d delivered, %d deferred\n", p.name, st.Attempted, st.Delivered, st.Deferred)
		}
		return defaultErr
	}
	if inv.QueueInterval == 0 {
		// What killed senders left half-written, once it is surely theirs.
		sp.Cleanup(time.Minute)
		// A runner slot keeps the connections to the smarthost within
		// max_connections. Background runners hold theirs only while
		// there is work, so the wait is short; after a minute the run
		// goes ahead rather than leave a cron job hanging.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		slot, _ := queue.WaitSlot(wctx, sp.Dir(), cfg.Smarthost.MaxConnections)
		cancel()
		st, err := runner.Run(ctx, true)
		if slot != nil {
			slot.Release()
		}
		if err != nil {
			return sysexits.Errorf(sysexits.TempFail, "%v", err)
		}
		if inv.Verbose > 0 {
			fmt.Fprintf(p.stderr, "%s: queue run: %d attempted, %d delivered, %d deferred, %d with bounces, %d busy elsewhere, %d damaged, %d held for a rate limit or pause, %d left waiting for the relay\n",
				p.name, st.Attempted, st.Delivered, st.Deferred, st.Bounced, st.Busy, st.Damaged, st.Held, st.Waiting)
		}
		return defaultErr
	}
	return p.queueLoop(runner, sp, inv.QueueInterval, cfg.Smarthost.MaxConnections)
}

// queueLoop runs the queue every interval until SIGTERM or SIGINT; SIGHUP
// and SIGUSR1 start a run at once. A signal to stop waits for the message
// in flight: stopping never loses one.
func (p *process) queueLoop(runner *queue.Runner, sp *spool.Spool, interval time.Duration, slots int) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for s := range sigs {
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				stop()
				return
			}
		}
	}()
	kick := make(chan os.Signal, 1)
	signal.Notify(kick, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(kick)
	force := true
	for {
		// Each run holds a runner slot, as -q's does; a spool where no
		// slot can be made is still run.
		slot, err := queue.WaitSlot(ctx, sp.Dir(), slots)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(p.stderr, "%s: %v\n", p.name, err)
		}
		if _, err := runner.Run(ctx, force); err != nil {
			fmt.Fprintf(p.stderr, "%s: %v\n", p.name, err)
		}
		if slot != nil {
			slot.Release()
		}
		sp.Cleanup(time.Minute)
		force = false
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-kick:
			force = true
		case <-t.C:
		}
		t.Stop()
	}
}

// listQueue is mailq: the queue in Postfix's layout, or JSON.
func (p *process) listQueue(cfg *Config, inv Invocation) error {
	if cfg.Queue.Dir == "" {
		if !inv.JSON {
			fmt.Fprintln(p.stdout, "Mail queue is empty (no spool: [queue] dir is empty)")
		}
		return nil
	}
	sp, err := p.openSpool(cfg)
	if err != nil {
		return err
	}
	// The queue is walked as it is written out, so that a long one costs
	// no more memory than a short one.
	admin := p.priv.Admin()
	var errs []error
	envs := func(yield func(*spool.Envelope) bool) {
		errs = sp.Walk(func(e *spool.Envelope) bool {
			// Through the group, this process can read every envelope;
			// the caller sees only its own, and hears of no other's
			// trouble.
			return !admin && e.UID != p.priv.UID || yield(e)
		})
	}
	var waiting func(*spool.Envelope) string
	if inv.JSON {
		waiting = p.waitingFor(cfg, sp)
	}
	err = queue.WriteListing(p.stdout, envs, p.now(), inv.JSON, waiting)
	if admin {
		for _, e := range errs {
			fmt.Fprintf(p.stderr, "%s: %v\n", p.name, e)
		}
	}
	if err != nil {
		return sysexits.Errorf(sysexits.IOErr, "write listing: %v", err)
	}
	if !inv.JSON {
		p.writeLimits(cfg, sp)
	}
	return nil
}

// writeLimits adds to mailq what the smarthosts' limits say: how much of
// each rate is used and when the next message may leave, and each pause.
func (p *process) writeLimits(cfg *Config, sp *spool.Spool) {
	store := limits.Open(sp.Dir(), p.now)
	now := p.now()
	seen := map[string]bool{}
	shs := []*Smarthost{&cfg.Smarthost}
	for i := range cfg.Routes {
		shs = append(shs, &cfg.Routes[i].Smarthost)
	}
	for _, sh := range shs {
		addr := sh.Addr()
		if pol := sh.Policy(); !pol.Zero() && !seen[sh.LimitKey()] {
			seen[sh.LimitKey()] = true
			next, inRate, inDay, err := store.Next(sh.LimitKey(), pol)
			switch {
			case err != nil:
				fmt.Fprintf(p.stdout, "-- %s: %v\n", addr, err)
			default:
				used := []string{}
				if pol.Rate > 0 {
					used = append(used, fmt.Sprintf("%d in the last %s", inRate, limits.Unit(pol.Per)))
				}
				if pol.Daily > 0 {
					used = append(used, fmt.Sprintf("%d in the last day", inDay))
				}
				when := "now"
				if next.After(now) {
					when = fmt.Sprintf("at %s (in %s)", next.Format("15:04:05"), next.Sub(now).Round(time.Second))
				}
				fmt.Fprintf(p.stdout, "-- %s: limit %s; %s; the next message may leave %s\n", addr, pol, strings.Join(used, ", "), when)
			}
		}
		for _, host := range append([]string{addr}, sh.Fallback...) {
			if seen["host:"+host] {
				continue
			}
			seen["host:"+host] = true
			if until, reason, err := store.Paused(host); err == nil && !until.IsZero() {
				fmt.Fprintf(p.stdout, "-- %s: paused until %s (in %s): it asked us to slow down (%s)\n",
					host, until.Format("15:04:05"), until.Sub(now).Round(time.Second), reason)
			}
			if out, err := store.Down(host); err == nil && out.Failures > 0 {
				fmt.Fprintf(p.stdout, "-- %s: %s\n", host, outageText(out))
			}
		}
	}
}

// waitingFor says, for mailq --json, what the due messages of a route wait
// for: what mailq's footer says of its smarthost (unreachable, paused, or
// its rate limit used up), read once per smarthost.
func (p *process) waitingFor(cfg *Config, sp *spool.Spool) func(*spool.Envelope) string {
	store := limits.Open(sp.Dir(), p.now)
	now := p.now()
	said := map[*Smarthost]string{}
	return func(e *spool.Envelope) string {
		_, sh := cfg.RouteFor(e.From)
		if why, ok := said[sh]; ok {
			return why
		}
		addr := sh.Addr()
		var why string
		if out, err := store.Down(addr); err == nil && out.Failures > 0 {
			why = addr + ": " + outageText(out)
		} else if until, reason, err := store.Paused(addr); err == nil && !until.IsZero() {
			why = fmt.Sprintf("%s: paused until %s: it asked us to slow down (%s)", addr, until.Format(time.RFC3339), reason)
		} else if pol := sh.Policy(); !pol.Zero() {
			if next, _, _, err := store.Next(sh.LimitKey(), pol); err == nil && next.After(now) {
				why = fmt.Sprintf("%s: rate limit %s; the next message may leave at %s", addr, pol, next.Format(time.RFC3339))
			}
		}
		said[sh] = why
		return why
	}
}

// outageText says since when a smarthost could not be reached, for mailq.
func outageText(out limits.Outage) string {
	attempts := "attempts"
	if out.Failures == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("no session since %s (%d failed %s in a row, the last: %s); its messages wait for the next queue run",
		out.Since.Local().Format("Jan _2 15:04:05"), out.Failures, attempts, out.Reason)
}

// own keeps the envelopes of messages the caller queued.
func (p *process) own(envs []*spool.Envelope) []*spool.Envelope {
	return slices.DeleteFunc(envs, func(e *spool.Envelope) bool { return e.UID != p.priv.UID })
}

// adminQueue deletes or requeues messages by id (or ALL).
func (p *process) adminQueue(cfg *Config, inv Invocation) error {
	if cfg.Queue.Dir == "" {
		return sysexits.Errorf(sysexits.Usage, "no queue: [queue] dir is empty in %s", cfg.Path)
	}
	sp, err := p.openSpool(cfg)
	if err != nil {
		return err
	}
	ids := inv.Recipients
	if len(ids) == 1 && ids[0] == "ALL" {
		envs, _ := sp.List()
		if !p.priv.Admin() {
			envs = p.own(envs)
		}
		ids = nil
		for _, e := range envs {
			ids = append(ids, e.ID)
		}
	}
	var failed int
	for _, id := range ids {
		item, err := sp.Lock(id)
		if err == nil && !p.priv.Admin() && item.Env.UID != p.priv.UID {
			// The same words as for a message that is not there: whose
			// mail is queued is not the caller's business.
			item.Unlock()
			err = sysexits.Errorf(sysexits.NoInput, "queue id %q: %w", id, spool.ErrNotFound)
		}
		if err != nil {
			fmt.Fprintf(p.stderr, "%s: %s: %v\n", p.name, id, err)
			failed++
			continue
		}
		if inv.Mode == ModeDelete {
			err = item.Remove()
		} else {
			item.Env.NextAttempt = p.now()
			err = item.Update()
		}
		item.Unlock()
		if err != nil {
			fmt.Fprintf(p.stderr, "%s: %s: %v\n", p.name, id, err)
			failed++
			continue
		}
		fmt.Fprintf(p.stdout, "%s: %sd\n", id, inv.Mode)
	}
	if failed > 0 {
		return sysexits.Errorf(sysexits.TempFail, "%d of %d messages not %sd", failed, len(ids), inv.Mode)
	}
	return nil
}
