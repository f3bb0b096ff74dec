package xoauth2

import "testing"

func TestClient(t *testing.T) {
	c := NewClient("alice@example.com", "ya29.tok")
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=alice@example.com\x01auth=Bearer ya29.tok\x01\x01" {
		t.Fatalf("Start() = %q, %q, %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"401"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Errorf("Next(error challenge) = %q, %v, want empty non-nil response", resp, err)
	}
	if _, err := c.Next(nil); err == nil {
		t.Errorf("second Next() succeeded, want error")
	}
	if _, _, err := NewClient("a\x01b", "t").Start(); err == nil {
		t.Errorf("Start() with ^A in user succeeded")
	}
}
