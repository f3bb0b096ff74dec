package smarthost

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenerOption serves on a listener the caller opened (make bench
// passes one behind a delaying network path): the server reports its
// address, serves on it and closes it in Close.
func TestListenerOption(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Options{Users: users, Listener: ln})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if got, want := s.Addr(), ln.Addr().String(); got != want {
		t.Errorf("Addr() = %q, want the listener's %q", got, want)
	}
	mustRun(t, dial(t, s), simpleTx())
	if _, err := s.WaitMessages(1, ioTimeout); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

// TestListenerNotTCP refuses a listener whose address the server cannot
// report as host and port, and leaves it to the caller.
func TestListenerNotTCP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Start(Options{Listener: ln})
	if err == nil {
		s.Close()
		t.Fatal("Start accepted a unix listener")
	}
	if !strings.Contains(err.Error(), "not TCP") {
		t.Errorf("Start error = %q, want it to say the address is not TCP", err)
	}
}
