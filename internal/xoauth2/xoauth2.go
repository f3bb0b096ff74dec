// Package xoauth2 is the client side of Google's and Microsoft's XOAUTH2
// SASL mechanism, which go-sasl does not provide.
//
// The initial response is "user=" user ^A "auth=Bearer " token ^A ^A. On
// failure the server sends a 334 challenge holding a JSON error; the client
// answers with an empty line and the server then sends its final 5xx reply.
// See https://developers.google.com/gmail/imap/xoauth2-protocol.
package xoauth2

import (
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// Mechanism is the SASL name.
const Mechanism = "XOAUTH2"

type client struct {
	user, token string
	// challenged is set after the server's error challenge: it may send at
	// most one.
	challenged bool
}

// NewClient returns an XOAUTH2 client for user with an OAuth2 access token.
func NewClient(user, token string) sasl.Client {
	return &client{user: user, token: token}
}

func (c *client) Start() (string, []byte, error) {
	if strings.ContainsAny(c.user+c.token, "\x01\r\n") {
		return "", nil, errors.New("xoauth2: user or token contains a control character")
	}
	return Mechanism, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *client) Next(challenge []byte) ([]byte, error) {
	if c.challenged {
		return nil, errors.New("xoauth2: unexpected second challenge")
	}
	c.challenged = true
	// An empty response asks the server for its final error reply.
	return []byte{}, nil
}
