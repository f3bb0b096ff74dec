package main

// config.go reads the TOML config (/etc/sendmail.conf unless -C says
// otherwise) into a Config, fills in the defaults and validates every
// setting, so that no other code checks whether a setting is present or
// valid. sendmail.conf.example documents every key.
//
// Rules for the errors it returns, which reach cron mail and PHP logs:
//   - Each problem is one line that starts with the file, and its line when
//     the key is in the file: "/etc/sendmail.conf:7: [smarthost] port ...".
//     Keys are named as they are written: "hostname", "[smarthost] port".
//   - Every problem found is reported at once, joined with errors.Join (one
//     per line). A syntax error or a value of the wrong type stops the
//     decoder, so it is reported alone, with the unknown keys.
//   - Unknown keys are errors, with a suggestion when the key is misspelt
//     or sits in the wrong table.
//   - A password never appears in an error: not in a syntax error on its
//     line (the decoder quotes what it could not read), not in the printed
//     Config (Secret redacts itself). That is also why syntax errors are
//     one line and not ErrorWithPosition's excerpt of the file.
//   - Every error carries sysexits.Config (78).

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"relaymail/internal/address"
	"relaymail/internal/limits"
	"relaymail/internal/recipient"
	"relaymail/internal/sysexits"
)

// Config is the validated content of the config file.
type Config struct {
	Path     string       `toml:"-"`        // file it came from
	Mode     fs.FileMode  `toml:"-"`        // its permission bits, as loadConfig found them
	Hostname string       `toml:"hostname"` // EHLO name and Message-ID domain; default: ConfigDefaults.Hostname
	Domain   string       `toml:"domain"`   // qualifies bare names (root -> root@domain); default: Hostname
	From     string       `toml:"from"`     // envelope sender when -f is not given; "" = login name at Domain
	Delivery DeliveryMode `toml:"delivery"` // default delivery mode; -od? overrides; default DeliverInteractive
	// MaxMessageSize refuses larger messages at submission; 0 leaves the
	// limit to the relay (its SIZE), and -bs to 64 MiB.
	MaxMessageSize ByteSize `toml:"max_message_size"`
	// AliasesFile is a file in the /etc/aliases format (absolute path); the
	// [aliases] table wins over it. "" reads none.
	AliasesFile string `toml:"aliases_file"`
	// LocalDomains are domains whose addresses count as local, as
	// hostname and localhost do: they go through the aliases.
	LocalDomains []string `toml:"local_domains"`
	// DefaultRecipient gets the mail of local names no alias takes, instead
	// of name@domain.
	DefaultRecipient string `toml:"default_recipient"`
	// MaxRecipients refuses a message with more envelope recipients, after
	// aliases; 0 is no limit (and 1000 per -bs transaction).
	MaxRecipients int               `toml:"max_recipients"`
	Rewrite       RewriteConfig     `toml:"rewrite"`
	Smarthost     Smarthost         `toml:"smarthost"`
	Routes        []Route           `toml:"route"` // [[route]] tables, tried in order before [smarthost]
	Queue         QueueConfig       `toml:"queue"`
	Listen        ListenConfig      `toml:"listen"`  // sendmail -bd
	Aliases       map[string]string `toml:"aliases"` // name -> address list; values are not empty
}

// Smarthost is the [smarthost] table: where and how to relay.
type Smarthost struct {
	Host            string   `toml:"host"`             // required
	Port            int      `toml:"port"`             // default: 587, 465 with tls = "tls", 25 with tls = "none"
	TLS             TLSMode  `toml:"tls"`              // default: TLSStartTLS
	TLSServerName   string   `toml:"tls_server_name"`  // name the certificate must carry; "" = Host
	CAFile          string   `toml:"ca_file"`          // extra PEM roots (absolute path), read when connecting
	Username        string   `toml:"username"`         // set whenever a password source is, unless Auth is AuthNone
	Password        Secret   `toml:"password"`         // at most one of Password,
	PasswordFile    string   `toml:"password_file"`    // PasswordFile (absolute path, read only for AUTH)
	PasswordCommand []string `toml:"password_command"` // and PasswordCommand (run only for AUTH) is set
	Auth            AuthMode `toml:"auth"`             // default: AuthAuto
	Timeout         Duration `toml:"timeout"`          // default: 30s; > 0
	// TLSFingerprint pins the relay's certificate: the SHA-256 of the
	// leaf certificate or of its public key (hex, colons allowed, or
	// base64), one or a list. When set it replaces the CA check.
	TLSFingerprint Fingerprints `toml:"tls_fingerprint"`
	TLSCertFile    string       `toml:"tls_cert_file"`   // client certificate (PEM, absolute path), with TLSKeyFile
	TLSKeyFile     string       `toml:"tls_key_file"`    // its private key (PEM, absolute path)
	TLSMinVersion  TLSVersion   `toml:"tls_min_version"` // default "1.2"
	// AllowPlaintextAuth allows AUTH with tls = "none" to a relay that is
	// not on loopback; InsecurePlaintextAuth is its older name.
	AllowPlaintextAuth    bool `toml:"allow_plaintext_auth"`
	InsecurePlaintextAuth bool `toml:"insecure_plaintext_auth"`
	// Fallback are hosts ("host" or "host:port", the port defaulting to
	// Port) tried in order when host is unreachable or answers 4xx before
	// any mail, with the same settings and login.
	Fallback       []string `toml:"fallback"`
	MaxConnections int      `toml:"max_connections"` // background and queue runners at once, each one connection; default 4
	// Rate and DailyLimit cap the messages handed to this smarthost by
	// every relaymail process on the machine together; a message over
	// them waits in the queue for the next free slot. Zero: no limit.
	Rate       Rate `toml:"rate"`        // "30/minute"
	DailyLimit int  `toml:"daily_limit"` // messages in any 24 hours
	// MaxMessagesPerConnection ends a session after this many messages
	// and opens a new one; 0: no limit.
	MaxMessagesPerConnection int `toml:"max_messages_per_connection"`
	// ThrottlePause is how long no mail goes to a host that asked us to
	// slow down; it doubles each time the host does so again before a
	// message goes through, up to an hour. Default 1m.
	ThrottlePause Duration `toml:"throttle_pause"`
}

// Rate is a rate limit: N messages per window ("30/minute", "1/second",
// "500/hour", "2000/day", or "10/90s").
type Rate struct {
	N   int
	Per time.Duration
}

// UnmarshalText parses "N/unit".
func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*r = Rate{}
		return nil
	}
	n, unit, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || count < 1 {
		return fmt.Errorf("%q is not a rate; write messages per unit, as in \"30/minute\", \"1/second\" or \"500/hour\"", s)
	}
	var per time.Duration
	switch unit = strings.TrimSpace(unit); unit {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	case "d", "day":
		per = 24 * time.Hour
	default:
		if per, err = time.ParseDuration(unit); err != nil || per < time.Second {
			return fmt.Errorf("%q is not a rate: the unit is second, minute, hour, day or a duration of a second or more such as 90s", s)
		}
	}
	*r = Rate{N: count, Per: per}
	return nil
}

// MarshalText writes the rate as UnmarshalText reads it.
func (r Rate) MarshalText() ([]byte, error) {
	if r.N == 0 {
		return nil, nil
	}
	return []byte(r.Policy().String()), nil
}

// Policy is the smarthost's limits as internal/limits takes them.
func (sh *Smarthost) Policy() limits.Policy {
	return limits.Policy{Rate: sh.Rate.N, Per: sh.Rate.Per, Daily: sh.DailyLimit}
}

// Addr is the smarthost's host:port.
func (sh *Smarthost) Addr() string { return net.JoinHostPort(sh.Host, strconv.Itoa(sh.Port)) }

// LimitKey names the account whose rate limits the smarthost's settings
// set (internal/limits): routes to one server with one login and the same
// limits share their count.
func (sh *Smarthost) LimitKey() string {
	return "route:" + sh.Addr() + "/" + sh.Username + "/" + sh.Policy().String()
}

// Policy is the rate alone.
func (r Rate) Policy() limits.Policy { return limits.Policy{Rate: r.N, Per: r.Per} }

// RewriteConfig is the [rewrite] table: the senders a relay will take.
// Gmail, Microsoft 365 and SES refuse a From they have not verified, and
// PHP sends as www-data@localhost, cron as root.
type RewriteConfig struct {
	// Sender is the envelope sender of every message (not of bounces,
	// whose null sender stays); "" leaves it.
	Sender string `toml:"sender"`
	// From replaces the address of every message's From field, its
	// display name kept; "" leaves it.
	From string `toml:"from"`
	// ReplyTo keeps the original From as Reply-To, when From replaced it
	// and the message had none, so replies still reach the writer.
	ReplyTo bool `toml:"reply_to"`
	// Users maps local login names to their address, as ssmtp's
	// revaliases does: the envelope sender of their mail (without -f), and
	// the From field's address when that is local (www-data@localhost).
	Users map[string]string `toml:"users"`
	// QualifyHeaders adds @domain to bare names in the From, To, Cc,
	// Reply-To and Sender fields ("To: root"), as the envelope's are. Off
	// by default: rewriting what the writer wrote surprises more often
	// than it helps.
	QualifyHeaders bool `toml:"qualify_headers"`
	// AllowFrom, when set, lists the -f (and MAIL FROM) addresses users
	// other than root may give, as patterns ("*@example.com"); another is
	// replaced by the user's usual sender. Unset, -f is free, as with
	// Postfix.
	AllowFrom []string `toml:"allow_from"`
}

// Route is a [[route]] table: the smarthost for messages whose envelope
// sender matches one of Senders, with every [smarthost] setting of its
// own (and the same defaults).
type Route struct {
	// Senders are patterns of envelope senders, lower case:
	// "*@example.org", "billing@example.com"; a bare domain
	// ("example.org") stands for every address at it.
	Senders   []string `toml:"senders"`
	Smarthost `toml:""`
}

// RouteFor returns the route of a message from sender: "route N" and its
// smarthost for the first [[route]] whose senders match, else "" and
// [smarthost]. The null sender (bounces) takes [smarthost].
func (c *Config) RouteFor(sender string) (string, *Smarthost) {
	s := strings.ToLower(sender)
	for i := range c.Routes {
		for _, pat := range c.Routes[i].Senders {
			if s != "" && globMatch(pat, s) {
				return "route " + strconv.Itoa(i+1), &c.Routes[i].Smarthost
			}
		}
	}
	return "", &c.Smarthost
}

// SmarthostOf returns the smarthost of a route RouteFor named.
func (c *Config) SmarthostOf(route string) *Smarthost {
	if n, ok := strings.CutPrefix(route, "route "); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= len(c.Routes) {
			return &c.Routes[i-1].Smarthost
		}
	}
	return &c.Smarthost
}

// ListenConfig is the [listen] table: the SMTP listener of sendmail -bd,
// for programs that send to localhost:25.
type ListenConfig struct {
	// Addresses to listen on; default 127.0.0.1:25 and [::1]:25. Clients
	// from other than loopback are refused.
	Addresses []string `toml:"addresses"`
	// TLSCertFile and TLSKeyFile offer STARTTLS with this certificate.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// MaxConnections is how many sessions at once; default 20.
	MaxConnections int `toml:"max_connections"`
	// UsersFile lets clients from other machines in after AUTH PLAIN over
	// STARTTLS: lines "user:bcrypt-hash" (htpasswd -B). Without it they
	// are refused.
	UsersFile string `toml:"users_file"`
}

// QueueConfig is the [queue] table.
type QueueConfig struct {
	Dir    string   `toml:"dir"`     // absolute; default "/var/spool/relaymail"; "" = no spool: deliver directly, exit 75 on trouble
	MaxAge Duration `toml:"max_age"` // a recipient still pending after this fails and is bounced; default 5 days (120h)
	Linger Duration `toml:"linger"`  // how long a background runner waits for more mail, its connection open; default 2s
}

// DeliveryMode says when a message leaves: before sendmail exits, in a
// detached child, or at the next queue run.
type DeliveryMode string

const (
	DeliverInteractive DeliveryMode = "interactive" // -odi: the caller waits for the relay
	DeliverBackground  DeliveryMode = "background"  // -odb: exit after the spool commit, a child delivers
	DeliverQueue       DeliveryMode = "queue"       // -odq: only queue; sendmail -q delivers
)

// UnmarshalText accepts the DeliveryMode values.
func (m *DeliveryMode) UnmarshalText(b []byte) error {
	v, err := parseEnum(string(b), []string{"interactive", "background", "queue"}, map[string]string{
		"i": "interactive", "b": "background", "q": "queue", "deferred": "queue", "foreground": "interactive",
	})
	*m = DeliveryMode(v)
	return err
}

// ConfigDefaults are the defaults main finds on the system.
type ConfigDefaults struct {
	Hostname string // the system's fully qualified name
	// Env reads the RELAYMAIL_* variables (envSettings); nil when the
	// process must not honour its environment.
	Env func(string) string
}

// TLSMode is how the connection to the smarthost is protected.
type TLSMode string

const (
	TLSStartTLS TLSMode = "starttls" // plaintext connect, then STARTTLS (RFC 3207), usually port 587
	TLSImplicit TLSMode = "tls"      // TLS from the first byte (RFC 8314), usually port 465
	TLSNone     TLSMode = "none"     // no TLS: only for a relay on a trusted network
)

// UnmarshalText accepts "starttls", "tls" or "none".
func (m *TLSMode) UnmarshalText(b []byte) error {
	v, err := parseEnum(string(b), []string{"starttls", "tls", "none"}, map[string]string{
		"ssl": "tls", "smtps": "tls", "implicit": "tls", "tls1.2": "tls", "tls1.3": "tls",
		"off": "none", "no": "none", "false": "none", "plain": "none", "plaintext": "none",
		"on": "starttls", "yes": "starttls", "true": "starttls",
	})
	*m = TLSMode(v)
	return err
}

// TLSVersion is the oldest TLS version the relay may use.
type TLSVersion string

// UnmarshalTOML accepts "1.0" to "1.3", also written as a number (1.2)
// or as "TLSv1.2".
func (v *TLSVersion) UnmarshalTOML(data any) error {
	var s string
	switch d := data.(type) {
	case string:
		s = d
	case float64:
		s = strconv.FormatFloat(d, 'f', 1, 64)
	default:
		return fmt.Errorf("%v is not a TLS version; write \"1.2\" or \"1.3\"", data)
	}
	t := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(s), "tlsv"), "tls")
	if !slices.Contains([]string{"1.0", "1.1", "1.2", "1.3"}, t) {
		return fmt.Errorf("%q is not a TLS version; write \"1.2\" or \"1.3\"", s)
	}
	*v = TLSVersion(t)
	return nil
}

// Number returns the crypto/tls constant of v ("" is 1.2).
func (v TLSVersion) Number() uint16 {
	switch v {
	case "1.0":
		return tls.VersionTLS10
	case "1.1":
		return tls.VersionTLS11
	case "1.3":
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// Fingerprints are SHA-256 digests of certificates or public keys.
type Fingerprints [][sha256.Size]byte

// UnmarshalTOML accepts one fingerprint or a list of them.
func (f *Fingerprints) UnmarshalTOML(data any) error {
	var list []string
	switch d := data.(type) {
	case string:
		list = []string{d}
	case []any:
		for _, e := range d {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%v is not a fingerprint; write it as a string", e)
			}
			list = append(list, s)
		}
	default:
		return fmt.Errorf("%v is not a fingerprint; write it as a string, or a list of strings", data)
	}
	for _, s := range list {
		d, err := parseFingerprint(s)
		if err != nil {
			return err
		}
		*f = append(*f, d)
	}
	return nil
}

// parseFingerprint reads a SHA-256 digest in hex (any case, with or without
// colons, as openssl prints it, optionally after "sha256:") or in base64
// (as in an HPKP pin).
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	t := strings.TrimSpace(s)
	for _, p := range []string{"sha256:", "SHA256:", "sha256//", "sha256/"} {
		t = strings.TrimPrefix(t, p)
	}
	if h := strings.ReplaceAll(t, ":", ""); len(h) == 2*sha256.Size {
		if b, err := hex.DecodeString(h); err == nil {
			copy(d[:], b)
			return d, nil
		}
	}
	if b, err := base64.StdEncoding.DecodeString(t); err == nil && len(b) == sha256.Size {
		copy(d[:], b)
		return d, nil
	}
	return d, fmt.Errorf("%q is not a SHA-256 fingerprint: give 64 hex digits (colons allowed, as openssl x509 -noout -fingerprint -sha256 prints them) or 44 characters of base64", s)
}

// AuthMode is the SASL mechanism used to log in to the smarthost.
type AuthMode string

const (
	AuthAuto        AuthMode = "auto"        // PLAIN or LOGIN, whichever the server offers
	AuthPlain       AuthMode = "plain"       // RFC 4616
	AuthLogin       AuthMode = "login"       // what Microsoft 365 offers
	AuthXOAUTH2     AuthMode = "xoauth2"     // Google and Microsoft OAuth2; the token comes from the password source
	AuthOAUTHBEARER AuthMode = "oauthbearer" // RFC 7628
	AuthNone        AuthMode = "none"        // never log in
)

// UnmarshalText accepts the AuthMode values, in lowercase.
func (m *AuthMode) UnmarshalText(b []byte) error {
	v, err := parseEnum(string(b), []string{"auto", "plain", "login", "xoauth2", "oauthbearer", "none"}, map[string]string{
		"oauth2": "xoauth2", "oauth": "xoauth2", "bearer": "oauthbearer",
		"off": "none", "no": "none", "false": "none",
		"on": "auto", "yes": "auto", "true": "auto",
	})
	*m = AuthMode(v)
	return err
}

// ByteSize is a number of bytes, written as a number or as a string with
// a unit: "10MB", "25MiB", "512k" (k, M, G count 1024s, as Postfix and
// most people mean them for mail sizes).
type ByteSize int64

// UnmarshalTOML accepts an integer or a string with a unit.
func (b *ByteSize) UnmarshalTOML(data any) error {
	switch d := data.(type) {
	case int64:
		if d < 0 {
			return fmt.Errorf("%d is negative", d)
		}
		*b = ByteSize(d)
		return nil
	case string:
		s := strings.TrimSpace(d)
		num := strings.TrimRight(s, "kKmMgGiIbB ")
		unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
		n, err := strconv.ParseInt(num, 10, 64)
		mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
			"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
		if err != nil || n < 0 || mult == 0 || n > (1<<62)/mult {
			return fmt.Errorf("%q is not a size; write it like \"25MB\", \"512k\" or a number of bytes", d)
		}
		*b = ByteSize(n * mult)
		return nil
	}
	return fmt.Errorf("%v is not a size; write it like \"25MB\" or a number of bytes", data)
}

// Duration is a time.Duration written as in Go: "30s", "2m", "1m30s".
type Duration time.Duration

// UnmarshalText parses a Go duration, explaining the common mistakes.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	v, err := time.ParseDuration(s)
	if err == nil {
		*d = Duration(v)
		return nil
	}
	switch {
	case s != "" && strings.Trim(s, "0123456789") == "":
		return fmt.Errorf("%q has no unit; write %q", s, s+"s")
	case strings.ContainsAny(s, " \t"):
		return fmt.Errorf("%q is not a duration; write it without spaces, as in \"30s\" or \"1m30s\"", s)
	case strings.HasSuffix(s, "d") && strings.Trim(s[:len(s)-1], "0123456789") == "" && len(s) > 1:
		days, _ := strconv.Atoi(s[:len(s)-1])
		*d = Duration(time.Duration(days) * 24 * time.Hour)
		return nil
	case strings.HasSuffix(s, "d"):
		return fmt.Errorf("%q is not a duration; write whole days as in \"5d\", or hours as in \"36h\"", s)
	}
	return fmt.Errorf("%q is not a duration; write it like \"30s\", \"2m\" or \"1m30s\"", s)
}

// String returns the duration as Go writes it, such as "30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as UnmarshalText reads it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Secret is a password or token. It prints as "<redacted>" with every fmt
// verb (or as nothing when empty), so that a Config printed with %v or %+v,
// or logged, never shows it; read it with string(s).
type Secret string

const redacted = "<redacted>"

// String returns "<redacted>", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from showing the secret.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format applies to every verb, so that no verb (%x, %d, %q ...) reaches
// the string itself.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || verb == 'v' && f.Flag('#') {
		io.WriteString(f, strconv.Quote(s.String()))
		return
	}
	io.WriteString(f, s.String())
}

// MarshalText keeps encoders (JSON, TOML) from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// maxConfigSize bounds what loadConfig reads: a config is a few hundred
// bytes, and -C /dev/zero must not eat the memory.
const maxConfigSize = 1 << 20

// loadConfig reads and validates the config at path. Settings missing from
// the file get their defaults; defaults.Hostname is the default hostname.
// It does not read password_file or ca_file nor run password_command: that
// happens only when they are needed.
//
// Errors carry sysexits.Config (78): a file that cannot be read (the
// cause is kept for errors.Is(err, fs.ErrNotExist) and the like), a syntax
// error, or the unknown keys and invalid settings, all of them joined with
// errors.Join, one per line.
func loadConfig(path string, defaults ConfigDefaults) (*Config, error) {
	text, mode, err := readConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) && defaults.Env != nil && defaults.Env("RELAYMAIL_SMARTHOST") != "" {
		// A container configured by its environment alone.
		text, mode, err = "", 0, nil
	}
	if err != nil {
		return nil, sysexits.Wrap(sysexits.Config, err)
	}
	cfg, err := parseConfig(path, text, defaults)
	if cfg != nil {
		cfg.Mode = mode
	}
	return cfg, err
}

// parseConfig is loadConfig once the file is read; path is for messages.
func parseConfig(path, text string, defaults ConfigDefaults) (*Config, error) {
	cl := configLoader{path: path, text: text}

	// Parse once without a schema: this fails only on syntax, and lists
	// the keys for the check below even when decoding fails.
	md, err := toml.Decode(text, &map[string]any{})
	if err != nil {
		return nil, sysexits.Wrap(sysexits.Config, cl.syntaxError(err))
	}
	// md.Undecoded() would miss keys that differ from a field only in case
	// ("Host"), which the decoder fills the field with anyway.
	cl.checkKeys(md)

	c := &Config{
		Path:     path,
		Hostname: defaults.Hostname,
		Smarthost: Smarthost{
			TLS:     TLSStartTLS,
			Auth:    AuthAuto,
			Timeout: Duration(30 * time.Second),

			TLSMinVersion:  "1.2",
			MaxConnections: 4,
			ThrottlePause:  Duration(limits.FirstPause),
		},
		Delivery: DeliverInteractive,
		Rewrite:  RewriteConfig{ReplyTo: true},
		Queue:    QueueConfig{Dir: "/var/spool/relaymail", MaxAge: Duration(5 * 24 * time.Hour), Linger: Duration(2 * time.Second)},
	}
	cl.md, err = toml.Decode(text, c)
	if err != nil {
		cl.decodeError(err)
	} else {
		if defaults.Env != nil {
			cl.applyEnv(c, defaults.Env)
		}
		cl.validate(c)
	}
	if err := cl.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// readConfigFile returns the config's text, or an error that says what to
// do about it.
func readConfigFile(path string) (string, fs.FileMode, error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil {
			var b []byte
			b, err = io.ReadAll(io.LimitReader(f, maxConfigSize+1))
			if err == nil && len(b) > maxConfigSize {
				return "", 0, fmt.Errorf("config %s is larger than 1 MiB", path)
			}
			if err == nil {
				return string(b), fi.Mode().Perm(), nil
			}
		}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in our message already
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, fmt.Errorf("cannot read config %s: %w; create it from /usr/share/doc/relaymail/sendmail.conf.example and set [smarthost] host", path, err)
	}
	return "", 0, fmt.Errorf("cannot read config %s: %w", path, err)
}

// configLoader collects the problems found in one config file.
type configLoader struct {
	path    string
	text    string
	md      toml.MetaData     // of the decode into Config
	fromEnv map[string]string // config keys the environment set -> the variable
	cleared map[string]bool   // file keys the environment undid (a new host's port)
	errs    []configError
}

// configError is a problem at a line of the file (0: the whole file).
type configError struct {
	line int
	msg  string
}

// errorf records a problem with key (nil for the file as a whole), at the
// line where key is written.
func (cl *configLoader) errorf(key []string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v := cl.fromEnv[strings.Join(key, ".")]; v != "" {
		cl.add(0, fmt.Sprintf("%s (set by $%s)", msg, v))
		return
	}
	cl.add(tomlKeyLine(cl.text, key), msg)
}

// add records a problem at line, or with the file as a whole when line is 0.
func (cl *configLoader) add(line int, msg string) {
	cl.errs = append(cl.errs, configError{line, msg})
}

// err returns the problems found, in the order of their lines and then
// those with the file as a whole, as one error carrying sysexits.Config; or
// nil.
func (cl *configLoader) err() error {
	if len(cl.errs) == 0 {
		return nil
	}
	order := func(e configError) int {
		if e.line == 0 {
			return math.MaxInt
		}
		return e.line
	}
	slices.SortStableFunc(cl.errs, func(a, b configError) int { return cmp.Compare(order(a), order(b)) })
	errs := make([]error, len(cl.errs))
	for i, e := range cl.errs {
		where := cl.path
		if e.line > 0 {
			where += ":" + strconv.Itoa(e.line)
		}
		errs[i] = fmt.Errorf("%s: %s", where, e.msg)
	}
	return sysexits.Wrap(sysexits.Config, errors.Join(errs...))
}

// syntaxError rewrites a parse error as one line. When the error is on a
// password line, the decoder's message may quote the password: it is left
// out.
func (cl *configLoader) syntaxError(err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", cl.path, err)
	}
	msg := pe.Message
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + strings.TrimSuffix(msg[1:], ".")
	}
	key := splitTOMLKey(pe.LastKey)
	if len(key) > 0 && key[len(key)-1] == "password" {
		msg = "cannot read the value (not shown); write it in quotes: password = \"...\""
	} else if strings.HasPrefix(msg, "expected value but found") {
		msg += "; text values need quotes, as in key = \"value\""
	}
	return fmt.Errorf("%s:%d: syntax error: %s", cl.path, pe.Position.Line, msg)
}

// decodeError records an error from decoding into Config: a value of the
// wrong type, or one that UnmarshalText refused.
func (cl *configLoader) decodeError(err error) {
	var pe toml.ParseError
	var line int
	var key []string
	var msg string
	if errors.As(err, &pe) {
		line, key, msg = pe.Position.Line, splitTOMLKey(pe.LastKey), pe.Message
	} else if m := regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`).FindStringSubmatch(err.Error()); m != nil {
		// The decoder's other errors, such as a string where a number
		// belongs, are plain text.
		line, _ = strconv.Atoi(m[1])
		k, _ := strconv.Unquote(m[2])
		key, msg = splitTOMLKey(k), describeTypeError(m[3])
	} else {
		cl.add(0, err.Error())
		return
	}
	if line == 0 {
		line = tomlKeyLine(cl.text, key)
	}
	switch {
	case len(key) == 0:
		cl.add(line, msg)
	case strings.HasPrefix(msg, `"`): // from UnmarshalText: starts with the value
		cl.add(line, tomlKeyName(key)+" = "+msg)
	default:
		cl.add(line, tomlKeyName(key)+" "+msg)
	}
}

// describeTypeError turns the decoder's words for a type mismatch into
// ours: "must be a number, not text".
func describeTypeError(msg string) string {
	have := func(goType string) string {
		switch {
		case goType == "string":
			return "text"
		case goType == "int64" || goType == "float64":
			return "a number"
		case goType == "bool":
			return "true or false"
		case strings.HasPrefix(goType, "[]"):
			return "a list"
		case strings.HasPrefix(goType, "map["):
			return "a table"
		}
		return "a date"
	}
	if m := regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (.+)$`).FindStringSubmatch(msg); m != nil {
		want := map[string]string{
			"integer": "a whole number", "string": "text in quotes", "boolean": "true or false",
			"slice": `a list, as in ["pass", "show", "smtp"]`, "map": "a table",
			"primitive (string-like)": "text in quotes",
		}[m[2]]
		if want == "" {
			return msg
		}
		return "must be " + want + ", not " + have(m[1])
	}
	if m := regexp.MustCompile(`^type mismatch for \S+: expected table but found (\S+)$`).FindStringSubmatch(msg); m != nil {
		return "must be a table (a [name] line followed by its keys), not " + have(m[1])
	}
	return msg
}

// configSchema returns, for each table, the keys it may hold: "" is the
// top level; a table whose keys are free (aliases) maps to nil.
func configSchema() map[string][]string {
	schema := map[string][]string{}
	var walk func(table string, t reflect.Type)
	walk = func(table string, t reflect.Type) {
		for f := range t.Fields() {
			name := f.Tag.Get("toml")
			if f.Anonymous {
				walk(table, f.Type) // its keys are the table's own
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			schema[table] = append(schema[table], name)
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(name, f.Type)
			case reflect.Map:
				schema[name] = nil
			case reflect.Slice:
				if f.Type.Elem().Kind() == reflect.Struct {
					walk(name, f.Type.Elem()) // an array of tables
				}
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return schema
}

// checkKeys records an error for each key in md that is not a setting,
// guessing what was meant. Keys under an unknown table are not reported
// again: the table is.
func (cl *configLoader) checkKeys(md toml.MetaData) {
	schema := configSchema()
	reported := map[string]bool{}
	for _, key := range md.Keys() {
		unknown, table, known := firstUnknown(key, schema)
		if unknown == nil || reported[unknown.String()] {
			continue
		}
		reported[unknown.String()] = true

		name := unknown[len(unknown)-1]
		what := "key " + tomlKeyName(unknown)
		isTable := len(key) > len(unknown) || md.Type(unknown...) == "Hash" || md.Type(unknown...) == "ArrayHash"
		if isTable {
			what = "table [" + unknown.String() + "]"
		}
		// Names from msmtp and ssmtp configs, and other likely words.
		mistakes := map[string]string{
			"user": "username", "login": "username", "authuser": "username",
			"pass": "password", "authpass": "password", "passwordeval": "password_command",
			"server": "host", "mailhub": "host", "hostname": "host",
			"tls_starttls": "tls", "starttls": "tls", "ssl": "tls", "usetls": "tls", "usestarttls": "tls",
			"tls_trust_file": "ca_file", "cafile": "ca_file",
			"rewritedomain": "domain", "maildomain": "domain",
		}
		var hint string
		if s := mistakes[strings.ToLower(name)]; s != "" && slices.Contains(known, s) {
			hint = "did you mean " + s + "?"
		} else if s := closest(name, known); s != "" {
			hint = "did you mean " + s + "?"
			if _, ok := schema[s]; ok && isTable {
				hint = "did you mean " + tableHeader(s) + "?"
			}
			if strings.EqualFold(s, name) {
				hint += " (keys are case-sensitive)"
			}
		} else if !isTable {
			// [smarthost] before [[route]], which has its keys too.
			tables := slices.SortedFunc(maps.Keys(schema), func(a, b string) int {
				last := func(t string) int {
					if t == "route" {
						return 1
					}
					return 0
				}
				return cmp.Or(cmp.Compare(last(a), last(b)), cmp.Compare(a, b))
			})
			for _, t := range tables {
				if t == table || !slices.Contains(schema[t], name) {
					continue
				}
				if t == "" {
					hint = name + " is a top-level setting: put it before the first [table] line"
				} else {
					hint = name + " belongs under " + tableHeader(t)
				}
				break
			}
		}
		if hint != "" {
			cl.errorf(unknown, "unknown %s; %s", what, hint)
		} else {
			cl.errorf(unknown, "unknown %s", what)
		}
	}
}

// firstUnknown returns the shortest part of key that is not a setting,
// with the table it was looked for in and that table's keys; or nil.
func firstUnknown(key toml.Key, schema map[string][]string) (unknown toml.Key, table string, known []string) {
	if !slices.Contains(schema[""], key[0]) {
		return key[:1], "", schema[""]
	}
	keys, isTable := schema[key[0]]
	switch {
	case len(key) == 1 || !isTable || keys == nil:
		// A table line, a free table such as [aliases], or a value under
		// a setting, which the decoder reports as a value of the wrong type.
		return nil, "", nil
	case !slices.Contains(keys, key[1]):
		return key[:2], key[0], keys
	}
	return nil, "", nil
}

// validate checks the decoded config and fills in the defaults that depend
// on other settings.
func (cl *configLoader) validate(c *Config) {
	sh := &c.Smarthost
	k := func(key ...string) []string { return key }

	if c.Hostname == "" {
		cl.errorf(nil, `hostname is not set and the system's name is unknown; set hostname = "host.example.com"`)
	} else if reason := badHostname(c.Hostname); reason != "" {
		if cl.defined("hostname") {
			cl.errorf(k("hostname"), "hostname %q %s", c.Hostname, reason)
		} else {
			cl.errorf(nil, "the system's name %q %s; set hostname = \"host.example.com\"", c.Hostname, reason)
		}
	}
	if c.Domain == "" {
		c.Domain = c.Hostname
	} else if reason := badHostname(c.Domain); reason != "" {
		cl.errorf(k("domain"), "domain %q %s", c.Domain, reason)
	}
	if c.From != "" {
		if err := address.Check(c.From); err != nil {
			cl.errorf(k("from"), "from: %v", err)
		} else if address.IsLocal(c.From) {
			cl.errorf(k("from"), "from %q must be a full address, such as %q", c.From, c.From+"@example.com")
		}
	}

	cl.validateSmarthost(sh, "smarthost", "[smarthost]", func(key string) bool { return cl.defined("smarthost", key) })
	for i := range c.Routes {
		cl.validateRoute(&c.Routes[i], i+1)
	}

	if c.AliasesFile != "" && !filepath.IsAbs(c.AliasesFile) {
		cl.errorf(k("aliases_file"), "aliases_file %q must be an absolute path", c.AliasesFile)
	}
	for i, d := range c.LocalDomains {
		if reason := badHostname(d); reason != "" || d == "" {
			cl.errorf(k("local_domains"), "local_domains: %q %s", d, cmp.Or(reason, "is empty"))
		}
		c.LocalDomains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	if c.DefaultRecipient != "" {
		if err := address.Check(c.DefaultRecipient); err != nil {
			cl.errorf(k("default_recipient"), "default_recipient: %v", err)
		} else if address.IsLocal(c.DefaultRecipient) {
			cl.errorf(k("default_recipient"), "default_recipient %q must be a full address, such as %q", c.DefaultRecipient, c.DefaultRecipient+"@example.com")
		} else if recipient.New(recipient.Options{Hostname: c.Hostname, LocalDomains: c.LocalDomains}).IsLocal(c.DefaultRecipient) {
			cl.errorf(k("default_recipient"), "default_recipient %q is local itself; give an address the smarthost delivers to", c.DefaultRecipient)
		}
	}
	cl.validateRewrite(&c.Rewrite)
	if c.MaxRecipients < 0 {
		cl.errorf(k("max_recipients"), "max_recipients must be 0 (no limit) or more, not %d", c.MaxRecipients)
	}
	if c.Queue.Dir != "" && !filepath.IsAbs(c.Queue.Dir) {
		cl.errorf(k("queue", "dir"), "[queue] dir %q must be an absolute path (or \"\" to deliver without a spool)", c.Queue.Dir)
	}
	if c.Queue.Dir == "" {
		// Without a spool a message over a limit would have nowhere to wait.
		table, sh := "smarthost", &c.Smarthost
		for i := 0; sh.Policy().Zero() && i < len(c.Routes); i++ {
			table, sh = "route", &c.Routes[i].Smarthost
		}
		if !sh.Policy().Zero() {
			key := "rate"
			if sh.Rate.N == 0 {
				key = "daily_limit"
			}
			cl.errorf(k(table, key), "[%s] %s needs the spool, where mail over it waits: set [queue] dir, or take the limit out", table, key)
		}
	}
	if c.Queue.MaxAge <= 0 {
		cl.errorf(k("queue", "max_age"), "[queue] max_age must be more than 0s, not %v", c.Queue.MaxAge)
	}
	if c.Queue.Linger < 0 || c.Queue.Linger > Duration(time.Minute) {
		cl.errorf(k("queue", "linger"), "[queue] linger must be between 0s and 1m, not %v", c.Queue.Linger)
	}
	cl.validateListen(&c.Listen)

	// In file order, so that the messages are too.
	for _, key := range cl.md.Keys() {
		if len(key) != 2 || key[0] != "aliases" {
			continue
		}
		name, value := key[1], c.Aliases[key[1]]
		switch {
		case name == "":
			cl.errorf(key, "[aliases] has an empty name")
		case strings.TrimSpace(value) == "":
			cl.errorf(key, "%s is empty; give one or more addresses", tomlKeyName(key))
		case strings.ContainsAny(value, "\r\n\x00"):
			cl.errorf(key, "%s contains a line break or NUL", tomlKeyName(key))
		}
	}
}

// validateRewrite checks [rewrite]: full addresses, valid patterns.
func (cl *configLoader) validateRewrite(r *RewriteConfig) {
	full := func(key []string, what, addr string) {
		if err := address.Check(addr); err != nil {
			cl.errorf(key, "%s: %v", what, err)
		} else if address.IsLocal(addr) {
			cl.errorf(key, "%s %q must be a full address, such as %q", what, addr, addr+"@example.com")
		}
	}
	if r.Sender != "" {
		full([]string{"rewrite", "sender"}, "[rewrite] sender", r.Sender)
	}
	if r.From != "" {
		full([]string{"rewrite", "from"}, "[rewrite] from", r.From)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Users)) {
		full([]string{"rewrite", "users", name}, "[rewrite.users] "+name, r.Users[name])
	}
	for i, p := range r.AllowFrom {
		r.AllowFrom[i] = strings.ToLower(strings.TrimSpace(p))
		if r.AllowFrom[i] == "" || strings.ContainsAny(p, "\r\n\x00") {
			cl.errorf([]string{"rewrite", "allow_from"}, "[rewrite] allow_from: %q is not a pattern such as \"*@example.com\"", p)
		}
	}
}

// validateSmarthost checks one smarthost: [smarthost] (table
// "smarthost", label "[smarthost]") or a [[route]] (label "[[route]] 2").
// defined says whether the config sets a key of it; the port defaults by
// the TLS mode.
func (cl *configLoader) validateSmarthost(sh *Smarthost, table, label string, defined func(string) bool) {
	k := func(key string) []string { return []string{table, key} }
	e := func(key []string, format string, args ...any) {
		cl.errorf(key, strings.Replace(format, "[smarthost]", label, 1), args...)
	}
	switch {
	case sh.Host == "":
		e(nil, "[smarthost] host is not set")
	case strings.Contains(sh.Host, "://"):
		e(k("host"), "[smarthost] host %q must be a host name, not a URL; set tls and port for the rest", sh.Host)
	case strings.HasPrefix(sh.Host, "["):
		e(k("host"), "[smarthost] host %q: write an IPv6 address without brackets", sh.Host)
	case strings.Contains(sh.Host, ":") && net.ParseIP(sh.Host) == nil:
		h, p, _ := strings.Cut(sh.Host, ":")
		e(k("host"), "[smarthost] host %q must be a name only; write host = %q and port = %s", sh.Host, h, p)
	default:
		if reason := badHostname(sh.Host); reason != "" {
			e(k("host"), "[smarthost] host %q %s", sh.Host, reason)
		}
	}
	if defined("port") {
		if sh.Port < 1 || sh.Port > 65535 {
			e(k("port"), "[smarthost] port %d is out of range (1-65535)", sh.Port)
		}
	} else {
		sh.Port = map[TLSMode]int{TLSStartTLS: 587, TLSImplicit: 465, TLSNone: 25}[sh.TLS]
	}
	for i, f := range sh.Fallback {
		host, port := f, sh.Port
		if strings.Contains(f, "://") {
			e(k("fallback"), "[smarthost] fallback %q must be a host or host:port, not a URL", f)
			continue
		}
		if h, p, err := net.SplitHostPort(f); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				e(k("fallback"), "[smarthost] fallback %q: port %q is not 1-65535", f, p)
				continue
			}
			host, port = h, n
		}
		if reason := badHostname(host); reason != "" || host == "" {
			e(k("fallback"), "[smarthost] fallback %q must be a host or host:port", f)
			continue
		}
		sh.Fallback[i] = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if sh.TLSServerName != "" {
		if reason := badHostname(sh.TLSServerName); reason != "" {
			e(k("tls_server_name"), "[smarthost] tls_server_name %q %s", sh.TLSServerName, reason)
		}
	}
	if sh.CAFile != "" && !filepath.IsAbs(sh.CAFile) {
		e(k("ca_file"), "[smarthost] ca_file %q must be an absolute path", sh.CAFile)
	}
	for _, f := range []struct{ key, path string }{{"tls_cert_file", sh.TLSCertFile}, {"tls_key_file", sh.TLSKeyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			e(k(f.key), "[smarthost] %s %q must be an absolute path", f.key, f.path)
		}
	}
	if (sh.TLSCertFile == "") != (sh.TLSKeyFile == "") {
		set, unset := "tls_cert_file", "tls_key_file"
		if sh.TLSCertFile == "" {
			set, unset = unset, set
		}
		e(k(set), "[smarthost] %s is set but %s is not: a client certificate needs both", set, unset)
	}
	if sh.TLS == TLSNone {
		// Settings that promise a protection tls = "none" does not give.
		for _, key := range []string{"tls_fingerprint", "tls_cert_file", "tls_key_file", "tls_min_version"} {
			if defined(key) {
				e(k(key), `[smarthost] %s has no effect with tls = "none"`, key)
			}
		}
	}
	if strings.ContainsFunc(sh.Username, unicode.IsControl) {
		e(k("username"), "[smarthost] username contains a control character")
	}
	cl.validateAuth(sh, table, label, defined)
	if sh.MaxConnections < 1 || sh.MaxConnections > 100 {
		e(k("max_connections"), "[smarthost] max_connections must be 1 to 100, not %d", sh.MaxConnections)
	}
	if sh.DailyLimit < 0 {
		e(k("daily_limit"), "[smarthost] daily_limit must be 0 (no limit) or more, not %d", sh.DailyLimit)
	}
	if sh.ThrottlePause < Duration(time.Second) {
		e(k("throttle_pause"), "[smarthost] throttle_pause must be 1s or more, not %v", sh.ThrottlePause)
	}
	if sh.MaxMessagesPerConnection < 0 {
		e(k("max_messages_per_connection"), "[smarthost] max_messages_per_connection must be 0 (no limit) or more, not %d", sh.MaxMessagesPerConnection)
	}
	if sh.Timeout <= 0 {
		e(k("timeout"), "[smarthost] timeout must be more than 0s, not %v", sh.Timeout)
	}
}

// validateListen checks [listen] and fills in its defaults.
func (cl *configLoader) validateListen(l *ListenConfig) {
	if len(l.Addresses) == 0 {
		l.Addresses = []string{"127.0.0.1:25", "[::1]:25"}
	}
	for _, a := range l.Addresses {
		host, port, err := net.SplitHostPort(a)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil || host == "" {
			cl.errorf([]string{"listen", "addresses"}, "[listen] address %q is not host:port, as in \"127.0.0.1:25\" or \"[::1]:25\"", a)
		}
	}
	if (l.TLSCertFile == "") != (l.TLSKeyFile == "") {
		cl.errorf([]string{"listen", "tls_cert_file"}, "[listen] tls_cert_file and tls_key_file go together")
	}
	for _, f := range []struct{ key, path string }{{"tls_cert_file", l.TLSCertFile}, {"tls_key_file", l.TLSKeyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			cl.errorf([]string{"listen", f.key}, "[listen] %s %q must be an absolute path", f.key, f.path)
		}
	}
	if l.UsersFile != "" && !filepath.IsAbs(l.UsersFile) {
		cl.errorf([]string{"listen", "users_file"}, "[listen] users_file %q must be an absolute path", l.UsersFile)
	}
	if l.UsersFile != "" && l.TLSCertFile == "" {
		cl.errorf([]string{"listen", "users_file"}, "[listen] users_file needs tls_cert_file and tls_key_file: passwords go only over STARTTLS")
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = 20
	}
	if l.MaxConnections < 1 || l.MaxConnections > 1000 {
		cl.errorf([]string{"listen", "max_connections"}, "[listen] max_connections must be 1 to 1000, not %d", l.MaxConnections)
	}
}

// validateRoute checks the n-th [[route]] and fills in its defaults.
func (cl *configLoader) validateRoute(r *Route, n int) {
	label := "[[route]] " + strconv.Itoa(n)
	sh := &r.Smarthost
	// Set in the route, as far as its zero values tell.
	defined := func(key string) bool {
		switch key {
		case "port":
			return sh.Port != 0
		case "tls_fingerprint":
			return len(sh.TLSFingerprint) > 0
		case "tls_cert_file":
			return sh.TLSCertFile != ""
		case "tls_key_file":
			return sh.TLSKeyFile != ""
		case "tls_min_version":
			return sh.TLSMinVersion != ""
		case "password_command":
			return sh.PasswordCommand != nil
		}
		return false
	}
	if sh.TLS == "" {
		sh.TLS = TLSStartTLS
	}
	if sh.Auth == "" {
		sh.Auth = AuthAuto
	}
	if sh.Timeout == 0 {
		sh.Timeout = Duration(30 * time.Second)
	}
	if sh.MaxConnections == 0 {
		sh.MaxConnections = 4
	}
	if sh.ThrottlePause == 0 {
		sh.ThrottlePause = Duration(limits.FirstPause)
	}
	if len(r.Senders) == 0 {
		cl.errorf([]string{"route", "senders"}, "%s has no senders; give patterns such as senders = [\"*@example.org\"]", label)
	}
	for i, p := range r.Senders {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case strings.HasPrefix(p, "@"):
			p = "*" + p // "@example.org": every address at it
		case !strings.Contains(p, "@"):
			p = "*@" + p
		}
		if p == "*@" || strings.ContainsAny(p, " \t\r\n\x00") {
			cl.errorf([]string{"route", "senders"}, "%s: senders %q is not a pattern such as \"*@example.org\"", label, r.Senders[i])
		}
		r.Senders[i] = p
	}
	cl.validateSmarthost(sh, "route", label, defined)
	if sh.TLSMinVersion == "" {
		sh.TLSMinVersion = "1.2"
	}
}

// validateAuth checks the login settings of a smarthost (see
// validateSmarthost).
func (cl *configLoader) validateAuth(sh *Smarthost, table, label string, defined func(string) bool) {
	k := func(key string) []string { return []string{table, key} }
	e := func(key []string, format string, args ...any) {
		cl.errorf(key, strings.Replace(format, "[smarthost]", label, 1), args...)
	}
	var sources []string
	if sh.Password != "" {
		sources = append(sources, "password")
	}
	if sh.PasswordFile != "" {
		sources = append(sources, "password_file")
		if !filepath.IsAbs(sh.PasswordFile) {
			e(k("password_file"), "[smarthost] password_file %q must be an absolute path", sh.PasswordFile)
		}
	}
	if defined("password_command") {
		sources = append(sources, "password_command")
		if len(sh.PasswordCommand) == 0 || sh.PasswordCommand[0] == "" {
			e(k("password_command"), `[smarthost] password_command is empty; give the command and its arguments, as in ["pass", "show", "smtp"]`)
		}
	}
	if len(sources) > 1 {
		e(k(sources[1]), "[smarthost] set only one of password, password_file and password_command, not %s", strings.Join(sources, " and "))
	}

	oauth := sh.Auth == AuthXOAUTH2 || sh.Auth == AuthOAUTHBEARER
	switch {
	case sh.Auth == AuthNone:
		return // nothing is sent, whatever else is set
	case len(sources) > 0 && sh.Username == "":
		e(k(sources[0]), "[smarthost] %s is set but username is not", sources[0])
	case len(sources) == 0 && oauth:
		e(k("auth"), "[smarthost] auth = %q needs the access token: set password_command (or password or password_file)", sh.Auth)
	case len(sources) == 0 && sh.Username != "":
		e(k("username"), "[smarthost] username is set but there is no password, password_file or password_command")
	case len(sources) == 0 && sh.Auth != AuthAuto:
		e(k("auth"), "[smarthost] auth = %q needs username and a password", sh.Auth)
	}
	if sh.TLS == TLSNone && (sh.Username != "" || len(sources) > 0) && !sh.AllowPlaintextAuth && !sh.InsecurePlaintextAuth && !isLoopback(sh.Host) {
		e(k("tls"), `[smarthost] tls = "none" would send the password unencrypted; use tls = "starttls" or "tls", or set allow_plaintext_auth = true if the network to the smarthost is trusted`)
	}
}

// isLoopback reports whether host is this machine by name or address:
// AUTH without TLS stays on the machine then.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// badHostname returns why s cannot be a host or domain name, or "".
func badHostname(s string) string {
	switch {
	case strings.ContainsAny(s, "\r\n\x00"):
		return "contains a line break or NUL"
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return "contains a space or a control character"
	case strings.Contains(s, "@"):
		return "must be a name, not an address"
	}
	return ""
}

// parseEnum returns s if it is one of valid, or an error that starts with
// the quoted value and suggests what was meant.
func parseEnum(s string, valid []string, mistakes map[string]string) (string, error) {
	if slices.Contains(valid, s) {
		return s, nil
	}
	quoted := make([]string, len(valid))
	for i, v := range valid {
		quoted[i] = strconv.Quote(v)
	}
	list := strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
	guess := mistakes[strings.ToLower(s)]
	if guess == "" {
		guess = closest(s, valid)
	}
	if guess != "" {
		return "", fmt.Errorf("%q is not valid; did you mean %q? (one of %s)", s, guess, list)
	}
	return "", fmt.Errorf("%q is not valid; use one of %s", s, list)
}

// closest returns the word in words nearest to s when it is near enough to
// be a typo (two edits, or one for short words), or "".
func closest(s string, words []string) string {
	best, bestDist := "", 3
	if len(s) <= 4 {
		bestDist = 2
	}
	for _, w := range words {
		if d := editDistance(strings.ToLower(s), strings.ToLower(w)); d < bestDist {
			best, bestDist = w, d
		}
	}
	return best
}

// editDistance is the number of edits (insert, delete, replace, swap two
// neighbours) from a to b, in bytes: the optimal string alignment distance.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// tomlKeyName names a key as the user wrote it: "hostname",
// "[smarthost] port", "[aliases] root".
func tomlKeyName(key []string) string {
	switch len(key) {
	case 0:
		return ""
	case 1:
		return toml.Key(key).String()
	}
	return "[" + toml.Key(key[:len(key)-1]).String() + "] " + toml.Key(key[len(key)-1:]).String()
}

// splitTOMLKey splits a dotted key as the decoder prints it
// (`aliases."a.b"`) into its parts.
func splitTOMLKey(s string) []string {
	key, rest, ok := scanTOMLKey(s)
	if !ok || strings.TrimSpace(rest) != "" {
		return nil
	}
	return key
}

// tomlKeyLine returns the line of text where key is defined, or 0. The
// decoder knows but does not say, so this reads the text: table lines set
// the context for the keys after them, dotted keys add parts, and a key in
// an inline table is found at the line of its table. Lines inside
// multi-line strings are skipped.
func tomlKeyLine(text string, key []string) int {
	if len(key) == 0 {
		return 0
	}
	var table []string
	best, bestLen := 0, 0
	inString := "" // the delimiter of the multi-line string we are in
	text = strings.TrimPrefix(text, "\ufeff")
	for n, line := range strings.Split(text, "\n") {
		if inString != "" {
			if strings.Contains(line, inString) {
				inString = ""
			}
			continue
		}
		s := strings.TrimSpace(line)
		var path []string
		switch {
		case s == "" || s[0] == '#':
			continue
		case s[0] == '[':
			inner := strings.TrimPrefix(strings.TrimPrefix(s, "["), "[")
			t, rest, ok := scanTOMLKey(inner)
			if !ok || !strings.HasPrefix(rest, "]") {
				continue
			}
			table, path = t, t
		default:
			k, rest, ok := scanTOMLKey(s)
			if !ok || !strings.HasPrefix(rest, "=") {
				continue
			}
			path = append(slices.Clip(table), k...)
			v := strings.TrimSpace(rest[1:])
			for _, d := range []string{`"""`, `'''`} {
				if strings.HasPrefix(v, d) && !strings.Contains(v[3:], d) {
					inString = d
				}
			}
		}
		switch {
		case hasKeyPrefix(path, key):
			return n + 1
		case hasKeyPrefix(key, path) && len(path) > bestLen:
			best, bestLen = n+1, len(path)
		}
	}
	return best
}

func hasKeyPrefix(key, prefix []string) bool {
	return len(key) >= len(prefix) && slices.Equal(key[:len(prefix)], prefix)
}

// scanTOMLKey reads a dotted key (bare, "quoted" or 'literal' parts) from
// the start of s and returns its parts and what follows, trimmed.
func scanTOMLKey(s string) (key []string, rest string, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		var part string
		switch {
		case s == "":
			return nil, "", false
		case s[0] == '"':
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return nil, "", false
			}
			var err error
			if part, err = strconv.Unquote(s[:end+1]); err != nil {
				part = s[1:end]
			}
			s = s[end+1:]
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, "", false
			}
			part, s = s[1:end+1], s[end+2:]
		default:
			end := strings.IndexFunc(s, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
			})
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return nil, "", false
			}
			part, s = s[:end], s[end:]
		}
		key = append(key, part)
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return key, s, true
		}
		s = s[1:]
	}
}

// The environment variables that fill or override the config file, for
// containers (docker run -e ...). They are read only when the process may
// honour its environment (never setgid), and a config made from them alone
// needs no file: RELAYMAIL_SMARTHOST is enough.
var envSettings = []struct {
	name, key string // the variable, and the config key it sets
}{
	{"RELAYMAIL_SMARTHOST", "smarthost"}, // smtp://[user@]host[:port], smtps://..., smtp+plain://...
	{"RELAYMAIL_USERNAME", "smarthost.username"},
	{"RELAYMAIL_PASSWORD", "smarthost.password"},
	{"RELAYMAIL_PASSWORD_FILE", "smarthost.password_file"},
	{"RELAYMAIL_AUTH", "smarthost.auth"},
	{"RELAYMAIL_CA_FILE", "smarthost.ca_file"},
	{"RELAYMAIL_TLS_FINGERPRINT", "smarthost.tls_fingerprint"},
	{"RELAYMAIL_RATE", "smarthost.rate"},               // 30/minute
	{"RELAYMAIL_DAILY_LIMIT", "smarthost.daily_limit"}, // 500
	{"RELAYMAIL_HOSTNAME", "hostname"},
	{"RELAYMAIL_DOMAIN", "domain"},
	{"RELAYMAIL_FROM", "from"},
	{"RELAYMAIL_DEFAULT_RECIPIENT", "default_recipient"},
	{"RELAYMAIL_REWRITE_SENDER", "rewrite.sender"},
	{"RELAYMAIL_REWRITE_FROM", "rewrite.from"},
	{"RELAYMAIL_ALIASES", "aliases"}, // root=ops@example.com;www-data=web@example.com,root
	{"RELAYMAIL_DELIVERY", "delivery"},
	{"RELAYMAIL_QUEUE_DIR", "queue.dir"}, // "none": no spool
}

// applyEnv sets what the environment says over what the file said, and
// records which keys it set (for defaults and error messages).
func (cl *configLoader) applyEnv(c *Config, env func(string) string) {
	cl.fromEnv, cl.cleared = map[string]string{}, map[string]bool{}
	sh := &c.Smarthost
	for _, s := range envSettings {
		v := env(s.name)
		if v == "" {
			continue
		}
		cl.fromEnv[s.key] = s.name
		bad := func(format string, args ...any) {
			cl.add(0, fmt.Sprintf("$%s: ", s.name)+fmt.Sprintf(format, args...))
		}
		var err error
		switch s.key {
		case "smarthost":
			err = cl.applySmarthostURL(sh, v)
		case "smarthost.username":
			sh.Username = v
		case "smarthost.password":
			if env("RELAYMAIL_PASSWORD_FILE") != "" {
				bad("set RELAYMAIL_PASSWORD or RELAYMAIL_PASSWORD_FILE, not both")
			}
			sh.Password, sh.PasswordFile, sh.PasswordCommand = Secret(v), "", nil
			cl.cleared["smarthost.password_command"] = true
		case "smarthost.password_file":
			sh.Password, sh.PasswordFile, sh.PasswordCommand = "", v, nil
			cl.cleared["smarthost.password_command"] = true
		case "smarthost.auth":
			err = sh.Auth.UnmarshalText([]byte(v))
		case "smarthost.ca_file":
			sh.CAFile = v
		case "smarthost.tls_fingerprint":
			var f Fingerprints
			for _, p := range strings.Split(v, ",") {
				if err == nil {
					err = f.UnmarshalTOML(strings.TrimSpace(p))
				}
			}
			sh.TLSFingerprint = f
		case "smarthost.rate":
			err = sh.Rate.UnmarshalText([]byte(v))
		case "smarthost.daily_limit":
			if sh.DailyLimit, err = strconv.Atoi(v); err != nil || sh.DailyLimit < 0 {
				err = fmt.Errorf("%q is not a number of messages", v)
			}
		case "hostname":
			c.Hostname = v
		case "domain":
			c.Domain = v
		case "from":
			c.From = v
		case "default_recipient":
			c.DefaultRecipient = v
		case "rewrite.sender":
			c.Rewrite.Sender = v
		case "rewrite.from":
			c.Rewrite.From = v
		case "aliases":
			if c.Aliases == nil {
				c.Aliases = map[string]string{}
			}
			for _, entry := range strings.Split(v, ";") {
				name, targets, ok := strings.Cut(entry, "=")
				if name = strings.TrimSpace(name); !ok || name == "" || strings.TrimSpace(targets) == "" {
					bad("%q is not name=address[,address...]; separate aliases with ;", strings.TrimSpace(entry))
					continue
				}
				if strings.ContainsAny(targets, "\r\n\x00") {
					bad("alias %q contains a line break or NUL", name)
					continue
				}
				for k := range c.Aliases {
					if strings.EqualFold(k, name) {
						delete(c.Aliases, k) // the environment's wins
					}
				}
				c.Aliases[name] = strings.TrimSpace(targets)
			}
		case "delivery":
			err = c.Delivery.UnmarshalText([]byte(v))
		case "queue.dir":
			c.Queue.Dir = v
			if v == "none" {
				c.Queue.Dir = ""
			}
		}
		if err != nil {
			bad("%v", err)
		}
	}
}

// applySmarthostURL reads RELAYMAIL_SMARTHOST: smtp://host (STARTTLS, port
// 587), smtps://host (TLS, 465) or smtp+plain://host (no TLS, 25), with an
// optional user@ and :port. A password in the URL is refused: it would show
// in ps and docker inspect; use RELAYMAIL_PASSWORD_FILE.
func (cl *configLoader) applySmarthostURL(sh *Smarthost, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not smtp://[user@]host[:port] (or smtps://, smtp+plain://)", redactURL(v))
	}
	switch u.Scheme {
	case "smtp", "smtp+starttls":
		sh.TLS = TLSStartTLS
	case "smtps", "smtp+tls":
		sh.TLS = TLSImplicit
	case "smtp+plain", "smtp+none":
		sh.TLS = TLSNone
	default:
		return fmt.Errorf("scheme %q: use smtp:// (STARTTLS), smtps:// (TLS) or smtp+plain:// (no TLS)", u.Scheme)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return fmt.Errorf("holds a password: put it in RELAYMAIL_PASSWORD_FILE (or RELAYMAIL_PASSWORD), not in the URL")
		}
		sh.Username = u.User.Username()
		cl.fromEnv["smarthost.username"] = "RELAYMAIL_SMARTHOST"
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q: the URL has a path; write smtp://[user@]host[:port]", redactURL(v))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: the URL has a query or fragment; write smtp://[user@]host[:port]", redactURL(v))
	}
	// Another relay: nothing of the file's host stays (its port, its
	// fallbacks, the name its certificate carries).
	sh.Host, sh.Port, sh.Fallback, sh.TLSServerName = u.Hostname(), 0, nil, ""
	cl.cleared["smarthost.port"] = true
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("port %q is not a number", p)
		}
		sh.Port = n
		cl.fromEnv["smarthost.port"] = "RELAYMAIL_SMARTHOST"
	}
	cl.fromEnv["smarthost.tls"] = "RELAYMAIL_SMARTHOST"
	return nil
}

// defined reports whether the file or the environment sets key.
func (cl *configLoader) defined(key ...string) bool {
	k := strings.Join(key, ".")
	if cl.fromEnv[k] != "" {
		return true
	}
	return cl.md.IsDefined(key...) && !cl.cleared[k]
}

// redactURL hides what a URL holds before the host ("user:password@"):
// an error message must not show a password someone put there.
func redactURL(v string) string {
	i, j := strings.Index(v, "//"), strings.LastIndex(v, "@")
	if i >= 0 && j > i+2 {
		return v[:i+2] + "...@" + v[j+1:]
	}
	return v
}

// globMatch reports whether s matches pattern, where * stands for any run
// of characters (slashes too: a local part may hold one) and ? for one.
func globMatch(pattern, s string) bool {
	p, t := 0, 0
	star, mark := -1, 0
	for t < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[t]):
			p++
			t++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, t
			p++
		case star >= 0:
			p = star + 1
			mark++
			t = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// tableHeader is how a table is written: [smarthost], [[route]].
func tableHeader(t string) string {
	if t == "route" {
		return "[[route]]"
	}
	return "[" + t + "]"
}

// Label names sh in messages: "[smarthost]", or "[[route]] N".
func (c *Config) Label(sh *Smarthost) string {
	for i := range c.Routes {
		if sh == &c.Routes[i].Smarthost {
			return "[[route]] " + strconv.Itoa(i+1)
		}
	}
	return "[smarthost]"
}
