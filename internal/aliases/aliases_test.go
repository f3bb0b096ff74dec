package aliases

import (
	"reflect"
	"strings"
	"testing"
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
