// Package address splits, qualifies and checks the addresses that go into
// the SMTP envelope.
//
// Addresses arrive in two shapes: header field values read with -t (To, Cc,
// Bcc, Resent-*) and sendmail command-line words. Postfix parses both as RFC
// 5322 address lists with its permissive tok822 parser, and so do we:
//
//   - bare local names are addresses ("root", "www-data"): cron, logwatch and
//     unattended-upgrades write "To: root" and "From: root (Cron Daemon)";
//   - words that follow each other with no operator between them are
//     separate addresses, as if a comma were missing: "a@x b@y" is two
//     (tok822 "adds missing commas between addresses");
//   - "Name <a@x>" gives a@x, and everything before "<" is display name;
//   - groups give their members, "undisclosed-recipients:;" none;
//   - comments "(...)" nest and are dropped, wherever they are;
//   - "<@relay:a@x>" (an obsolete source route) gives a@x;
//   - a stray ";" separates like ",";
//   - "<>" is skipped.
//
// Unlike tok822 we refuse what we cannot read with certainty: unbalanced
// quotes, brackets and parentheses, control characters, a line break that
// is not folding, and any result that [Check] rejects. Every address
// ParseList returns passes Check, so it is safe to put in RCPT TO.
package address

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ParseList returns the addr-specs of an RFC 5322 address-list: a header
// field value (To, Cc, Bcc, Resent-*, From) or a sendmail command-line
// recipient word, which Postfix also parses as a list ("a@x, b@y" gives two,
// "Name <a@x>" gives a@x). Quoted local parts and domain literals come back
// as written (`"john doe"@x`, `a@[192.0.2.1]`); whitespace and comments
// between the tokens of an address are dropped (RFC 5322 4.4).
//
// CR and LF count as whitespace when they fold the value (are followed by a
// space or tab) or trail it; anywhere else they are an error. An empty list,
// or one holding only empty groups, gives nil and no error. Errors are plain
// (no exit code): the caller knows what the list was for.
func ParseList(s string) ([]string, error) {
	found, err := parseList(s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range found {
		out = append(out, f.addr)
	}
	return out, nil
}

// QualifyList adds "@domain" to each bare name in the address list s
// ("root, Ops <ops>" becomes "root@example.com, Ops <ops@example.com>"),
// leaving the rest of s as it is: display names, comments, groups. It
// reports whether it changed anything; s that does not parse is left
// alone.
func QualifyList(s, domain string) (string, bool) {
	found, err := parseList(s)
	if err != nil {
		return s, false
	}
	out, changed := s, false
	for i := len(found) - 1; i >= 0; i-- {
		if f := found[i]; IsLocal(f.addr) {
			sep := ""
			if f.end < len(out) && !strings.ContainsRune(" \t\r\n,;>(", rune(out[f.end])) {
				// Two words with nothing between them ("a"b) are two
				// addresses to ParseList; qualified, they need a space.
				sep = " "
			}
			out = out[:f.end] + "@" + domain + sep + out[f.end:]
			changed = true
		}
	}
	return out, changed
}

// listAddr is an address ParseList found, and where it ends in the input.
type listAddr struct {
	addr string
	end  int
}

func parseList(s string) ([]listAddr, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	var out []listAddr
	inGroup := false
	for i := 0; i < len(toks); {
		if toks[i].isOp(',') {
			i++
			continue
		}
		if toks[i].isOp(';') {
			// Ends a group (RFC 5322 3.4); outside one, Outlook users
			// separate addresses with it.
			inGroup = false
			i++
			continue
		}
		// The item runs to the next operator that gives it a shape.
		j := i
		for j < len(toks) && !toks[j].isAnyOp(",;:<>") {
			j++
		}
		if j < len(toks) {
			switch toks[j].text {
			case ":":
				// display-name ":" [group-list] ";" (RFC 5322 3.4).
				if inGroup {
					return nil, fmt.Errorf("invalid address %q: group inside a group", s)
				}
				for _, t := range toks[i:j] {
					if t.isOp('@') {
						return nil, fmt.Errorf("invalid address %q: unexpected \":\" after %q", s, s[toks[i].start:t.end])
					}
				}
				inGroup = true
				i = j + 1
				continue
			case ">":
				return nil, fmt.Errorf("invalid address %q: unbalanced angle bracket", s)
			case "<":
				k := j + 1
				for k < len(toks) && !toks[k].isOp('>') {
					if toks[k].isOp('<') {
						return nil, fmt.Errorf("invalid address %q: unbalanced angle bracket", s)
					}
					k++
				}
				if k == len(toks) {
					return nil, fmt.Errorf("invalid address %q: unbalanced angle bracket", s)
				}
				addr, err := angleAddr(s, toks[j+1:k])
				if err != nil {
					return nil, err
				}
				if addr != "" { // "<>"
					out = append(out, listAddr{addr, toks[k-1].end})
				}
				// What follows ">" starts a new address even without a
				// comma, as in tok822.
				i = k + 1
				continue
			}
		}
		// Bare addr-specs: a word right after a word starts a new one.
		start := i
		for m := i + 1; m <= j; m++ {
			if m < j && !(toks[m].isWord() && toks[m-1].isWord()) {
				continue
			}
			addr, err := join(s, toks[start:m])
			if err != nil {
				return nil, err
			}
			out = append(out, listAddr{addr, toks[m-1].end})
			start = m
		}
		i = j
	}
	return out, nil
}

// angleAddr returns the addr-spec between "<" and ">", without an obsolete
// source route (RFC 5322 4.4: "@relay1,@relay2:"). It returns "" for "<>".
func angleAddr(s string, inner []token) (string, error) {
	last := -1
	for k, t := range inner {
		if t.isOp(':') {
			last = k
		}
	}
	if last >= 0 {
		route := inner[:last]
		if len(route) == 0 || !route[0].isOp('@') {
			return "", fmt.Errorf("invalid address %q: bad source route %q", s, s[inner[0].start:inner[last].end])
		}
		for _, t := range route {
			if t.kind == tokOp && !t.isAnyOp("@,.") {
				return "", fmt.Errorf("invalid address %q: bad source route %q", s, s[inner[0].start:inner[last].end])
			}
		}
		inner = inner[last+1:]
		if len(inner) == 0 {
			return "", fmt.Errorf("invalid address %q: nothing after the source route", s)
		}
	}
	if len(inner) == 0 {
		return "", nil
	}
	for k, t := range inner {
		if t.kind == tokOp && !t.isAnyOp("@.") {
			return "", fmt.Errorf("invalid address %q: unexpected %q", s[inner[0].start:inner[len(inner)-1].end], t.text)
		}
		if k > 0 && t.isWord() && inner[k-1].isWord() {
			return "", fmt.Errorf("invalid address %q: unquoted space", s[inner[0].start:inner[len(inner)-1].end])
		}
	}
	return join(s, inner)
}

// join concatenates the tokens of one addr-spec, dropping the whitespace
// and comments between them, and checks the result.
func join(s string, toks []token) (string, error) {
	var b strings.Builder
	for _, t := range toks {
		b.WriteString(t.text)
	}
	addr := b.String()
	if err := Check(addr); err != nil {
		return "", err
	}
	return addr, nil
}

type tokKind uint8

const (
	tokAtom    tokKind = iota // also an RFC 2047 encoded-word
	tokQuoted                 // "..." with its quotes
	tokLiteral                // [...] with its brackets
	tokOp                     // one of < > @ , ; : .
)

type token struct {
	kind       tokKind
	text       string
	start, end int // offsets in the input, for error messages
}

func (t token) isWord() bool { return t.kind != tokOp }

func (t token) isOp(c byte) bool { return t.kind == tokOp && t.text[0] == c }

func (t token) isAnyOp(ops string) bool {
	return t.kind == tokOp && strings.IndexByte(ops, t.text[0]) >= 0
}

// atomStop holds the bytes that end an atom besides whitespace and
// controls: RFC 5322 specials, less the backslash, which quotes the next
// byte as in tok822.
const atomStop = "()<>@,;:.\"[]"

func tokenize(s string) ([]token, error) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			return nil, fmt.Errorf("invalid address %q: contains a NUL byte", s)
		case c < 0x20 && c != '\t' && c != '\r' && c != '\n', c == 0x7f:
			return nil, fmt.Errorf("invalid address %q: contains a control character", s)
		}
	}
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '\r' || c == '\n':
			j := i
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			if j < len(s) && s[j] != ' ' && s[j] != '\t' {
				return nil, fmt.Errorf("invalid address %q: contains a line break", s)
			}
			i = j
		case c == '(':
			j, err := skipComment(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == ')':
			return nil, fmt.Errorf("invalid address %q: unbalanced parenthesis", s)
		case c == '"':
			j := closing(s, i+1, '"')
			if j < 0 {
				return nil, fmt.Errorf("invalid address %q: unbalanced quote", s)
			}
			toks = append(toks, token{tokQuoted, s[i : j+1], i, j + 1})
			i = j + 1
		case c == '[':
			j := closing(s, i+1, ']')
			if j < 0 || strings.IndexByte(s[i+1:j], '[') >= 0 {
				return nil, fmt.Errorf("invalid address %q: unbalanced square bracket", s)
			}
			toks = append(toks, token{tokLiteral, s[i : j+1], i, j + 1})
			i = j + 1
		case c == ']':
			return nil, fmt.Errorf("invalid address %q: unbalanced square bracket", s)
		case strings.IndexByte("<>@,;:.", c) >= 0:
			toks = append(toks, token{tokOp, s[i : i+1], i, i + 1})
			i++
		default:
			j := i + encodedWordLen(s[i:])
			if j == i {
				for j < len(s) && !isSpace(s[j]) && strings.IndexByte(atomStop, s[j]) < 0 {
					if s[j] == '\\' && j+1 < len(s) {
						j++
					}
					j++
				}
			}
			toks = append(toks, token{tokAtom, s[i:j], i, j})
			i = j
		}
	}
	return toks, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// closing returns the index of the unescaped byte end at or after i, or -1.
func closing(s string, i int, end byte) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case end:
			return i
		}
	}
	return -1
}

// skipComment returns the index just past the comment that opens at i.
// Comments nest (RFC 5322 3.2.2).
func skipComment(s string, i int) (int, error) {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("invalid address %q: unbalanced parenthesis", s)
}

// encodedWordLen returns the length of the RFC 2047 encoded-word that s
// starts with, or 0. An encoded-word is one atom even when its text holds
// specials, so "=?utf-8?q?Doe,_John?=" cannot split a list.
func encodedWordLen(s string) int {
	if !strings.HasPrefix(s, "=?") {
		return 0
	}
	printable := func(t string) bool {
		for k := 0; k < len(t); k++ {
			if t[k] <= ' ' || t[k] >= 0x7f || t[k] == '?' {
				return false
			}
		}
		return true
	}
	rest := s[2:]
	q := strings.IndexByte(rest, '?')
	if q <= 0 || !printable(rest[:q]) {
		return 0
	}
	rest = rest[q+1:]
	if len(rest) < 2 || strings.IndexByte("BbQq", rest[0]) < 0 || rest[1] != '?' {
		return 0
	}
	rest = rest[2:]
	e := strings.Index(rest, "?=")
	if e < 0 || !printable(rest[:e]) {
		return 0
	}
	return len(s) - len(rest) + e + 2
}

// Check reports whether addr, an addr-spec, is safe to put in the SMTP
// envelope: not empty; no CR, LF, NUL or other control character; valid
// UTF-8; a local part whose specials (space, "<", ">", ",", ";", ":", "(",
// ")", "[", "]", "\", "@") are quoted; and, after an "@", a domain made of
// non-empty labels of letters, digits, "-", "_" and UTF-8, or a domain
// literal such as "[192.0.2.1]". A name without "@" is a local address and
// passes. Dots in the local part are not checked: real mail has
// "first..last@" and "trailing.@".
func Check(addr string) error {
	bad := func(reason string) error {
		return fmt.Errorf("invalid address %q: %s", addr, reason)
	}
	if addr == "" {
		return bad("empty address")
	}
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == '\r' || c == '\n':
			return bad("contains a line break")
		case c == 0:
			return bad("contains a NUL byte")
		case c < 0x20 || c == 0x7f:
			return bad("contains a control character")
		}
	}
	if !utf8.ValidString(addr) {
		return bad("not valid UTF-8")
	}
	at, err := localEnd(addr)
	if err != "" {
		return bad(err)
	}
	if at == len(addr) {
		return nil
	}
	if at == 0 {
		return bad("empty local part")
	}
	domain := addr[at+1:]
	switch {
	case domain == "":
		return bad("empty domain")
	case strings.IndexByte(domain, '@') >= 0:
		return bad("more than one unquoted @")
	case domain[0] == '[':
		lit := domain[1:]
		if !strings.HasSuffix(lit, "]") || len(lit) == 1 {
			return bad("bad domain literal")
		}
		for _, c := range []byte(lit[:len(lit)-1]) {
			// dtext (RFC 5321 4.1.3 and RFC 5322 3.4.1)
			if c <= ' ' || c >= 0x7f || c == '[' || c == ']' || c == '\\' {
				return bad("bad domain literal")
			}
		}
		return nil
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" {
			return bad("empty label in domain")
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '-' || c == '_' || c >= 0x80
			if !ok {
				return bad(fmt.Sprintf("%q in domain", c))
			}
		}
	}
	return nil
}

// localEnd returns the index of the "@" that ends the local part of addr,
// or len(addr) when there is none, with the reason the local part is bad.
func localEnd(addr string) (int, string) {
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; c {
		case '"':
			j := closing(addr, i+1, '"')
			if j < 0 {
				return 0, "unbalanced quote"
			}
			i = j
		case '@':
			return i, ""
		case ' ', '\t':
			return 0, "unquoted space"
		case '<', '>', ',', ';', ':', '(', ')', '[', ']', '\\':
			return 0, fmt.Sprintf("unquoted %q in local part", c)
		}
	}
	return len(addr), ""
}

// atIndex returns the index of the "@" outside quotes, or -1.
func atIndex(addr string) int {
	for i := 0; i < len(addr); i++ {
		switch addr[i] {
		case '"':
			j := closing(addr, i+1, '"')
			if j < 0 {
				return -1
			}
			i = j
		case '@':
			return i
		}
	}
	return -1
}

// Qualify appends "@domain" to a local address, as Postfix's
// append_at_myorigin does: "root" becomes "root@domain". Addresses with a
// domain, the empty address (the null sender) and an empty domain leave
// addr unchanged.
func Qualify(addr, domain string) string {
	if addr == "" || domain == "" || !IsLocal(addr) {
		return addr
	}
	return addr + "@" + domain
}

// IsLocal reports whether addr has no domain: no "@" outside a quoted
// local part.
func IsLocal(addr string) bool { return atIndex(addr) < 0 }

// NeedsSMTPUTF8 reports whether addr holds a byte >= 0x80, which only a
// server offering SMTPUTF8 (RFC 6531) accepts in the envelope.
func NeedsSMTPUTF8(addr string) bool {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return true
		}
	}
	return false
}
