package secret

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGet(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	sh := "/bin/sh"
	tests := []struct {
		name    string
		src     Source
		want    string
		wantErr string
	}{
		{name: "inline", src: Source{Value: "inline-pw"}, want: "inline-pw"},
		{name: "file first line", src: Source{File: file}, want: "s3cret"},
		{name: "missing file", src: Source{File: filepath.Join(dir, "nope")}, wantErr: "no such file"},
		{name: "empty file", src: Source{File: empty}, wantErr: "is empty"},
		{name: "command", src: Source{Command: []string{"printf", "tok-en\\nx"}, Env: []string{"PATH=/usr/bin:/bin"}}, want: "tok-en"},
		{name: "command env is only what is given", src: Source{Command: []string{sh, "-c", "echo ${SENDMAIL_CONF:-clean}"}}, want: "clean"},
		{name: "command fails, stderr shown, stdout not", src: Source{Command: []string{sh, "-c", "echo leaked-pw; echo vault locked >&2; exit 3"}}, wantErr: "vault locked"},
		{name: "command prints nothing", src: Source{Command: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}}, wantErr: "printed nothing"},
		{name: "command not found", src: Source{Command: []string{"/nonexistent/pass"}}, wantErr: "/nonexistent/pass"},
		{name: "command timeout", src: Source{Command: []string{sh, "-c", "sleep 20"}, Timeout: 200 * time.Millisecond}, wantErr: "did not finish"},
		{name: "nothing", src: Source{}, wantErr: "no password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SENDMAIL_CONF", "/leak")
			got, err := tt.src.Get(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Get() = %q, %v, want error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "leaked-pw") {
					t.Errorf("error %q shows the command's stdout", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Get() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}
