package smarthost

import (
	"bytes"
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The server side of the SASL mechanisms relaymail uses. go-sasl has a
// PLAIN server but it answers malformed input with 454 (temporary) and it
// has no LOGIN or XOAUTH2 server; its OAUTHBEARER server reports a bad
// token as 454 and panics on an empty final response. These are small and
// answer as real submission servers do: 535 5.7.8 for bad credentials, 501
// 5.5.2 for a response that cannot be parsed.

// checkFunc decides an exchange once a mechanism has decoded the
// credentials. malformed reports a response that could not be decoded;
// user and secret are then empty. An empty secret never matches.
type checkFunc func(user, secret string, malformed bool) error

var errMalformed = &smtp.SMTPError{
	Code:         501,
	EnhancedCode: smtp.EnhancedCode{5, 5, 2},
	Message:      "Malformed authentication response",
}

// plainServer is PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd.
type plainServer struct {
	check checkFunc
	done  bool
}

func (p *plainServer) Next(resp []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	if resp == nil {
		// No initial response: ask for it with an empty challenge.
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, true, p.check("", "", true)
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		// Acting for another user is not supported: fail the login.
		pass = ""
	}
	return nil, true, p.check(user, pass, false)
}

// loginServer is LOGIN (draft-murchison-sasl-login): the server prompts
// "Username:" then "Password:"; a client may send the user name as the
// initial response, as go-sasl's does.
type loginServer struct {
	check checkFunc
	step  int // 0: nothing yet, 1: asked for the user, 2: asked for the password, 3: done
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if resp == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp), false)
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

// xoauth2Server is Google's and Microsoft's XOAUTH2: the response is
// "user=" user ^A "auth=Bearer " token ^A ^A. A bad token gets a 334
// challenge with a JSON error; the client answers with an empty line and
// then gets 535. See https://developers.google.com/gmail/imap/xoauth2-protocol.
type xoauth2Server struct {
	check  checkFunc
	done   bool
	failed error // set after the error challenge
}

const xoauth2Error = `{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed != nil {
		return nil, true, x.failed
	}
	if x.done {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	x.done = true
	var user, token string
	var haveUser, haveToken bool
	fields := strings.Split(string(resp), "\x01")
	if len(fields) < 3 || fields[len(fields)-1] != "" || fields[len(fields)-2] != "" {
		return nil, true, x.check("", "", true)
	}
	for _, f := range fields[:len(fields)-2] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "user":
			user, haveUser = v, true
		case "auth":
			token, haveToken = cutPrefixFold(v, "Bearer ")
		}
	}
	if !haveUser || !haveToken {
		return nil, true, x.check("", "", true)
	}
	err := x.check(user, token, false)
	if err == smtp.ErrAuthFailed {
		x.failed = err
		return []byte(xoauth2Error), false, nil
	}
	return nil, true, err
}

// oauthBearerServer is OAUTHBEARER (RFC 7628): a GS2 header "n,a=user,"
// then ^A-separated key=value pairs ending in ^A ^A, with "auth=Bearer
// token". A bad token gets a 334 challenge with a JSON error (RFC 7628
// 3.2.2); the client answers ^A and then gets 535. Without a=, the user is
// the one whose token matches.
type oauthBearerServer struct {
	check  checkFunc
	users  map[string]string // user -> token
	done   bool
	failed error
}

const oauthBearerError = `{"status":"invalid_token","schemes":"bearer"}`

func (o *oauthBearerServer) Next(resp []byte) ([]byte, bool, error) {
	if o.failed != nil {
		return nil, true, o.failed
	}
	if o.done {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	o.done = true
	user, token, err := parseOAuthBearer(string(resp))
	if err != nil {
		return nil, true, o.check("", "", true)
	}
	if user == "" {
		user = o.userWithToken(token)
	}
	err = o.check(user, token, false)
	if err == smtp.ErrAuthFailed {
		o.failed = err
		return []byte(oauthBearerError), false, nil
	}
	return nil, true, err
}

// userWithToken returns the first user, in sorted order, whose token is
// token, or "".
func (o *oauthBearerServer) userWithToken(token string) string {
	users := make([]string, 0, len(o.users))
	for u := range o.users {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		if token != "" && o.users[u] == token {
			return u
		}
	}
	return ""
}

var errBadOAuthBearer = errors.New("malformed OAUTHBEARER response")

// parseOAuthBearer returns the authzid (RFC 5801 saslname, "" if absent)
// and the bearer token of an OAUTHBEARER client response.
func parseOAuthBearer(resp string) (user, token string, err error) {
	cb, rest, ok := strings.Cut(resp, ",")
	if !ok || (cb != "n" && cb != "y") {
		return "", "", errBadOAuthBearer
	}
	authz, kvs, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", errBadOAuthBearer
	}
	if authz != "" {
		name, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return "", "", errBadOAuthBearer
		}
		user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(name)
	}
	if !strings.HasPrefix(kvs, "\x01") || !strings.HasSuffix(kvs, "\x01\x01") {
		return "", "", errBadOAuthBearer
	}
	var haveToken bool
	for _, kv := range strings.Split(strings.TrimSuffix(kvs[1:], "\x01\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", "", errBadOAuthBearer
		}
		if k == "auth" {
			token, haveToken = cutPrefixFold(v, "Bearer ")
		}
	}
	if !haveToken {
		return "", "", errBadOAuthBearer
	}
	return user, token, nil
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case; the auth scheme
// is case-insensitive (RFC 7235 2.1).
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
