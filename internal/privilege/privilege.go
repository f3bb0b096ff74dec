// Package privilege is the set-group-id side of relaymail. The packaged
// binary is setgid to a group (relaymail) that alone may read the config,
// which holds the relay's password, and write the spool; every user on the
// machine runs it. Privileges says what the process was started with, and
// the functions here harden or drop what it holds. main reads the ids and
// calls them; nothing else looks at them.
//
// A process runs raised when its effective ids differ from its real ones.
// Then main, before anything else:
//
//   - sets the umask to 077 (the spool sets its modes explicitly);
//   - clears the environment: the Go runtime and standard library read
//     GODEBUG (TLS and X.509 behaviour), SSL_CERT_FILE and SSL_CERT_DIR
//     (trusted roots: a caller's own CA would let it read the password off
//     a fake relay), and more. Clearing it resets GODEBUG's settings and
//     happens before crypto/x509 first loads the roots. The runtime itself
//     forces GOTRACEBACK=none for a setgid binary, so a crash prints no
//     stack or registers that could hold a secret.
//
// Descriptors 0, 1 and 2 closed by the caller are no danger: the Go runtime
// opens /dev/null on them before main (runtime.checkfds, every program
// since Go 1.22), so no file opened with the group's rights becomes the
// process's output.
//
// A config named with -C by anyone but root is read with the privilege
// dropped for good (Drop): the caller's own rights, and so its own spool.
package privilege

import (
	"fmt"
	"slices"
	"syscall"
)

// Privileges are the ids a process runs with.
type Privileges struct {
	UID, GID   int   // real: the user who ran us
	EUID, EGID int   // effective
	Groups     []int // supplementary groups of the real user
}

// Raised reports whether the process holds more than its caller: a setgid
// (or setuid) binary.
func (p Privileges) Raised() bool {
	return p.EUID != p.UID || p.EGID != p.GID
}

// Admin reports whether the caller may see and manage everyone's queued
// mail: root, a member of the group the binary raises to, or anyone when
// nothing is raised (the files then allow what they allow).
func (p Privileges) Admin() bool {
	if !p.Raised() || p.UID == 0 {
		return true
	}
	return p.EUID == p.UID && slices.Contains(p.Groups, p.EGID)
}

// Drop gives up the raised ids for good (real, effective and saved) and
// returns the privileges left.
func (p Privileges) Drop() (Privileges, error) {
	if p.EGID != p.GID {
		if err := syscall.Setresgid(p.GID, p.GID, p.GID); err != nil {
			return p, err
		}
		p.EGID = p.GID
	}
	if p.EUID != p.UID {
		if err := syscall.Setresuid(p.UID, p.UID, p.UID); err != nil {
			return p, err
		}
		p.EUID = p.UID
	}
	return p, nil
}

// AsCaller runs f with the effective ids of the caller, then raises them
// again: for files the caller names (mail -a), which the raised group
// must not open for it (the config is the group's). The saved ids keep
// the raised ones meanwhile. Without raised ids, f just runs.
func (p Privileges) AsCaller(f func() error) error {
	if !p.Raised() {
		return f()
	}
	if p.EGID != p.GID {
		if err := syscall.Setresgid(-1, p.GID, -1); err != nil {
			return err
		}
	}
	if p.EUID != p.UID {
		if err := syscall.Setresuid(-1, p.UID, -1); err != nil {
			syscall.Setresgid(-1, p.EGID, -1)
			return err
		}
	}
	err := f()
	// Raised again, or the caller hears why it cannot go on.
	if p.EUID != p.UID {
		if rerr := syscall.Setresuid(-1, p.EUID, -1); rerr != nil {
			return fmt.Errorf("raise the user id again: %w", rerr)
		}
	}
	if p.EGID != p.GID {
		if rerr := syscall.Setresgid(-1, p.EGID, -1); rerr != nil {
			return fmt.Errorf("raise the group id again: %w", rerr)
		}
	}
	return err
}
