// Package aliases rewrites local recipients, as /etc/aliases does for a
// full MTA: cron mails "root", and root's mail should reach a person.
//
// A table maps a local name to a list of addresses. Expansion is recursive:
// "root: admin" and "admin: ops@example.net" send root's mail to
// ops@example.net. A name that expands to itself is delivered to itself, as
// sendmail does for "root: root, ops@x"; a longer loop is an error.
//
// Tables come from the config's [aliases] section (New) and from a file in
// the /etc/aliases format (ParseFile, Table.Add), whose problems name
// their lines.
package aliases

import (
	"fmt"
	"strings"
)

// maxDepth bounds expansion; /etc/aliases chains are short.
const maxDepth = 20

// Table maps lower-case local names to their targets.
type Table map[string][]string

// New builds a table from name -> "a, b" entries, as the config's [aliases]
// section holds them. split parses one value into addresses.
func New(entries map[string]string, split func(string) ([]string, error)) (Table, error) {
	t := make(Table, len(entries))
	for name, value := range entries {
		targets, err := split(value)
		if err != nil {
			return nil, fmt.Errorf("alias %q: %w", name, err)
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("alias %q has no target", name)
		}
		t[strings.ToLower(name)] = targets
	}
	return t, nil
}

// Expand returns the final targets of a local name, or nil when the name
// has no alias. Targets come back as written in the table; the caller
// qualifies them.
func (t Table) Expand(name string) ([]string, error) {
	if _, ok := t[strings.ToLower(name)]; !ok {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	if err := t.expand(name, nil, seen, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (t Table) expand(name string, path []string, seen map[string]bool, out *[]string) error {
	key := strings.ToLower(name)
	for _, p := range path {
		if p == key {
			return fmt.Errorf("alias loop: %s -> %s", strings.Join(path, " -> "), key)
		}
	}
	targets, ok := t[key]
	if !ok || len(path) > 0 && key == path[len(path)-1] {
		if !seen[key] {
			seen[key] = true
			*out = append(*out, name)
		}
		return nil
	}
	if len(path) >= maxDepth {
		return fmt.Errorf("alias %q nests deeper than %d", path[0], maxDepth)
	}
	path = append(path, key)
	for _, target := range targets {
		if strings.EqualFold(target, name) {
			// "root: root, ops@x": root itself gets a copy too.
			if !seen[key] {
				seen[key] = true
				*out = append(*out, target)
			}
			continue
		}
		if err := t.expand(target, path, seen, out); err != nil {
			return err
		}
	}
	return nil
}
