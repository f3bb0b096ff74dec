package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net"
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
	results, err := relay(context.Background(), o, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
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
				results, _ := relay(context.Background(), o, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
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
