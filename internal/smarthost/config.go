package smarthost

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// WriteCA writes CAPEM to path with mode 0644, replacing the file
// atomically. On failure it leaves no file at path.
func (s *Server) WriteCA(path string) error {
	return writeAtomic(path, s.caPEM, 0o644)
}

// WriteConfig writes a relaymail config (TOML) that sends to this server,
// for the end-to-end tests, make demo and make bench. It first writes the
// CA to path+".ca.pem"; the queue directory is path+".spool", which it does
// not create. The config appears atomically and with mode 0600, since it
// holds a password. The file is laid out as:
//
//	hostname = "demo.relaymail.test"    left out if extra sets hostname
//	domain = "relaymail.test"           left out if extra sets domain
//	<extra>
//	[smarthost]
//	host = "127.0.0.1"
//	port = <port>
//	tls = "starttls"                    or "tls" or "none", the server's mode
//	tls_server_name = "smarthost.test"  not with "none"
//	ca_file = "<path>.ca.pem"           not with "none"
//	username = "demo"                   see below
//	password = "demo-password"
//	[queue]
//	dir = "<path>.spool"
//
// The login is the first user of Users in sorted order; without Users, the
// first user of Tokens with auth = "xoauth2" (or "oauthbearer" when only
// that is offered) and the token as the password; with neither, none. With
// tls = "none" and a login, insecure_plaintext_auth = true is added.
//
// extra is raw TOML placed before [smarthost], so its plain key = value
// lines are top-level keys (from, a hostname of its own). It may also end
// with whole tables such as [aliases], but must not contain [smarthost] or
// [queue]: TOML forbids defining a table twice, and keys after a table
// header belong to that table.
func (s *Server) WriteConfig(path, extra string) error {
	ca := path + ".ca.pem"
	if err := s.WriteCA(ca); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# relaymail config for the test smarthost on %s, written by smarthost.WriteConfig.\n", s.Addr())
	top := topLevelKeys(extra)
	if !top["hostname"] {
		b.WriteString("hostname = \"demo.relaymail.test\"\n")
	}
	if !top["domain"] {
		b.WriteString("domain = \"relaymail.test\"\n")
	}
	if extra != "" {
		b.WriteString(extra)
		if !strings.HasSuffix(extra, "\n") {
			b.WriteString("\n")
		}
	}
	b.WriteString("\n[smarthost]\n")
	fmt.Fprintf(&b, "host = %s\n", tomlString(s.host))
	fmt.Fprintf(&b, "port = %d\n", s.port)
	fmt.Fprintf(&b, "tls = %s\n", tomlString(s.opts.TLS.String()))
	if s.opts.TLS != NoTLS {
		fmt.Fprintf(&b, "tls_server_name = %s\n", tomlString(DefaultHostname))
		fmt.Fprintf(&b, "ca_file = %s\n", tomlString(ca))
	}
	if user, secret, auth := s.login(); user != "" {
		fmt.Fprintf(&b, "username = %s\n", tomlString(user))
		fmt.Fprintf(&b, "password = %s\n", tomlString(secret))
		if auth != "" {
			fmt.Fprintf(&b, "auth = %s\n", tomlString(auth))
		}
		if s.opts.TLS == NoTLS {
			b.WriteString("insecure_plaintext_auth = true\n")
		}
	}
	b.WriteString("\n[queue]\n")
	fmt.Fprintf(&b, "dir = %s\n", tomlString(path+".spool"))
	return writeAtomic(path, []byte(b.String()), 0o600)
}

// login picks the credentials WriteConfig writes, and the auth setting
// they need ("" for relaymail's default).
func (s *Server) login() (user, secret, auth string) {
	if len(s.opts.Users) > 0 && (slices.Contains(s.mechs, "PLAIN") || slices.Contains(s.mechs, "LOGIN")) {
		user = firstKey(s.opts.Users)
		return user, s.opts.Users[user], ""
	}
	if len(s.opts.Tokens) > 0 {
		auth := ""
		switch {
		case slices.Contains(s.mechs, "XOAUTH2"):
			auth = "xoauth2"
		case slices.Contains(s.mechs, "OAUTHBEARER"):
			auth = "oauthbearer"
		default:
			return "", "", ""
		}
		user = firstKey(s.opts.Tokens)
		return user, s.opts.Tokens[user], auth
	}
	return "", "", ""
}

func firstKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[0]
}

// topLevelKeys returns the bare keys that extra sets before its first
// table header. It is no TOML parser: it only has to spot hostname and
// domain.
func topLevelKeys(extra string) map[string]bool {
	keys := make(map[string]bool)
	sc := bufio.NewScanner(strings.NewReader(extra))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			break
		}
		if k, _, ok := strings.Cut(line, "="); ok {
			keys[strings.Trim(strings.TrimSpace(k), `"'`)] = true
		}
	}
	return keys
}

// tomlString quotes s as a TOML basic string. strconv.Quote will not do:
// TOML has no \x escapes.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeAtomic writes data to a temporary file next to path and renames it
// over path (rename within one directory, or it is not atomic), so that a
// reader polling for path never sees it half-written.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("smarthost: write %s: %v", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		// Chmod, not the mode argument of OpenFile: the umask must not
		// make the CA unreadable to relaymail running as another user.
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("smarthost: write %s: %v", path, err)
	}
	return nil
}
