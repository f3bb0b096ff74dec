package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"relaymail/internal/sysexits"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/config/*.expected-error from the current messages")

// count32 is the 32 bytes from, from+1 and so on.
func count32(from byte) (d [32]byte) {
	for i := range d {
		d[i] = from + byte(i)
	}
	return d
}

// defaultSmarthost is [smarthost] with host set and every default applied.
func defaultSmarthost(host string) Smarthost {
	return Smarthost{Host: host, Port: 587, TLS: TLSStartTLS, Auth: AuthAuto, Timeout: Duration(30 * time.Second), TLSMinVersion: "1.2", MaxConnections: 4, ThrottlePause: Duration(time.Minute)}
}

func TestLoadConfig(t *testing.T) {
	defaults := ConfigDefaults{Hostname: "sys.example.org"}
	tests := []struct {
		name string
		toml string
		want func(path string) *Config
	}{
		{
			name: "only host: every default",
			toml: "[smarthost]\nhost = \"smtp.example.com\"\n",
			want: func(path string) *Config {
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: defaultSmarthost("smtp.example.com"), Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "domain defaults to the configured hostname",
			toml: "hostname = \"app01.example.com\"\n[smarthost]\nhost = \"smtp.example.com\"\n",
			want: func(path string) *Config {
				return &Config{Path: path, Hostname: "app01.example.com", Domain: "app01.example.com",
					Smarthost: defaultSmarthost("smtp.example.com"), Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "implicit TLS defaults to port 465",
			toml: "[smarthost]\nhost = \"smtp.example.com\"\ntls = \"tls\"\nusername = \"u\"\npassword_file = \"/etc/relaymail/pw\"\n",
			want: func(path string) *Config {
				sh := defaultSmarthost("smtp.example.com")
				sh.Port, sh.TLS, sh.Username, sh.PasswordFile = 465, TLSImplicit, "u", "/etc/relaymail/pw"
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: sh, Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "no TLS and no login defaults to port 25",
			toml: "[smarthost]\nhost = \"relay.internal\"\ntls = \"none\"\n",
			want: func(path string) *Config {
				sh := defaultSmarthost("relay.internal")
				sh.Port, sh.TLS = 25, TLSNone
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: sh, Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "plaintext login allowed explicitly",
			toml: "[smarthost]\nhost = \"relay.internal\"\ntls = \"none\"\nport = 2525\nusername = \"u\"\npassword = \"pw\"\ninsecure_plaintext_auth = true\n",
			want: func(path string) *Config {
				sh := defaultSmarthost("relay.internal")
				sh.Port, sh.TLS, sh.Username, sh.Password, sh.InsecurePlaintextAuth = 2525, TLSNone, "u", "pw", true
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: sh, Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "xoauth2 with a token command, every key set",
			toml: `hostname = "app01.example.com"
domain = "example.com"
from = "noreply@example.com"
max_message_size = "25MB"
max_recipients = 50

[smarthost]
host = "smtp.gmail.com"
port = 465
tls = "tls"
tls_server_name = "smtp.gmail.com"
ca_file = "/etc/ssl/extra.pem"
username = "me@example.com"
password_command = ["oauth2-token", "--account", "me"]
auth = "xoauth2"
timeout = "1m30s"
tls_fingerprint = ["00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F", "sha256////////////////////////////////////////////8="]
tls_cert_file = "/etc/relaymail/client.pem"
tls_key_file = "/etc/relaymail/client.key"
tls_min_version = 1.3
allow_plaintext_auth = false
insecure_plaintext_auth = false

[queue]
dir = "/srv/spool"

[aliases]
root = "ops@example.net"
"www-data" = "web@example.com, root"
`,
			want: func(path string) *Config {
				return &Config{Path: path, Hostname: "app01.example.com", Domain: "example.com", From: "noreply@example.com",
					MaxMessageSize: 25 << 20, MaxRecipients: 50,
					Smarthost: Smarthost{Host: "smtp.gmail.com", Port: 465, TLS: TLSImplicit, TLSServerName: "smtp.gmail.com",
						CAFile: "/etc/ssl/extra.pem", Username: "me@example.com",
						PasswordCommand: []string{"oauth2-token", "--account", "me"}, Auth: AuthXOAUTH2,
						Timeout: Duration(90 * time.Second), MaxConnections: 4, ThrottlePause: Duration(time.Minute),
						TLSFingerprint: Fingerprints{count32(0), [32]byte(bytes.Repeat([]byte{0xff}, 32))},
						TLSCertFile:    "/etc/relaymail/client.pem", TLSKeyFile: "/etc/relaymail/client.key", TLSMinVersion: "1.3"},
					Queue: QueueConfig{Dir: "/srv/spool", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive,
					Aliases: map[string]string{"root": "ops@example.net", "www-data": "web@example.com, root"}}
			},
		},
		{
			name: "auth none ignores the login settings",
			toml: "[smarthost]\nhost = \"relay.internal\"\ntls = \"none\"\nauth = \"none\"\nusername = \"u\"\n",
			want: func(path string) *Config {
				sh := defaultSmarthost("relay.internal")
				sh.Port, sh.TLS, sh.Auth, sh.Username = 25, TLSNone, AuthNone, "u"
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: sh, Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "CRLF line endings and a byte order mark",
			toml: "\ufeffhostname = \"app01.example.com\"\r\n[smarthost]\r\nhost = \"smtp.example.com\"\r\n",
			want: func(path string) *Config {
				return &Config{Path: path, Hostname: "app01.example.com", Domain: "app01.example.com",
					Smarthost: defaultSmarthost("smtp.example.com"), Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
		{
			name: "IPv6 host",
			toml: "[smarthost]\nhost = \"2001:db8::25\"\ntls_server_name = \"smtp.example.com\"\n",
			want: func(path string) *Config {
				sh := defaultSmarthost("2001:db8::25")
				sh.TLSServerName = "smtp.example.com"
				return &Config{Path: path, Hostname: "sys.example.org", Domain: "sys.example.org",
					Smarthost: sh, Queue: QueueConfig{Dir: "/var/spool/relaymail", MaxAge: fiveDays, Linger: Duration(2 * time.Second)}, Delivery: DeliverInteractive}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sendmail.conf")
			if err := os.WriteFile(path, []byte(tt.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(path, defaults)
			if err != nil {
				t.Fatalf("loadConfig(%q) error: %v", tt.toml, err)
			}
			want := tt.want(path)
			want.Mode = 0o600 // the file's mode, as written above
			if !strings.Contains(tt.toml, "reply_to") {
				want.Rewrite.ReplyTo = true // the default
			}
			if !strings.Contains(tt.toml, "[listen]") {
				want.Listen = ListenConfig{Addresses: []string{"127.0.0.1:25", "[::1]:25"}, MaxConnections: 20} // the defaults
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loadConfig(%q) =\n%#v\nwant\n%#v", tt.toml, *got, *want)
			}
		})
	}
}

// TestLoadConfigErrors loads each testdata/config/NAME.conf and compares
// the whole error text with NAME.expected-error. Run with -update to
// rewrite the expected files, then review the diff.
func TestLoadConfigErrors(t *testing.T) {
	confs, err := filepath.Glob("testdata/config/*.conf")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no testdata/config/*.conf: %v", err)
	}
	for _, conf := range confs {
		name := strings.TrimSuffix(filepath.Base(conf), ".conf")
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(conf, ConfigDefaults{Hostname: "sys.example.org"})
			if err == nil {
				t.Fatalf("loadConfig(%s) succeeded, want an error", conf)
			}
			if code := sysexits.CodeOf(err); code != sysexits.Config {
				t.Errorf("loadConfig(%s) exit code %v, want %v", conf, code, sysexits.Config)
			}
			golden := strings.TrimSuffix(conf, ".conf") + ".expected-error"
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test -run TestLoadConfigErrors -update to create it)", rerr)
			}
			if got := err.Error(); got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("loadConfig(%s) error:\n%s\nwant:\n%s", conf, got, want)
			}
			for _, secret := range []string{"s3cret-pw", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("loadConfig(%s) error shows the password: %s", conf, err)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sendmail.conf")
	_, err := loadConfig(path, ConfigDefaults{Hostname: "sys.example.org"})
	if code := sysexits.CodeOf(err); code != sysexits.Config {
		t.Errorf("loadConfig(missing) exit code %v, want %v", code, sysexits.Config)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadConfig(missing) = %v, want fs.ErrNotExist in the chain", err)
	}
	want := "cannot read config " + path + ": no such file or directory; create it from /usr/share/doc/relaymail/sendmail.conf.example and set [smarthost] host"
	if err == nil || err.Error() != want {
		t.Errorf("loadConfig(missing) error:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoadConfigUnreadable(t *testing.T) {
	dir := t.TempDir()
	_, err := loadConfig(dir, ConfigDefaults{Hostname: "sys.example.org"})
	if code := sysexits.CodeOf(err); code != sysexits.Config {
		t.Errorf("loadConfig(directory) exit code %v, want %v", code, sysexits.Config)
	}
	if want := "cannot read config " + dir + ": is a directory"; err == nil || err.Error() != want {
		t.Errorf("loadConfig(directory) error: %v, want %s", err, want)
	}
}

func TestLoadConfigTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sendmail.conf")
	big := "[smarthost]\nhost = \"smtp.example.com\"\n" + strings.Repeat("# padding\n", maxConfigSize/10+1)
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path, ConfigDefaults{Hostname: "sys.example.org"})
	if code := sysexits.CodeOf(err); code != sysexits.Config || !strings.Contains(fmt.Sprint(err), "larger than 1 MiB") {
		t.Errorf("loadConfig(2 MiB) = %v (%v), want a size error with code %v", err, code, sysexits.Config)
	}
}

func TestLoadConfigNoHostname(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sendmail.conf")
	if err := os.WriteFile(path, []byte("[smarthost]\nhost = \"smtp.example.com\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path, ConfigDefaults{})
	want := path + `: hostname is not set and the system's name is unknown; set hostname = "host.example.com"`
	if err == nil || err.Error() != want {
		t.Errorf("loadConfig without a system name: %v, want %s", err, want)
	}
}

// TestConfigExample keeps sendmail.conf.example valid and in step with the
// code: it must load, and set every key there is.
func TestConfigExample(t *testing.T) {
	c, err := loadConfig("sendmail.conf.example", ConfigDefaults{Hostname: "sys.example.org"})
	if err != nil {
		t.Fatalf("sendmail.conf.example: %v", err)
	}
	if c.Smarthost.Host != "smtp.example.com" || c.Smarthost.Port != 587 || c.Smarthost.Password != "app-password-from-your-provider" {
		t.Errorf("sendmail.conf.example loaded as %+v", c.Smarthost)
	}
	text, err := os.ReadFile("sendmail.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	for table, keys := range configSchema() {
		for _, k := range keys {
			name := tomlKeyName([]string{table, k})
			if table == "" {
				name = k
			}
			if _, isTable := configSchema()[k]; isTable {
				full := k
				if table != "" {
					full = table + "." + k
				}
				// An optional array of tables ([[route]]) may be shown
				// commented out.
				if !regexp.MustCompile(`(?m)^(\[` + regexp.QuoteMeta(full) + `\]|#? ?\[\[` + regexp.QuoteMeta(full) + `\]\])$`).Match(text) {
					t.Errorf("sendmail.conf.example has no [%s] table", full)
				}
				continue
			}
			// Documented, if only in a comment ("# ca_file = ...").
			if !regexp.MustCompile(`(?m)^[#\s]*` + regexp.QuoteMeta(k) + ` = `).Match(text) {
				t.Errorf("sendmail.conf.example does not document %s", name)
			}
		}
	}
}

// TestConfigHidesPassword prints a loaded config every way fmt can.
func TestConfigHidesPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sendmail.conf")
	conf := "[smarthost]\nhost = \"smtp.example.com\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path, ConfigDefaults{Hostname: "sys.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Smarthost.Password) != "hunter2-secret" {
		t.Fatalf("string(Password) = %q, want the password", string(c.Smarthost.Password))
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		for _, v := range []any{c, *c, c.Smarthost, &c.Smarthost, c.Smarthost.Password} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) ||
				strings.Contains(out, fmt.Sprintf("%X", "hunter2")) {
				t.Errorf("Sprintf(%q, %T) shows the password: %s", format, v, out)
			}
		}
	}
	if got := fmt.Sprintf("%+v", c.Smarthost); !strings.Contains(got, "Password:<redacted>") {
		t.Errorf("%%+v of Smarthost = %s, want Password:<redacted>", got)
	}
	if got := fmt.Sprintf("%v", Secret("")); got != "" {
		t.Errorf("empty Secret prints as %q, want nothing", got)
	}
}

func TestTOMLKeyLine(t *testing.T) {
	text := `# comment: host = "not this"
hostname = "a"   # line 2
'quoted.key' = 1
[smarthost]
host = "x"
description = """
port = 1
"""
"port" = 2
[ aliases ]
"a.b" = "c"
[queue]
dir.deeper = 1
inline = { x = 1, y = 2 }
`
	tests := []struct {
		key  []string
		want int
	}{
		{[]string{"hostname"}, 2},
		{[]string{"quoted.key"}, 3},
		{[]string{"smarthost"}, 4},
		{[]string{"smarthost", "host"}, 5},
		{[]string{"smarthost", "port"}, 9},
		{[]string{"aliases", "a.b"}, 11},
		{[]string{"queue", "dir"}, 13},
		{[]string{"queue", "dir", "deeper"}, 13},
		{[]string{"queue", "inline", "y"}, 14},
		{[]string{"nowhere"}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		if got := tomlKeyLine(text, tt.key); got != tt.want {
			t.Errorf("tomlKeyLine(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

// FuzzParseConfig checks that no config text makes parseConfig panic, that
// every error carries the config exit code, and that a config that loads
// is complete.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"sendmail.conf.example", "testdata/config/many-problems.conf", "testdata/config/inline-table.conf"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("[smarthost]\nhost = \"h\"\n'a.b'.\"c\\\"\" = 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parseConfig("sendmail.conf", text, ConfigDefaults{Hostname: "sys.example.org"})
		if err != nil {
			if code := sysexits.CodeOf(err); code != sysexits.Config {
				t.Fatalf("parseConfig(%q) error %q has exit code %v", text, err, code)
			}
			return
		}
		if c.Smarthost.Host == "" || c.Smarthost.Port == 0 || c.Domain == "" || c.Smarthost.Timeout <= 0 {
			t.Fatalf("parseConfig(%q) = %+v, incomplete", text, c)
		}
	})
}

const fiveDays = Duration(5 * 24 * time.Hour)

// TestConfigEnv: RELAYMAIL_* variables fill or override the file, and make
// a config with no file at all.
func TestConfigEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sendmail.conf")
	if err := os.WriteFile(file, []byte("hostname = \"app01.example.com\"\nfrom = \"file@example.com\"\n[smarthost]\nhost = \"file.example.com\"\nusername = \"u\"\npassword_file = \"/etc/pw\"\n[aliases]\npostmaster = \"root\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	hex := strings.Repeat("ab", 32)

	cfg, err := loadConfig(file, ConfigDefaults{Hostname: "sys.example.org", Env: env(map[string]string{
		"RELAYMAIL_SMARTHOST":         "smtps://me%40example.com@smtp.example.com",
		"RELAYMAIL_PASSWORD":          "hunter2",
		"RELAYMAIL_FROM":              "web@example.com",
		"RELAYMAIL_DEFAULT_RECIPIENT": "admin@example.com",
		"RELAYMAIL_ALIASES":           "root=ops@example.com, dev@example.com; www-data = web@example.com",
		"RELAYMAIL_TLS_FINGERPRINT":   hex + ", " + strings.Repeat("CD", 32),
		"RELAYMAIL_QUEUE_DIR":         "none",
		"RELAYMAIL_DELIVERY":          "background",
	})})
	if err != nil {
		t.Fatal(err)
	}
	sh := cfg.Smarthost
	if sh.Host != "smtp.example.com" || sh.Port != 465 || sh.TLS != TLSImplicit || sh.Username != "me@example.com" ||
		sh.Password != "hunter2" || sh.PasswordFile != "" || len(sh.TLSFingerprint) != 2 {
		t.Errorf("smarthost from the environment: %+v", sh)
	}
	if cfg.Hostname != "app01.example.com" || cfg.From != "web@example.com" || cfg.DefaultRecipient != "admin@example.com" ||
		cfg.Queue.Dir != "" || cfg.Delivery != DeliverBackground {
		t.Errorf("config from file and environment: %+v", cfg)
	}
	if want := map[string]string{"postmaster": "root", "root": "ops@example.com, dev@example.com", "www-data": "web@example.com"}; !reflect.DeepEqual(cfg.Aliases, want) {
		t.Errorf("aliases %q, want %q", cfg.Aliases, want)
	}

	// No file: the environment alone.
	cfg, err = loadConfig(filepath.Join(dir, "missing.conf"), ConfigDefaults{Hostname: "sys.example.org", Env: env(map[string]string{
		"RELAYMAIL_SMARTHOST":     "smtp://relay.example.com:2525",
		"RELAYMAIL_USERNAME":      "u",
		"RELAYMAIL_PASSWORD_FILE": "/run/secrets/smtp",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if sh := cfg.Smarthost; sh.Host != "relay.example.com" || sh.Port != 2525 || sh.TLS != TLSStartTLS || sh.PasswordFile != "/run/secrets/smtp" {
		t.Errorf("smarthost from the environment alone: %+v", sh)
	}
	// Without RELAYMAIL_SMARTHOST a missing file is still an error, and
	// without Env (setgid) the variables count for nothing.
	if _, err := loadConfig(filepath.Join(dir, "missing.conf"), ConfigDefaults{Hostname: "x.example", Env: env(map[string]string{"RELAYMAIL_FROM": "a@x"})}); err == nil {
		t.Error("a missing file with only RELAYMAIL_FROM loaded")
	}
	cfg, err = loadConfig(file, ConfigDefaults{Hostname: "x.example"})
	if err != nil || cfg.Smarthost.Host != "file.example.com" {
		t.Errorf("without Env: %v, host %q", err, cfg.Smarthost.Host)
	}

	// A new relay from the environment keeps nothing of the file's host;
	// a password from it replaces the file's password_command.
	old := filepath.Join(dir, "old.conf")
	if err := os.WriteFile(old, []byte("[smarthost]\nhost = \"old.example.com\"\nport = 465\ntls = \"tls\"\ntls_server_name = \"old.example.com\"\nfallback = [\"backup.example.com\"]\nusername = \"u\"\npassword_command = [\"cat\", \"/run/secrets/old\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig(old, ConfigDefaults{Hostname: "x.example", Env: env(map[string]string{
		"RELAYMAIL_SMARTHOST": "smtp://new.example.net", "RELAYMAIL_PASSWORD": "s3cret"})})
	if err != nil {
		t.Fatal(err)
	}
	if sh := cfg.Smarthost; sh.Host != "new.example.net" || sh.Port != 587 || sh.TLS != TLSStartTLS || sh.Fallback != nil ||
		sh.TLSServerName != "" || sh.PasswordCommand != nil || sh.Password != "s3cret" {
		t.Errorf("new relay over the file's: %+v", sh)
	}

	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RELAYMAIL_SMARTHOST": "smtp://u:secret@h.example.com"}, "$RELAYMAIL_SMARTHOST: holds a password: put it in RELAYMAIL_PASSWORD_FILE"},
		{map[string]string{"RELAYMAIL_SMARTHOST": "https://h.example.com"}, `$RELAYMAIL_SMARTHOST: scheme "https": use smtp:// (STARTTLS), smtps:// (TLS) or smtp+plain:// (no TLS)`},
		{map[string]string{"RELAYMAIL_SMARTHOST": "h.example.com"}, `$RELAYMAIL_SMARTHOST: "h.example.com" is not smtp://[user@]host[:port]`},
		{map[string]string{"RELAYMAIL_ALIASES": "root ops@x"}, `$RELAYMAIL_ALIASES: "root ops@x" is not name=address[,address...]`},
		{map[string]string{"RELAYMAIL_FROM": "web"}, `from "web" must be a full address, such as "web@example.com" (set by $RELAYMAIL_FROM)`},
		{map[string]string{"RELAYMAIL_SMARTHOST": "smtp://h.example.com:99999"}, "port 99999 is out of range (1-65535) (set by $RELAYMAIL_SMARTHOST)"},
		{map[string]string{"RELAYMAIL_SMARTHOST": "smtp://user:secret@mail.example.com:58x7"}, `"smtp://...@mail.example.com:58x7" is not smtp://`},
		{map[string]string{"RELAYMAIL_PASSWORD": "a", "RELAYMAIL_PASSWORD_FILE": "/b"}, "$RELAYMAIL_PASSWORD: set RELAYMAIL_PASSWORD or RELAYMAIL_PASSWORD_FILE, not both"},
		{map[string]string{"RELAYMAIL_SMARTHOST": "smtp://h.example.com?x=1"}, "has a query or fragment"},
	} {
		_, err := loadConfig(file, ConfigDefaults{Hostname: "x.example", Env: env(tt.env)})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("env %q: error %v, want %q", tt.env, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("env %q: the error shows the password: %v", tt.env, err)
		}
	}
}

// TestRoutes: [[route]] tables parse with the [smarthost] keys and
// defaults of their own; RouteFor picks the first whose senders match.
func TestRoutes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sendmail.conf")
	conf := `[smarthost]
host = "smtp.example.com"

[[route]]
senders = ["*@Example.org", "shop.example.net"]
host = "smtp.example.org"
tls = "tls"
username = "relay@example.org"
password_file = "/etc/pw"
fallback = ["smtp2.example.org"]

[[route]]
senders = ["billing@example.com"]
host = "ses.example.com"
port = 2587
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, ConfigDefaults{Hostname: "app01.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 {
		t.Fatalf("%d routes", len(cfg.Routes))
	}
	r1 := cfg.Routes[0]
	if !slices.Equal(r1.Senders, []string{"*@example.org", "*@shop.example.net"}) || r1.Host != "smtp.example.org" || r1.Port != 465 ||
		r1.TLS != TLSImplicit || r1.Auth != AuthAuto || r1.Timeout != Duration(30*time.Second) || r1.TLSMinVersion != "1.2" ||
		!slices.Equal(r1.Fallback, []string{"smtp2.example.org:465"}) {
		t.Errorf("route 1: %+v", r1)
	}
	if r2 := cfg.Routes[1]; r2.Port != 2587 || r2.TLS != TLSStartTLS {
		t.Errorf("route 2: %+v", r2)
	}
	for sender, want := range map[string]string{
		"a@example.org": "route 1", "A@EXAMPLE.ORG": "route 1", "x@shop.example.net": "route 1",
		"billing@example.com": "route 2", "other@example.com": "", "": "", "a@sub.example.org": "",
		"d/x@example.org": "route 1", `"a/b"@example.org`: "route 1",
	} {
		name, sh := cfg.RouteFor(sender)
		if name != want || sh != cfg.SmarthostOf(name) {
			t.Errorf("RouteFor(%q) = %q, want %q", sender, name, want)
		}
	}

	bad := "[smarthost]\nhost = \"smtp.example.com\"\n[[route]]\nhost = \"a b\"\n[[route]]\nsenders = [\"a b\"]\nhost = \"h.example.com\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadConfig(path, ConfigDefaults{Hostname: "app01.example.com"})
	for _, want := range []string{
		"[[route]] 1 has no senders",
		`[[route]] 1 host "a b" contains a space`,
		`[[route]] 2: senders "a b" is not a pattern`,
		`[[route]] 2 tls = "none" would send the password unencrypted`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

// TestManPages: the man pages' sources name every config key and table,
// every flag and every exit code, so that they cannot fall behind.
func TestManPages(t *testing.T) {
	conf, err := os.ReadFile("doc/sendmail.conf.5.md")
	if err != nil {
		t.Fatal(err)
	}
	for table, keys := range configSchema() {
		for _, k := range keys {
			if _, isTable := configSchema()[k]; isTable {
				if !strings.Contains(string(conf), "["+k+"]") && !strings.Contains(string(conf), "["+table+"."+k+"]") {
					t.Errorf("sendmail.conf(5) has no [%s] section", k)
				}
				continue
			}
			if !strings.Contains(string(conf), "**"+k+"**") {
				t.Errorf("sendmail.conf(5) does not document %s (in [%s])", k, table)
			}
		}
	}
	for _, s := range envSettings {
		if !strings.Contains(string(conf), "**"+s.name+"**") {
			t.Errorf("sendmail.conf(5) does not name %s", s.name)
		}
	}
	man, err := os.ReadFile("doc/sendmail.8.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"-t", "-i", "-oi", "-f", "-r", "-F", "-B", "-N", "-R", "-V", "-C", "-v", "-oe", "-od", "-q",
		"-qI", "--drain", "-bp", "--json", "--delete", "--requeue", "--check", "-bm", "-bv", "-bi", "-I", "-bs", "-bV", "--version", "-bd", "-n"} {
		if !strings.Contains(string(man), "**"+flag+"**") {
			t.Errorf("sendmail(8) does not document %s", flag)
		}
	}
	for _, code := range []int{0, 64, 65, 66, 67, 69, 70, 71, 73, 74, 75, 77, 78} {
		if !strings.Contains(string(man), fmt.Sprintf("**%d**", code)) {
			t.Errorf("sendmail(8) does not document exit code %d", code)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"*@example.org", "a@example.org", true},
		{"*@example.org", "d/x@example.org", true},
		{"*@example.org", "a@sub.example.org", false},
		{"*@*.example.org", "a@sub.example.org", true},
		{"billing@example.com", "billing@example.com", true},
		{"b?lling@example.com", "billing@example.com", true},
		{"billing@example.com", "xbilling@example.com", false},
		{"*", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
	} {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
