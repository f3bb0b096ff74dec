package smarthost

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"time"
)

// serverNames are the DNS names the server certificate carries; it also
// carries the IP address 127.0.0.1.
var serverNames = []string{"localhost", DefaultHostname}

// wrongNameHost is the only name on the WrongName certificate.
const wrongNameHost = "wrong.example"

type certs struct {
	caPEM  []byte          // the CA clients are told to trust
	server tls.Certificate // what the server presents
}

// newCerts makes a CA and a server certificate, both ECDSA P-256 and valid
// from an hour before now for a day. With badCert the server certificate is
// signed by a second CA that is thrown away; with wrongName it is for
// wrong.example only.
func newCerts(badCert, wrongName bool, now time.Time) (*certs, error) {
	ca, caKey, err := newCA("relaymail smarthost test CA", now)
	if err != nil {
		return nil, err
	}
	signer, signerKey := ca, caKey
	if badCert {
		if signer, signerKey, err = newCA("relaymail smarthost untrusted CA", now); err != nil {
			return nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: DefaultHostname},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     serverNames,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if wrongName {
		tmpl.Subject.CommonName = wrongNameHost
		tmpl.DNSNames = []string{wrongNameHost}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	return &certs{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		server: tls.Certificate{
			Certificate: [][]byte{der},
			PrivateKey:  key,
		},
	}, nil
}

func newCA(name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// serial returns a random 128-bit serial number, so that no two test CAs
// look alike to a client that caches.
func serial() *big.Int {
	return new(big.Int).SetBytes(randomBytes(16))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

// ClientCertificate makes a CA and a client certificate for commonName
// signed by it (ECDSA P-256, valid from an hour ago for a day), all PEM:
// the CA goes in Options.ClientCAPEM, the certificate and key to the
// client.
func ClientCertificate(commonName string) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	ca, caKey, err := newCA("relaymail smarthost client CA", now)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
