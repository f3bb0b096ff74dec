// Package testbin builds the sendmail binary for the tests and tools that
// run it as a process (end-to-end, interop, bench), the way callers do.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Root returns the module's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build builds sendmail (CGO off, like a release) into a new temporary
// directory and returns its path and a function that removes it. With
// GOCOVERDIR set, the binary is built with -cover so that its runs count
// in the coverage.
func Build() (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "relaymail-bin-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "sendmail")
	if err := BuildTo(path); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// BuildTo builds sendmail as Build does into path, with more arguments of
// go build (such as -ldflags).
func BuildTo(path string, args ...string) error {
	args = append([]string{"build", "-o", path}, args...)
	if os.Getenv("GOCOVERDIR") != "" {
		args = append(args, "-cover")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build sendmail: %v\n%s", err, out)
	}
	return nil
}

// Main is a TestMain for packages that run sendmail as a process: it
// builds the binary into *path, runs the tests and exits with their code.
func Main(m interface{ Run() int }, path *string) {
	p, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*path = p
	code := m.Run()
	cleanup()
	os.Exit(code)
}
