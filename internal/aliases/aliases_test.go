package aliases

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"relaymail/internal/address"
)

func split(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out, nil
}

func TestExpand(t *testing.T) {
	table, err := New(map[string]string{
		"root":       "admin",
		"admin":      "ops@example.net, Dev@Example.net",
		"postmaster": "root",
		"self":       "self, copy@example.net",
		"loop1":      "loop2",
		"loop2":      "loop1",
		"www-data":   "web@example.net",
	}, split)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want    []string
		wantErr string
	}{
		{name: "root", want: []string{"ops@example.net", "Dev@Example.net"}},
		{name: "ROOT", want: []string{"ops@example.net", "Dev@Example.net"}},
		{name: "postmaster", want: []string{"ops@example.net", "Dev@Example.net"}},
		{name: "self", want: []string{"self", "copy@example.net"}},
		{name: "www-data", want: []string{"web@example.net"}},
		{name: "nobody", want: nil},
		{name: "loop1", wantErr: "alias loop: loop1 -> loop2 -> loop1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := table.Expand(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand(%q) = %q, %v, want error %q", tt.name, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Expand(%q) = %q, %v, want %q", tt.name, got, err, tt.want)
			}
		})
	}
	if _, err := New(map[string]string{"x": " , "}, split); err == nil {
		t.Errorf("New with an empty target succeeded")
	}
}

// FuzzExpand: any table the config can hold expands without a panic or an
// endless loop, to each target once, none of them a name that expands
// further (a name that lists itself keeps its copy), or fails with an error
// naming the loop or the depth.
func FuzzExpand(f *testing.F) {
	f.Add("root", "admin", "admin", "ops@example.net, root", "root")
	f.Add("a", "b", "b", "a", "a")
	f.Add("root", "root, ops@x", "ops", "\"Doe, J\" <j@x>, root", "ROOT")
	f.Add("x", "y, y, Y", "y", "z@x", "x")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, query string) {
		tab, err := New(map[string]string{n1: v1, n2: v2}, address.ParseList)
		if err != nil {
			return
		}
		out, err := tab.Expand(query)
		if err != nil {
			if !strings.Contains(err.Error(), "loop") && !strings.Contains(err.Error(), "deeper") {
				t.Fatalf("Expand(%q) in %q: unexpected error %v", query, tab, err)
			}
			return
		}
		if _, ok := tab[strings.ToLower(query)]; !ok {
			if out != nil {
				t.Fatalf("Expand(%q) of a name without an alias = %q, want nil", query, out)
			}
			return
		}
		if len(out) == 0 {
			t.Fatalf("Expand(%q) in %q = nothing", query, tab)
		}
		seen := map[string]bool{}
		for _, o := range out {
			k := strings.ToLower(o)
			if seen[k] {
				t.Fatalf("Expand(%q) in %q = %q: %q twice", query, tab, out, o)
			}
			seen[k] = true
			if targets, ok := tab[k]; ok && !slices.ContainsFunc(targets, func(s string) bool { return strings.EqualFold(s, o) }) {
				t.Fatalf("Expand(%q) in %q = %q: %q expands further", query, tab, out, o)
			}
		}
	})
}
