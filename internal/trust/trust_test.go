package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ca is a generated certificate and its key.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

// issue makes a certificate for name signed by parent (self-signed when
// parent is nil).
func issue(t *testing.T, name string, parent *ca, isCA bool, dns ...string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"relaymail trust test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              dns,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: c, key: key}
}

func pemOf(certs ...*ca) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
	}
	return b.Bytes()
}

func state(certs ...*ca) tls.ConnectionState {
	var cs tls.ConnectionState
	for _, c := range certs {
		cs.PeerCertificates = append(cs.PeerCertificates, c.cert)
	}
	return cs
}

func write(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifyConnection(t *testing.T) {
	dir := t.TempDir()
	root := issue(t, "Root", nil, true)
	inter := issue(t, "Intermediate", root, true)
	leaf := issue(t, "smtp.example.com", inter, false, "smtp.example.com")
	other := issue(t, "Other Root", nil, true)
	private := issue(t, "Private CA", nil, true)
	privLeaf := issue(t, "relay.lan", private, false, "relay.lan")
	var decoys []*ca
	for i := 0; i < 20; i++ {
		decoys = append(decoys, issue(t, "Decoy", nil, true)) // same subject name as each other, none signed the chain
	}
	bundle := write(t, filepath.Join(dir, "bundle.pem"), append(pemOf(decoys...), pemOf(other, root)...))
	noRoot := write(t, filepath.Join(dir, "noroot.pem"), pemOf(other))
	certDir := filepath.Join(dir, "certs")
	os.Mkdir(certDir, 0o755)
	write(t, filepath.Join(certDir, "root.pem"), pemOf(root))
	emptyDir := t.TempDir()
	extra, err := PoolFromPEM(pemOf(private))
	if err != nil {
		t.Fatal(err)
	}

	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	tests := []struct {
		name    string
		v       *Verifier
		chain   tls.ConnectionState
		wantErr any // nil, or a pointer to the error type
	}{
		{"root in bundle", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(leaf, inter), nil},
		{"first existing bundle wins", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{filepath.Join(dir, "missing"), bundle}, Dirs: []string{emptyDir}}, state(leaf, inter), nil},
		{"root only in a directory", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{noRoot}, Dirs: []string{certDir}}, state(leaf, inter), nil},
		{"root nowhere", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{noRoot}, Dirs: []string{emptyDir}}, state(leaf, inter), &unknown},
		{"missing intermediate", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(leaf), &unknown},
		{"wrong name", &Verifier{ServerName: "mail.example.org", System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(leaf, inter), &host},
		{"system off", &Verifier{ServerName: "smtp.example.com", Extra: extra}, state(leaf, inter), &unknown},
		{"extra root", &Verifier{ServerName: "relay.lan", Extra: extra, System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(privLeaf), nil},
		{"extra and system", &Verifier{ServerName: "smtp.example.com", Extra: extra, System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(leaf, inter), nil},
		{"extra root, wrong name", &Verifier{ServerName: "relay.example", Extra: extra, System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(privLeaf), &host},
		{"self-signed leaf", &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{bundle}, Dirs: []string{emptyDir}}, state(issue(t, "smtp.example.com", nil, false, "smtp.example.com")), &unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.VerifyConnection(tt.chain)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("VerifyConnection: %v, want success", err)
				}
			case *x509.UnknownAuthorityError:
				if !errors.As(err, want) {
					t.Fatalf("VerifyConnection: %v (%T), want x509.UnknownAuthorityError", err, err)
				}
			case *x509.HostnameError:
				if !errors.As(err, want) {
					t.Fatalf("VerifyConnection: %v (%T), want x509.HostnameError", err, err)
				}
			}
		})
	}
	if err := (&Verifier{ServerName: "x"}).VerifyConnection(tls.ConnectionState{}); err == nil {
		t.Error("no certificates: want an error")
	}
}

// TestVerifyConnectionSkipsUnrelatedRoots checks the point of the package:
// a bundle entry that is not a usable certificate but has an unrelated
// subject is never parsed, so it cannot cost time or fail the check, while
// the same corruption in the matching root does fail it.
func TestVerifyConnectionSkipsUnrelatedRoots(t *testing.T) {
	dir := t.TempDir()
	root := issue(t, "Root", nil, true)
	leaf := issue(t, "smtp.example.com", root, false, "smtp.example.com")
	other := issue(t, "Other Root", nil, true)
	// A copy of the other root with its signature damaged: crypto/x509
	// would still parse it, but it is never even looked at.
	var garbage bytes.Buffer
	pem.Encode(&garbage, &pem.Block{Type: "CERTIFICATE", Bytes: corruptTail(other.cert.Raw)})
	bundle := write(t, filepath.Join(dir, "bundle.pem"), append(garbage.Bytes(), pemOf(root)...))
	v := &Verifier{ServerName: "smtp.example.com", System: true, Files: []string{bundle}, Dirs: []string{t.TempDir()}}
	if err := v.VerifyConnection(state(leaf)); err != nil {
		t.Fatalf("VerifyConnection: %v", err)
	}
	got, err := v.fromFile(bundle, map[string]bool{string(root.cert.RawSubject): true})
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Raw, root.cert.Raw) {
		t.Fatalf("fromFile = %d certificates, %v; want the root alone", len(got), err)
	}
}

// corruptTail returns der with its last byte changed, inside the outer
// SEQUENCE, so the subject is still found but the signature is wrong.
func corruptTail(der []byte) []byte {
	out := append([]byte(nil), der...)
	out[len(out)-1] ^= 0xff
	return out
}

// TestSubjectOf compares the cheap subject reader with crypto/x509 on the
// machine's bundle, when there is one, and on generated certificates; and
// makes sure truncated input is refused, never a panic.
func TestSubjectOf(t *testing.T) {
	var ders [][]byte
	for _, c := range []*ca{issue(t, "A", nil, true), issue(t, "B", nil, false, "b.example")} {
		ders = append(ders, c.cert.Raw)
	}
	for _, f := range DefaultFiles() {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			ders = append(ders, block.Bytes)
		}
		break
	}
	t.Logf("%d certificates", len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		got, ok := subjectOf(der)
		if !ok || !bytes.Equal(got, c.RawSubject) {
			t.Errorf("certificate %d (%s): subjectOf = %x, %v; want %x", i, c.Subject, got, ok, c.RawSubject)
		}
		for n := 0; n < len(der); n += 1 + n/4 {
			subjectOf(der[:n]) // must not panic
		}
	}
}
