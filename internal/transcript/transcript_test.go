package transcript

import (
	"strings"
	"testing"
)

func TestTranscript(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
		absent []string
	}{
		{
			name: "greeting and ehlo",
			chunks: []string{"220 smtp.example.com ESMTP\r\n", "EHLO app01\r\n",
				"250-smtp.example.com\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"},
			want: "<<< 220 smtp.example.com ESMTP\n>>> EHLO app01\n<<< 250-smtp.example.com\n<<< 250-AUTH PLAIN LOGIN\n<<< 250 8BITMIME\n",
		},
		{
			name:   "auth plain initial response",
			chunks: []string{"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "235 2.7.0 ok\r\n", "MAIL FROM:<a@b>\r\n"},
			want:   ">>> AUTH PLAIN <redacted>\n<<< 235 2.7.0 ok\n>>> MAIL FROM:<a@b>\n",
			absent: []string{"AGFsaWNl"},
		},
		{
			name: "auth login in steps",
			chunks: []string{"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n", "YWxpY2U=\r\n",
				"334 UGFzc3dvcmQ6\r\n", "c2VjcmV0\r\n", "535 5.7.8 bad\r\n", "QUIT\r\n"},
			want:   ">>> AUTH LOGIN\n<<< 334 VXNlcm5hbWU6\n>>> <redacted>\n<<< 334 UGFzc3dvcmQ6\n>>> <redacted>\n<<< 535 5.7.8 bad\n>>> QUIT\n",
			absent: []string{"YWxpY2U", "c2VjcmV0"},
		},
		{
			name: "data summarised, split across writes",
			chunks: []string{"DATA\r\n", "354 go ahead\r\n", "Subject: secret plans\r\n\r\nbo", "dy\r\n",
				"..dot\r\n", ".\r\n", "250 2.0.0 queued\r\n"},
			want:   ">>> DATA\n<<< 354 go ahead\n>>> (message: 38 bytes)\n>>> .\n<<< 250 2.0.0 queued\n",
			absent: []string{"secret plans"},
		},
		{
			name:   "dot inside a line is not the end",
			chunks: []string{"354 go\r\n", "a", ".\r\n", ".\r\n", "250 ok\r\n"},
			want:   "<<< 354 go\n>>> (message: 4 bytes)\n>>> .\n<<< 250 ok\n",
		},
		{
			name:   "BDAT chunk summarised, split across writes",
			chunks: []string{"RCPT TO:<b@x>\r\nBDAT 25 LAST\r\nSubject: sec", "ret\r\n\r\nbody\r\n", "250 ok\r\n"},
			want:   ">>> RCPT TO:<b@x>\n>>> BDAT 25 LAST\n>>> (message: 25 bytes)\n<<< 250 ok\n",
			absent: []string{"secret"},
		},
		{
			name:   "control bytes escaped",
			chunks: []string{"250 ok \x1b[31mred\r\n"},
			want:   "<<< 250 ok \\x1b[31mred\n",
		},
		{
			name:   "line split across writes",
			chunks: []string{"25", "0 o", "k\r\n"},
			want:   "<<< 250 ok\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			w := New(&b)
			for _, c := range tt.chunks {
				if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", c, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("transcript =\n%s\nwant\n%s", got, tt.want)
			}
			for _, s := range tt.absent {
				if strings.Contains(b.String(), s) {
					t.Errorf("transcript contains %q", s)
				}
			}
		})
	}
}
