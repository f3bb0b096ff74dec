package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the CLI scripts run this test binary as sendmail, mailq and
// newaliases, through the real run function and its exit codes.
func TestMain(m *testing.M) {
	main := func() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr, os.Getenv)) }
	testscript.Main(m, map[string]func(){
		"sendmail":   main,
		"mailq":      main,
		"newaliases": main,
	})
}

// TestScripts runs testdata/script/*.txtar: usage, unknown flags, the
// program names, and what a refused message leaves behind.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
