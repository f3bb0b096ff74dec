// Package secret fetches the smarthost password or OAuth2 token from where
// the config says it is: inline, in a file, or printed by a command.
//
// The value is fetched only when the server asks for AUTH, so a broken
// password_command does not stop sendmail -bV or a delivery that needs no
// login. Errors never contain the value.
package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Source says where the secret is. At most one of Value, File and Command is
// set; config validation guarantees it.
type Source struct {
	Value   string
	File    string
	Command []string
	// Env is the whole environment of Command. The caller passes only PATH
	// and HOME: the command must not inherit whatever the caller of
	// sendmail put in the environment.
	Env []string
	// Timeout bounds Command; 0 means 30 seconds.
	Timeout time.Duration
}

// IsSet reports whether any source is configured.
func (s Source) IsSet() bool {
	return s.Value != "" || s.File != "" || len(s.Command) > 0
}

// Get returns the secret: the first line of the file or of the command's
// output, without its line ending.
func (s Source) Get(ctx context.Context) (string, error) {
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read password_file: %w", err)
		}
		v := firstLine(b)
		if v == "" {
			return "", fmt.Errorf("password_file %s is empty", s.File)
		}
		return v, nil
	case len(s.Command) > 0:
		return s.run(ctx)
	}
	return "", errors.New("no password configured")
}

func (s Source) run(ctx context.Context) (string, error) {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...)
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return "", fmt.Errorf("password_command %q did not finish within %v", s.Command[0], timeout)
	}
	if err != nil {
		// Only stderr is shown: stdout may hold part of the secret.
		if msg := lastLine(stderr.Bytes()); msg != "" {
			return "", fmt.Errorf("password_command %q: %v: %s", s.Command[0], err, msg)
		}
		return "", fmt.Errorf("password_command %q: %v", s.Command[0], err)
	}
	v := firstLine(stdout.Bytes())
	if v == "" {
		return "", fmt.Errorf("password_command %q printed nothing", s.Command[0])
	}
	return v, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), "\r")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
