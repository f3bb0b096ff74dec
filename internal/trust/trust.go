// Package trust verifies the smarthost's certificate chain against the
// system's roots and a config's extra roots, reading only the roots the
// chain can use.
//
// crypto/x509's SystemCertPool parses every certificate of the system
// bundle and of /etc/ssl/certs, about 280 on Debian, which costs a sendmail
// process 20 to 30 ms: more than the whole SMTP session on a LAN. A
// process that sends one message needs one or two of them. A Verifier
// therefore decodes the bundle's PEM blocks, reads each certificate's
// subject without parsing the rest, and parses only those whose subject is
// the issuer of a certificate the server presented. Any chain x509.Verify
// can build from the full pool ends in a root whose subject is the issuer
// of a presented certificate (roots are found by the issuer of the
// certificate below them, and the certificates below a root are the leaf
// and the presented intermediates), so the result is the same as with the
// full pool; a certificate that is skipped wrongly can only make
// verification fail, never succeed, because every root comes from the
// trust store.
//
// # Where the roots come from
//
// As crypto/x509 on Linux: the first bundle file that exists among
// DefaultFiles (or $SSL_CERT_FILE), and every file in DefaultDirs (or $SSL_CERT_DIR,
// colon-separated). The bundle is read first; the directories only when the
// bundle holds no root for the chain, since distributions build the bundle
// from the same directory.
package trust

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultFiles returns the bundle files crypto/x509 looks for on Linux, in
// its order.
func DefaultFiles() []string {
	return []string{
		"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo
		"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
		"/etc/ssl/ca-bundle.pem",                            // OpenSUSE
		"/etc/pki/tls/cacert.pem",                           // OpenELEC
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
		"/etc/ssl/cert.pem",                                 // Alpine
	}
}

// DefaultDirs returns the certificate directories crypto/x509 reads on
// Linux.
func DefaultDirs() []string { return []string{"/etc/ssl/certs", "/etc/pki/tls/certs"} }

// Verifier checks a server's certificate chain. Its zero value is not
// usable; fill ServerName and at least one source of roots.
type Verifier struct {
	ServerName string         // the name the leaf must carry
	Extra      *x509.CertPool // roots from the config's ca_file, or nil
	// System enables the system's roots. Files and Dirs replace
	// DefaultFiles and DefaultDirs (from $SSL_CERT_FILE and $SSL_CERT_DIR when the
	// process may honour its environment); nil means the defaults.
	System bool
	Files  []string
	Dirs   []string
	Now    func() time.Time // nil: time.Now
	// Pins, when set, replace the chain and name check: the leaf's
	// SHA-256, or that of its public key, must be one of them.
	Pins [][sha256.Size]byte
}

// VerifyConnection is a tls.Config.VerifyConnection for a config with
// InsecureSkipVerify set: it does what crypto/tls would have done with
// RootCAs, ServerName and the system's roots. It returns the errors of
// x509.Certificate.Verify (x509.UnknownAuthorityError,
// x509.HostnameError, x509.CertificateInvalidError), so callers can tell
// them apart.
//
// With Pins set, the chain and the name are not checked: the leaf must
// match a pin instead.
//
// A failure comes as an *Error, which carries the leaf certificate.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("the server presented no certificate")
	}
	var err error
	if len(v.Pins) > 0 {
		err = ErrPinMismatch
		cert, key := Fingerprints(certs[0])
		for _, p := range v.Pins {
			if p == cert || p == key {
				err = nil
			}
		}
	} else {
		err = v.verifyChain(certs)
	}
	if err != nil {
		return &Error{Leaf: certs[0], Err: err}
	}
	return nil
}

// ErrPinMismatch is the failure of a certificate that matches no pin.
var ErrPinMismatch = errors.New("the certificate matches none of the pinned SHA-256 fingerprints")

// Error is a verification failure and the certificate the server
// presented. Unwrap gives the x509 error (or ErrPinMismatch).
type Error struct {
	Leaf *x509.Certificate
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fingerprints returns the SHA-256 of c (its DER) and of its public key
// (the DER of its SubjectPublicKeyInfo).
func Fingerprints(c *x509.Certificate) (cert, key [sha256.Size]byte) {
	return sha256.Sum256(c.Raw), sha256.Sum256(c.RawSubjectPublicKeyInfo)
}

// Hex writes a fingerprint as openssl does: upper-case hex pairs joined by
// colons.
func Hex(d [sha256.Size]byte) string {
	var b strings.Builder
	for i, c := range d {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// verifyChain checks certs against the roots and the name.
func (v *Verifier) verifyChain(certs []*x509.Certificate) error {
	opts := x509.VerifyOptions{
		DNSName:       v.ServerName,
		Intermediates: x509.NewCertPool(),
	}
	if v.Now != nil {
		opts.CurrentTime = v.Now()
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	var firstErr error
	if v.Extra != nil {
		opts.Roots = v.Extra
		if _, err := certs[0].Verify(opts); err == nil {
			return nil
		} else {
			firstErr = err
		}
	}
	if !v.System {
		return firstErr
	}
	issuers := map[string]bool{}
	for _, c := range certs {
		issuers[string(c.RawIssuer)] = true
	}
	roots := v.roots(issuers)
	if len(roots) == 0 {
		if firstErr != nil {
			return firstErr
		}
		// No root can match: let Verify say so in its own words.
		opts.Roots = x509.NewCertPool()
		_, err := certs[0].Verify(opts)
		return err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	opts.Roots = pool
	if _, err := certs[0].Verify(opts); err != nil {
		// A chain through both a system root and an extra one is not
		// possible (roots end chains), so the system's answer stands
		// unless the extra roots gave a more telling one.
		var unknown x509.UnknownAuthorityError
		if firstErr != nil && errors.As(err, &unknown) {
			return firstErr
		}
		return err
	}
	return nil
}

// roots returns the system's certificates whose subject is in issuers: from
// the first bundle file that exists, or from the directories when the
// bundle has none.
func (v *Verifier) roots(issuers map[string]bool) []*x509.Certificate {
	files := v.Files
	if files == nil {
		files = DefaultFiles()
	}
	for _, f := range files {
		certs, err := v.fromFile(f, issuers)
		if err != nil {
			continue // missing or unreadable: crypto/x509 tries the next one
		}
		if len(certs) > 0 {
			return certs
		}
		break
	}
	dirs := v.Dirs
	if dirs == nil {
		dirs = DefaultDirs()
	}
	var out []*x509.Certificate
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			certs, _ := v.fromFile(filepath.Join(d, e.Name()), issuers)
			out = append(out, certs...)
		}
	}
	return out
}

// fromFile parses the certificates of one PEM file whose subject is in
// issuers.
func (v *Verifier) fromFile(name string, issuers map[string]bool) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue
		}
		subject, ok := subjectOf(block.Bytes)
		if ok && !issuers[string(subject)] {
			continue
		}
		// Parsed when the subject matches, or when it could not be read
		// cheaply (then the parser has the last word).
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !issuers[string(c.RawSubject)] {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// subjectOf returns the DER of a certificate's subject Name, found by
// walking the outer structure of RFC 5280 4.1 without decoding anything
// else: Certificate SEQUENCE { TBSCertificate SEQUENCE { [0] version
// OPTIONAL, serialNumber, signature, issuer, validity, subject, ... } }.
func subjectOf(der []byte) ([]byte, bool) {
	cert, _, ok := element(der, 0x30)
	if !ok {
		return nil, false
	}
	tbs, _, ok := element(cert, 0x30)
	if !ok {
		return nil, false
	}
	if len(tbs) > 0 && tbs[0] == 0xa0 { // [0] EXPLICIT version
		if _, tbs, ok = element(tbs, 0xa0); !ok {
			return nil, false
		}
	}
	for _, tag := range []byte{0x02, 0x30, 0x30, 0x30} { // serial, signature, issuer, validity
		if _, tbs, ok = element(tbs, tag); !ok {
			return nil, false
		}
	}
	start := tbs
	_, rest, ok := element(tbs, 0x30)
	if !ok {
		return nil, false
	}
	return start[:len(start)-len(rest)], true
}

// element reads one DER element with the given tag from the front of b,
// returning its contents and what follows it.
func element(b []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n := int(b[1])
	b = b[2:]
	if n >= 0x80 {
		size := n & 0x7f
		if size == 0 || size > 4 || len(b) < size {
			return nil, nil, false
		}
		n = 0
		for _, c := range b[:size] {
			n = n<<8 | int(c)
		}
		b = b[size:]
	}
	if n < 0 || n > len(b) {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// FromEnv returns the Files and Dirs $SSL_CERT_FILE and $SSL_CERT_DIR name,
// as crypto/x509 honours them; nil for either when unset. env is nil when
// the process must not honour its environment.
func FromEnv(env func(string) string) (files, dirs []string) {
	if env == nil {
		return nil, nil
	}
	if f := env("SSL_CERT_FILE"); f != "" {
		files = []string{f}
	}
	if d := env("SSL_CERT_DIR"); d != "" {
		dirs = strings.Split(d, ":")
	}
	return files, dirs
}

// PoolFromPEM returns a pool of the certificates in pem, or an error when
// it holds none.
func PoolFromPEM(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("holds no PEM certificate")
	}
	return pool, nil
}
