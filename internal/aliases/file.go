package aliases

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Entry is one alias of an aliases file.
type Entry struct {
	Name    string   // lower case
	Targets []string // addresses, as split returned them
	Line    int      // where the entry starts
}

// FileError is a problem on a line of an aliases file.
type FileError struct {
	File string
	Line int
	Msg  string
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// maxLineBytes bounds one line of an aliases file.
const maxLineBytes = 64 << 10

// ParseFile reads an aliases file in the /etc/aliases format:
//
//	# a comment
//	root: admin, ops@example.net
//	admin: alice@example.net,
//	    bob@example.net            (a line that starts with white space continues)
//	"john doe": john@example.net   (a quoted name)
//
// Each value is an address list, parsed by split. Targets a relay cannot
// deliver to, "|program", "/file" and ":include:/list", are refused, as
// are a name defined twice, an address as a name and a line without a
// colon. It returns the entries and every problem, each a *FileError that
// names its line; the entries of lines with problems are left out.
func ParseFile(file string, r io.Reader, split func(string) ([]string, error)) ([]Entry, []error) {
	var entries []Entry
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &FileError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	first := map[string]int{} // name -> line it was first defined on

	var cur *Entry
	var value strings.Builder
	finish := func() {
		if cur == nil {
			return
		}
		e := cur
		cur = nil
		if targets, ok := parseTargets(e.Line, value.String(), split, fail); ok {
			e.Targets = targets
			entries = append(entries, *e)
		}
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff") // a byte order mark
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			finish()
		case strings.HasPrefix(trimmed, "#"):
			// A comment, also inside a continued entry.
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				fail(n, "a line that starts with white space continues the alias above, and there is none")
				continue
			}
			value.WriteString(" " + trimmed)
		default:
			finish()
			name, rest, err := splitName(line)
			if err != "" {
				fail(n, "%s", err)
				continue
			}
			key := strings.ToLower(name)
			if at, dup := first[key]; dup {
				fail(n, "alias %q is defined twice (first on line %d)", name, at)
				continue
			}
			first[key] = n
			cur = &Entry{Name: key, Line: n}
			value.Reset()
			value.WriteString(rest)
		}
	}
	finish()
	if err := sc.Err(); err != nil {
		msg := err.Error()
		if err == bufio.ErrTooLong {
			msg = fmt.Sprintf("a line is longer than %d bytes", maxLineBytes)
		}
		errs = append(errs, &FileError{File: file, Line: n + 1, Msg: msg})
	}
	return entries, errs
}

// splitName splits "name: value" and checks the name; it returns why the
// line is not an alias when it is not.
func splitName(line string) (name, value, problem string) {
	if strings.HasPrefix(line, `"`) {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return "", "", "the quoted name has no closing quote"
		}
		name, line = line[:2+end], line[2+end:] // quotes kept: "john doe" is how the local part is written
		rest := strings.TrimLeft(line, " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Sprintf("no colon after the name %s: write name: address, ...", name)
		}
		value = rest[1:]
	} else {
		i := strings.IndexByte(line, ':')
		if i < 0 {
			return "", "", "no colon: write name: address, ..."
		}
		name, value = strings.TrimRight(line[:i], " \t"), line[i+1:]
		if strings.ContainsAny(name, " \t") {
			return "", "", fmt.Sprintf("the name %q has a space: quote it, as in \"%s\": ...", name, name)
		}
	}
	switch {
	case name == "":
		return "", "", "the alias has no name"
	case strings.Contains(name, "@"):
		return "", "", fmt.Sprintf("%q is an address: an alias is a local name, such as root", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", "", "the name has a control character"
	}
	return name, value, ""
}

// parseTargets checks and splits the value of the alias that starts on
// line. It reports problems through fail and says whether there were none.
func parseTargets(line int, value string, split func(string) ([]string, error), fail func(int, string, ...any)) ([]string, bool) {
	ok := true
	for _, raw := range splitCommas(value) {
		t := strings.Trim(strings.TrimSpace(raw), `"`)
		lower := strings.ToLower(t)
		if t != "" && !strings.HasPrefix(t, "|") && !strings.HasPrefix(t, "/") && !strings.HasPrefix(lower, ":include:") {
			// One address per comma: "web@x # the team" or sendmail's
			// "error:nouser No such user" would otherwise become words
			// taken for more addresses.
			if addrs, err := split(raw); err == nil && len(addrs) > 1 {
				fail(line, "%q is more than one address: separate addresses with commas (and there are no comments after a target)", strings.TrimSpace(raw))
				ok = false
				continue
			}
		}
		switch {
		case strings.HasPrefix(t, "|"):
			fail(line, "%q: a relay cannot deliver to a program; give an address", t)
			ok = false
		case strings.HasPrefix(t, "/"):
			fail(line, "%q: a relay cannot deliver to a file; give an address", t)
			ok = false
		case strings.HasPrefix(lower, ":include:"):
			fail(line, "%q: :include: lists are not supported; write the addresses here", t)
			ok = false
		}
	}
	if !ok {
		return nil, false
	}
	targets, err := split(value)
	switch {
	case err != nil:
		fail(line, "%v", err)
		return nil, false
	case len(targets) == 0:
		fail(line, "the alias has no address")
		return nil, false
	}
	return targets, true
}

// splitCommas splits s at commas outside double quotes.
func splitCommas(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Add puts the entries in t, except names t has already: the config's
// [aliases] table wins over the file.
func (t Table) Add(entries []Entry) {
	for _, e := range entries {
		if _, ok := t[e.Name]; !ok {
			t[e.Name] = e.Targets
		}
	}
}
