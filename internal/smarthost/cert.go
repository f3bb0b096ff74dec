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
	tmpl := leafTemplate(DefaultHostname, x509.ExtKeyUsageServerAuth, now)
	tmpl.DNSNames = serverNames
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	if wrongName {
		tmpl.Subject.CommonName = wrongNameHost
		tmpl.DNSNames = []string{wrongNameHost}
		tmpl.IPAddresses = nil
	}
	der, key, err := newLeaf(tmpl, signer, signerKey)
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

// leafTemplate is a certificate for name and usage, valid from an hour
// before now for a day.
func leafTemplate(name string, usage x509.ExtKeyUsage, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

// newLeaf makes a P-256 key and the certificate of tmpl for it, signed by
// signer.
func newLeaf(tmpl, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
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
	return certificate("relaymail smarthost client CA", leafTemplate(commonName, x509.ExtKeyUsageClientAuth, time.Now()))
}

// ServerCertificate makes a CA and a server certificate for the DNS names
// and IP addresses in names (the first is also its common name), signed by
// it, all PEM, valid as ClientCertificate's: for a real MTA that the tests
// use as the smarthost, with the CA in relaymail's ca_file.
func ServerCertificate(names ...string) (caPEM, certPEM, keyPEM []byte, err error) {
	tmpl := leafTemplate(names[0], x509.ExtKeyUsageServerAuth, time.Now())
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return certificate("relaymail test server CA", tmpl)
}

// certificate makes a CA named caName and the certificate of tmpl signed
// by it, all PEM.
func certificate(caName string, tmpl *x509.Certificate) (caPEM, certPEM, keyPEM []byte, err error) {
	ca, caKey, err := newCA(caName, tmpl.NotBefore.Add(time.Hour))
	if err != nil {
		return nil, nil, nil, err
	}
	der, key, err := newLeaf(tmpl, ca, caKey)
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
