// Package sysexits defines the exit codes of sendmail(8), taken from BSD's
// sysexits.h, and an error type that carries one.
//
// Callers attach a code where the kind of failure is known and add context
// with %w; the entry point finds the code with [CodeOf]. An error without a
// code is a bug and maps to [Software].
package sysexits

import (
	"errors"
	"fmt"
)

// Code is a process exit status from sysexits.h.
type Code int

// The codes of sysexits.h. OK is not from that file but reads better.
const (
	OK          Code = 0
	Usage       Code = 64 // command line usage error
	DataErr     Code = 65 // data format error
	NoInput     Code = 66 // cannot open input
	NoUser      Code = 67 // addressee unknown
	NoHost      Code = 68 // host name unknown
	Unavailable Code = 69 // service unavailable
	Software    Code = 70 // internal software error
	OSErr       Code = 71 // system error (e.g., can't fork)
	OSFile      Code = 72 // critical OS file missing
	CantCreat   Code = 73 // can't create (user) output file
	IOErr       Code = 74 // input/output error
	TempFail    Code = 75 // temporary failure; user is invited to retry
	Protocol    Code = 76 // remote error in protocol
	NoPerm      Code = 77 // permission denied
	Config      Code = 78 // configuration error
)

var names = map[Code]string{
	OK: "EX_OK", Usage: "EX_USAGE", DataErr: "EX_DATAERR", NoInput: "EX_NOINPUT",
	NoUser: "EX_NOUSER", NoHost: "EX_NOHOST", Unavailable: "EX_UNAVAILABLE",
	Software: "EX_SOFTWARE", OSErr: "EX_OSERR", OSFile: "EX_OSFILE",
	CantCreat: "EX_CANTCREAT", IOErr: "EX_IOERR", TempFail: "EX_TEMPFAIL",
	Protocol: "EX_PROTOCOL", NoPerm: "EX_NOPERM", Config: "EX_CONFIG",
}

// String returns the symbolic name, such as "EX_TEMPFAIL".
func (c Code) String() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("exit(%d)", int(c))
}

// Error is an error with the exit code it should end the process with.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Wrap attaches code to err. It returns nil when err is nil.
func Wrap(code Code, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Errorf formats an error as fmt.Errorf does and attaches code to it.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns the code attached to the outermost [*Error] in err's chain,
// OK for a nil error and Software for an error that carries no code.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Software
}
