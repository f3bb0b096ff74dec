package sysexits

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, OK},
		{"plain error is a bug", errors.New("x"), Software},
		{"direct", Errorf(Config, "bad key"), Config},
		{"wrapped with context", fmt.Errorf("load: %w", Wrap(TempFail, errors.New("down"))), TempFail},
		{"outermost wins", Wrap(Usage, fmt.Errorf("x: %w", Wrap(Config, errors.New("y")))), Usage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestWrapKeepsCause(t *testing.T) {
	err := fmt.Errorf("open spool: %w", Wrap(CantCreat, fs.ErrPermission))
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("errors.Is(%v, fs.ErrPermission) = false, want true", err)
	}
	if Wrap(IOErr, nil) != nil {
		t.Errorf("Wrap(IOErr, nil) != nil")
	}
	if got := TempFail.String(); got != "EX_TEMPFAIL" {
		t.Errorf("TempFail.String() = %q", got)
	}
}
