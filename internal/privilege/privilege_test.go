package privilege

import "testing"

func TestRaisedAdmin(t *testing.T) {
	tests := []struct {
		p             Privileges
		raised, admin bool
	}{
		{Privileges{UID: 33, GID: 33, EUID: 33, EGID: 33}, false, true},
		{Privileges{UID: 33, GID: 33, EUID: 33, EGID: 120}, true, false},
		{Privileges{UID: 33, GID: 33, EUID: 33, EGID: 120, Groups: []int{33, 120}}, true, true},
		{Privileges{UID: 1000, GID: 120, EUID: 1000, EGID: 120}, false, true},
		{Privileges{UID: 0, GID: 0, EUID: 0, EGID: 120}, true, true},
		{Privileges{UID: 33, GID: 33, EUID: 0, EGID: 33}, true, false},
	}
	for _, tt := range tests {
		if got := tt.p.Raised(); got != tt.raised {
			t.Errorf("%+v.Raised() = %v, want %v", tt.p, got, tt.raised)
		}
		if got := tt.p.Admin(); got != tt.admin {
			t.Errorf("%+v.Admin() = %v, want %v", tt.p, got, tt.admin)
		}
	}
}
