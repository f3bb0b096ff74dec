package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"relaymail/internal/smarthost"
)

// TestPipelinedFlight checks RFC 2920 on the wire: MAIL, every RCPT and
// DATA reach the server in one write, before any reply.
func TestPipelinedFlight(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	flight := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "220 fake ESMTP\r\n")
		br.ReadString('\n') // EHLO
		fmt.Fprintf(c, "250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		// Wait for the whole flight, then see what one read returned.
		time.Sleep(100 * time.Millisecond)
		buf := make([]byte, 4096)
		n, _ := br.Read(buf)
		flight <- string(buf[:n])
		fmt.Fprintf(c, "250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == ".\r\n" {
				break
			}
		}
		fmt.Fprintf(c, "250 queued\r\n")
		br.ReadString('\n') // QUIT
		fmt.Fprintf(c, "221 bye\r\n")
	}()
	o := relayOptions{Addr: l.Addr().String(), TLS: TLSNone, Auth: AuthNone, Hostname: "app01.example.com", Timeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	env := envelope{From: "a@example.com", Rcpts: []string{"b@example.net", "c@example.net"}, Size: 20}
	results, _, err := relay(context.Background(), o, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := <-flight
	want := "MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"
	if got != want {
		t.Errorf("first read after EHLO = %q, want the whole flight %q", got, want)
	}
	if results[0].Code != 250 || results[1].Code != 550 {
		t.Errorf("results = %+v, want 250 for b and 550 for c", results)
	}
}

// TestPipelinedMatchesLockstep runs the same faults with and without
// pipelining against the real test smarthost: the results must agree.
func TestPipelinedMatchesLockstep(t *testing.T) {
	tests := []struct {
		name   string
		faults []smarthost.Fault
		want   []int // result code per recipient: a, b
	}{
		{"all accepted", nil, []int{250, 250}},
		{"one refused", []smarthost.Fault{{Stage: smarthost.Rcpt, Match: "b@example.net", Code: 550, Text: "no"}}, []int{250, 550}},
		{"all refused", []smarthost.Fault{{Stage: smarthost.Rcpt, Code: 550, Text: "no"}}, []int{550, 550}},
		{"one deferred", []smarthost.Fault{{Stage: smarthost.Rcpt, Match: "a@example.net", Code: 451, Text: "later"}}, []int{451, 250}},
		{"MAIL refused", []smarthost.Fault{{Stage: smarthost.Mail, Code: 553, Text: "bad sender"}}, []int{553, 553}},
		{"MAIL wants a login", []smarthost.Fault{{Stage: smarthost.Mail, Code: 530, Enhanced: [3]int{5, 7, 0}, Text: "auth first"}}, []int{454, 454}},
		{"after the dot", []smarthost.Fault{{Stage: smarthost.DataEnd, Code: 452, Text: "full"}}, []int{452, 452}},
		{"dropped after the dot", []smarthost.Fault{{Stage: smarthost.DataEnd, Drop: true}}, []int{0, 0}},
	}
	modes := []struct {
		name           string
		noPipe, noBDAT bool
	}{{"lockstep", true, true}, {"pipelined DATA", false, true}, {"pipelined BDAT", false, false}}
	for _, tt := range tests {
		for _, mode := range modes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				srv := smarthost.New(t, smarthost.Options{Users: map[string]string{"u": "p"}, Faults: tt.faults})
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(srv.CAPEM())
				o := relayOptions{
					Addr: srv.Addr(), TLS: TLSStartTLS, ServerName: "smarthost.test", RootCAs: pool,
					Auth: AuthAuto, Username: "u", Hostname: "app01.example.com",
					Timeout: 5 * time.Second, DataTimeout: 5 * time.Second,
					NoPipelining: mode.noPipe, NoChunking: mode.noBDAT,
				}
				o.Secret.Value = "p"
				env := envelope{From: "s@example.com", Rcpts: []string{"a@example.net", "b@example.net"}, Size: 20}
				results, _, _ := relay(context.Background(), o, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
				for i, want := range tt.want {
					if results[i].Code != want {
						t.Errorf("result %d = %d %q, want %d", i, results[i].Code, results[i].Text, want)
					}
				}
				accepted := 0
				for _, w := range tt.want {
					if w == 250 {
						accepted++
					}
				}
				msgs := srv.Messages()
				if (len(msgs) == 1) != (accepted > 0) {
					t.Errorf("%d messages recorded, with %d recipients accepted", len(msgs), accepted)
				}
				if len(msgs) == 1 && string(msgs[0].Data) != "Subject: x\r\n\r\nbody\r\n" {
					t.Errorf("message = %q", msgs[0].Data)
				}
			})
		}
	}
}

// TestBatchFlight: with PIPELINING and CHUNKING, sendBatch writes every
// message (RSET, MAIL, RCPT, BDAT LAST and the bytes) before it reads a
// reply, and maps the replies back to each message. The server refuses
// the second RSET: the refusals of that transaction become temporary,
// and what the server accepted stands.
func TestBatchFlight(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bodies := []string{"Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n", "Subject: 3\r\n\r\nthree\r\n"}
	var want strings.Builder
	for i, b := range bodies {
		if i > 0 {
			want.WriteString("RSET\r\n")
		}
		fmt.Fprintf(&want, "MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=%d\r\nRCPT TO:<r%d@example.net>\r\nBDAT %d LAST\r\n%s", len(b), i+1, len(b), b)
	}
	flight := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "220 fake ESMTP\r\n")
		br.ReadString('\n') // EHLO
		fmt.Fprintf(c, "250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n")
		// Read until the whole flight is in, and send nothing before.
		var got []byte
		buf := make([]byte, 4096)
		for len(got) < want.Len() {
			n, err := br.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:n]...)
		}
		flight <- string(got)
		fmt.Fprintf(c, "250 ok\r\n250 ok\r\n250 2.0.0 queued one\r\n")
		fmt.Fprintf(c, "500 what\r\n503 nested MAIL\r\n503 no MAIL\r\n503 no valid recipients\r\n")
		fmt.Fprintf(c, "250 reset\r\n250 ok\r\n250 ok\r\n250 2.0.0 queued three\r\n")
		br.ReadString('\n') // QUIT
		fmt.Fprintf(c, "221 bye\r\n")
	}()
	o := relayOptions{Addr: l.Addr().String(), TLS: TLSNone, Auth: AuthNone, Hostname: "app01.example.com", Timeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	s, err := dial(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var envs []envelope
	var msgs []io.Reader
	for i, b := range bodies {
		envs = append(envs, envelope{From: "a@example.com", Rcpts: []string{fmt.Sprintf("r%d@example.net", i+1)}, Size: int64(len(b))})
		msgs = append(msgs, strings.NewReader(b))
	}
	results, errs := s.sendBatch(envs, msgs)
	s.close()
	if got := <-flight; got != want.String() {
		t.Errorf("flight = %q\nwant %q", got, want.String())
	}
	if r := results[0][0]; r.Code != 250 || r.Text != "queued one" || errs[0] != nil {
		t.Errorf("message 1: %+v, %v; want 250 queued one", r, errs[0])
	}
	if r := results[1][0]; r.Code != 0 || !strings.Contains(r.Text, "RSET refused: 500 what") || errs[1] == nil {
		t.Errorf("message 2: %+v, %v; want a temporary failure naming the refused RSET", r, errs[1])
	}
	if r := results[2][0]; r.Code != 250 || r.Text != "queued three" || errs[2] != nil {
		t.Errorf("message 3: %+v, %v; want 250 queued three (the server took it)", r, errs[2])
	}
	if !s.broken {
		t.Error("the session is not marked broken after a refused RSET")
	}
}

// TestBatchMatchesSingle sends the same three messages as one batch and
// one by one, against the real test smarthost with faults on some of
// them: each message's results must be the same either way, and exactly
// the accepted messages arrive.
func TestBatchMatchesSingle(t *testing.T) {
	tests := []struct {
		name   string
		faults []smarthost.Fault
		want   [3]int // result code of the one recipient of each message
	}{
		{"all accepted", nil, [3]int{250, 250, 250}},
		{"one refused, one deferred", []smarthost.Fault{
			{Stage: smarthost.Rcpt, Match: "r2@example.net", Code: 550, Text: "no"},
			{Stage: smarthost.Rcpt, Match: "r3@example.net", Code: 451, Text: "later"}}, [3]int{250, 550, 451}},
		{"first refused after its bytes", []smarthost.Fault{{Stage: smarthost.DataEnd, Code: 452, Text: "full", Times: 1}}, [3]int{452, 250, 250}},
		{"MAIL refused once", []smarthost.Fault{{Stage: smarthost.Mail, Code: 553, Text: "bad sender", Times: 1}}, [3]int{553, 250, 250}},
		{"dropped after the first", []smarthost.Fault{{Stage: smarthost.DataEnd, Drop: true}}, [3]int{0, 0, 0}},
	}
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			name := tt.name + "/single"
			if batch {
				name = tt.name + "/batch"
			}
			t.Run(name, func(t *testing.T) {
				srv := smarthost.New(t, smarthost.Options{Users: map[string]string{"u": "p"}, Faults: tt.faults})
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(srv.CAPEM())
				o := relayOptions{
					Addr: srv.Addr(), TLS: TLSStartTLS, ServerName: "smarthost.test", RootCAs: pool,
					Auth: AuthAuto, Username: "u", Hostname: "app01.example.com",
					Timeout: 5 * time.Second, DataTimeout: 5 * time.Second,
				}
				o.Secret.Value = "p"
				s, err := dial(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				defer s.close()
				var envs []envelope
				var msgs []io.Reader
				var bodies []string
				for i := range 3 {
					b := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i+1, i+1)
					bodies = append(bodies, b)
					envs = append(envs, envelope{From: "s@example.com", Rcpts: []string{fmt.Sprintf("r%d@example.net", i+1)}, Size: int64(len(b))})
					msgs = append(msgs, strings.NewReader(b))
				}
				var results [][]result
				if batch {
					results, _ = s.sendBatch(envs, msgs)
				} else {
					for i := range envs {
						r, _ := s.send(envs[i], msgs[i])
						results = append(results, r)
					}
				}
				var arrived []string
				for i, want := range tt.want {
					if results[i][0].Code != want {
						t.Errorf("message %d: %d %q, want %d", i+1, results[i][0].Code, results[i][0].Text, want)
					}
					if want == 250 {
						arrived = append(arrived, bodies[i])
					}
				}
				var got []string
				for _, m := range srv.Messages() {
					got = append(got, string(m.Data))
				}
				if !slices.Equal(got, arrived) {
					t.Errorf("the smarthost recorded %q, want %q", got, arrived)
				}
			})
		}
	}
}
