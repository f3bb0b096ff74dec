package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"relaymail/internal/smarthost"
	"relaymail/internal/trust"
)

// appendSmarthost adds settings to the [smarthost] table of the config.
func appendSmarthost(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	conf := strings.Replace(string(b), "\n[queue]\n", "\n"+text+"\n[queue]\n", 1)
	if conf == string(b) {
		t.Fatalf("no [queue] table in %s", path)
	}
	must(t, os.WriteFile(path, []byte(conf), 0o600))
}

// withoutCAFile takes ca_file out of the setup's config: only what the
// test adds can make the certificate acceptable.
func (s *setup) withoutCAFile() {
	s.t.Helper()
	b, err := os.ReadFile(s.conf)
	must(s.t, err)
	must(s.t, os.WriteFile(s.conf, regexp.MustCompile(`(?m)^ca_file = .*\n`).ReplaceAll(b, nil), 0o600))
}

// TestFingerprintPin: a relay whose certificate no CA the client knows
// signed, and whose name does not match, is accepted when pinned by the
// SHA-256 of its certificate (hex, as openssl prints it) or of its public
// key (base64); the message arrives with AUTH.
func TestFingerprintPin(t *testing.T) {
	for _, tt := range []struct {
		name string
		pin  func(cert, key [32]byte) string
	}{
		{"certificate, hex with colons", func(cert, _ [32]byte) string { return trust.Hex(cert) }},
		{"public key, base64", func(_, key [32]byte) string { return base64.StdEncoding.EncodeToString(key[:]) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, smarthost.Options{BadCert: true, WrongName: true}, "", "")
			cert, key := trust.Fingerprints(s.srv.Certificate())
			s.withoutCAFile()
			appendSmarthost(t, s.conf, fmt.Sprintf("tls_fingerprint = [%q, %q]\n", strings.Repeat("00", 32), tt.pin(cert, key)))
			o := s.run(simple, "-f", "a@example.com", "b@example.net")
			wantCode(t, o, 0, "")
			m := s.delivered(1)[0]
			wantEnvelope(t, m, "a@example.com", "b@example.net")
			if m.AuthUser != user || !m.TLS {
				t.Errorf("arrived with AUTH %q, TLS %v", m.AuthUser, m.TLS)
			}
		})
	}
}

// TestFingerprintMismatch: a pinned relay that presents another
// certificate, even one a trusted CA signed for the right name, gets
// nothing beyond STARTTLS; the error names the certificate it presented.
func TestFingerprintMismatch(t *testing.T) {
	s := newSetup(t, smarthost.Options{}, "", "")
	cert, _ := trust.Fingerprints(s.srv.Certificate())
	appendSmarthost(t, s.conf, fmt.Sprintf("tls_fingerprint = %q\n", strings.Repeat("AB", 32)))
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate fingerprint mismatch")
	wantQueued(t, o, "hint: the relay presented a certificate with SHA-256 "+trust.Hex(cert))
	s.nothingSent()
}

// TestUntrustedCertificateShowsFingerprint: the hint for an unknown CA
// gives the certificate's fingerprint to compare and pin.
func TestUntrustedCertificateShowsFingerprint(t *testing.T) {
	s := newSetup(t, smarthost.Options{BadCert: true}, "", "")
	cert, _ := trust.Fingerprints(s.srv.Certificate())
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "certificate not trusted")
	wantQueued(t, o, "compare its certificate's SHA-256 "+trust.Hex(cert))
	s.nothingSent()
}

// TestClientCertificate: a relay that requires a client certificate gets
// the configured one; without it nothing is sent and the hint says what
// to set; a key that is not the certificate's is a config error.
func TestClientCertificate(t *testing.T) {
	caPEM, certPEM, keyPEM, err := smarthost.ClientCertificate("app01.example.com")
	must(t, err)
	newRelay := func(t *testing.T) (*setup, string, string) {
		s := newSetup(t, smarthost.Options{ClientCAPEM: caPEM}, "", "")
		certFile, keyFile := filepath.Join(s.dir, "client.pem"), filepath.Join(s.dir, "client.key")
		must(t, os.WriteFile(certFile, certPEM, 0o644))
		must(t, os.WriteFile(keyFile, keyPEM, 0o600))
		return s, certFile, keyFile
	}
	t.Run("configured", func(t *testing.T) {
		s, certFile, keyFile := newRelay(t)
		appendSmarthost(t, s.conf, fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile))
		wantCode(t, s.run(simple, "-f", "a@example.com", "b@example.net"), 0, "")
		m := s.delivered(1)[0]
		if got := s.srv.Sessions()[m.Session].ClientCert; got != "app01.example.com" {
			t.Errorf("the relay saw client certificate %q, want app01.example.com", got)
		}
	})
	t.Run("missing", func(t *testing.T) {
		s, _, _ := newRelay(t)
		o := s.run(simple, "-f", "a@example.com", "b@example.net")
		wantQueued(t, o, "certificate required")
		wantQueued(t, o, "hint: the relay asks for a client certificate: set tls_cert_file and tls_key_file")
		s.nothingSent()
	})
	t.Run("key of another certificate", func(t *testing.T) {
		s, certFile, keyFile := newRelay(t)
		_, _, otherKey, err := smarthost.ClientCertificate("other")
		must(t, err)
		must(t, os.WriteFile(keyFile, otherKey, 0o600))
		appendSmarthost(t, s.conf, fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile))
		// Found at delivery, like a missing ca_file: the message waits
		// in the queue for the fix.
		o := s.run(simple, "-f", "a@example.com", "b@example.net")
		wantQueued(t, o, "tls_cert_file and tls_key_file: tls: private key does not match public key")
		s.nothingSent()
	})
}

// TestTLSMinVersion: with tls_min_version = "1.3", a relay that speaks
// only TLS 1.2 is refused; by default it is fine.
func TestTLSMinVersion(t *testing.T) {
	s := newSetup(t, smarthost.Options{MaxTLSVersion: tls.VersionTLS12}, "", "")
	appendSmarthost(t, s.conf, "tls_min_version = \"1.3\"\n")
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantQueued(t, o, "protocol version")
	s.nothingSent()

	s2 := newSetup(t, smarthost.Options{MaxTLSVersion: tls.VersionTLS12}, "", "")
	wantCode(t, s2.run(simple, "-f", "a@example.com", "b@example.net"), 0, "")
	s2.delivered(1)
}

// TestPlaintextAuthOnLoopback: with tls = "none", AUTH to a relay on this
// machine needs no allow_plaintext_auth: the password stays on the host.
// (A relay elsewhere is refused by the config check, see testdata/config.)
func TestPlaintextAuthOnLoopback(t *testing.T) {
	s := newSetup(t, smarthost.Options{TLS: smarthost.NoTLS}, "", "")
	b, err := os.ReadFile(s.conf)
	must(t, err)
	if strings.Contains(string(b), "plaintext_auth") {
		t.Fatalf("the setup allows plaintext AUTH itself:\n%s", b)
	}
	s.withoutCAFile()
	o := s.run(simple, "-f", "a@example.com", "b@example.net")
	wantCode(t, o, 0, "")
	m := s.delivered(1)[0]
	if m.AuthUser != user || m.TLS {
		t.Errorf("arrived with AUTH %q, TLS %v; want AUTH without TLS", m.AuthUser, m.TLS)
	}
}

// TestImageRootLayouts: without ca_file, the smarthost's CA is found where each
// kind of image keeps its roots, with /etc/ssl replaced (bind mount in a
// private mount namespace) by the image's layout holding only the test CA:
// Debian's bundle, which is also all a distroless image has; Alpine's
// /etc/ssl/cert.pem; a lone file in /etc/ssl/certs. With no roots at all
// the certificate is refused and the message waits in the queue.
func TestImageRootLayouts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount over /etc/ssl in a mount namespace (CI runs as root)")
	}
	for _, layout := range []struct{ name, file string }{
		{"debian_distroless", "certs/ca-certificates.crt"},
		{"alpine", "cert.pem"},
		{"certs_directory", "certs/relaymail-test-ca.pem"},
		{"none", ""},
	} {
		t.Run(layout.name, func(t *testing.T) {
			s := newSetup(t, smarthost.Options{}, "", "")
			s.withoutCAFile()
			ssl := filepath.Join(s.dir, "ssl")
			must(t, os.MkdirAll(filepath.Join(ssl, "certs"), 0o755))
			if layout.file != "" {
				must(t, s.srv.WriteCA(filepath.Join(ssl, layout.file)))
			}
			o := runCommand(t, strings.NewReader(simple), nil, []string{"unshare", "-m", "--propagation", "private",
				"sh", "-c", `mount --bind "$1" /etc/ssl && shift && exec "$@"`, "sh", ssl,
				binary, "-C", s.conf, "-f", "a@example.com", "b@example.net"})
			if strings.Contains(o.stderr, "mount") || strings.Contains(o.stderr, "unshare") {
				t.Skipf("cannot bind-mount over /etc/ssl here: %s", o.stderr)
			}
			if layout.file == "" {
				wantQueued(t, o, "certificate not trusted")
				s.nothingSent()
				return
			}
			wantCode(t, o, 0, "")
			wantEnvelope(t, s.delivered(1)[0], "a@example.com", "b@example.net")
		})
	}
}
