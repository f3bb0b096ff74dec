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
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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
	// Dir is the working directory of Command; "" keeps ours. A setgid
	// process passes "/": the caller's directory is the caller's to fill.
	Dir string
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
	name := s.Command[0]
	if !strings.Contains(name, "/") {
		// Looked up in the PATH the command gets, not in ours (which a
		// setgid process has cleared).
		path := envValue(s.Env, "PATH")
		found, err := lookPath(name, path)
		if err != nil {
			return "", fmt.Errorf("password_command %q: not found in PATH=%s", name, path)
		}
		name = found
	}
	cmd := exec.CommandContext(ctx, name, s.Command[1:]...)
	cmd.Dir = s.Dir
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

// envValue returns the value of key in env ("KEY=value" entries).
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds an executable file name in the absolute directories of
// path (relative ones are skipped: they would depend on the directory).
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fs.ErrNotExist
}
