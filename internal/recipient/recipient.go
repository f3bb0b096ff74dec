// Package recipient turns what callers write as recipients (command-line
// words, To/Cc/Bcc addresses) into the envelope's recipients: parsed,
// checked, sent through the aliases when local, qualified, and each kept
// once.
//
// A recipient is local when it is a bare name ("root") or an address at
// localhost, localhost.localdomain, this machine's host name or one of the
// local domains: cron mails "root" and fail2ban "root@localhost", which no
// smarthost can deliver. Local names go through the aliases; what remains
// local goes to the default recipient when there is one, else is qualified
// with the domain.
package recipient

import (
	"fmt"
	"slices"
	"strings"

	"relaymail/internal/address"
	"relaymail/internal/aliases"
)

// Options say what is local and where local names go.
type Options struct {
	Hostname     string        // this machine's name: name@Hostname is local
	LocalDomains []string      // more domains whose addresses are local, lower case
	Domain       string        // qualifies local names that have no alias
	Aliases      aliases.Table // may be nil
	// DefaultRecipient, when set, gets the mail of local names that no
	// alias takes, instead of name@Domain.
	DefaultRecipient string
}

// List collects recipients in the order they were added.
type List struct {
	o     Options
	addrs []string
	seen  map[string]bool
}

// New returns an empty List.
func New(o Options) *List {
	return &List{o: o, seen: map[string]bool{}}
}

// SyntaxError is a recipient that cannot be parsed or is unsafe for the
// envelope. The caller's data is wrong.
type SyntaxError struct{ Err error }

func (e *SyntaxError) Error() string { return e.Err.Error() }
func (e *SyntaxError) Unwrap() error { return e.Err }

// AliasError is a loop or a bad target in the aliases. The configuration
// is wrong.
type AliasError struct{ Err error }

func (e *AliasError) Error() string { return e.Err.Error() }
func (e *AliasError) Unwrap() error { return e.Err }

// Add adds every address in word, an RFC 5322 address list. It returns a
// *SyntaxError or an *AliasError; on error nothing of word is added.
func (l *List) Add(word string) error {
	addrs, err := address.ParseList(word)
	if err != nil {
		return &SyntaxError{err}
	}
	var out []string
	for _, a := range addrs {
		if err := address.Check(a); err != nil {
			return &SyntaxError{err}
		}
		targets := []string{a}
		if name, ok := l.local(a); ok {
			expanded, err := l.o.Aliases.Expand(name)
			if err != nil {
				return &AliasError{err}
			}
			targets = []string{name}
			if expanded != nil {
				targets = expanded
			}
		}
		for _, t := range targets {
			if name, ok := l.local(t); ok {
				t = address.Qualify(name, l.o.Domain)
				if l.o.DefaultRecipient != "" {
					t = l.o.DefaultRecipient
				}
			}
			if err := address.Check(t); err != nil {
				return &AliasError{fmt.Errorf("alias of %q: %w", a, err)}
			}
			out = append(out, t)
		}
	}
	for _, t := range out {
		if key := dedupKey(t); !l.seen[key] {
			l.seen[key] = true
			l.addrs = append(l.addrs, t)
		}
	}
	return nil
}

// IsLocal reports whether addr is a local address: a bare name, or one at
// localhost, the host name or a local domain.
func (l *List) IsLocal(addr string) bool {
	_, ok := l.local(addr)
	return ok
}

// Addrs returns the recipients, each once, in the order first added.
func (l *List) Addrs() []string { return l.addrs }

// local returns the name of a local address.
func (l *List) local(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, true
	}
	domain := strings.ToLower(addr[i+1:])
	if domain == "localhost" || domain == "localhost.localdomain" || domain == strings.ToLower(l.o.Hostname) || slices.Contains(l.o.LocalDomains, domain) {
		return addr[:i], true
	}
	return "", false
}

// dedupKey compares addresses as mail servers do: the domain ignores case,
// the local part may not (RFC 5321 2.4), so it is kept.
func dedupKey(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i] + strings.ToLower(addr[i:])
}
