package spool

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkCommit queues a 2 KB message: Create, Write, Commit. Its cost
// is mostly the two file and two directory fsyncs.
func BenchmarkCommit(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog.\r\n"), 2048/46+1)[:2048]
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		w, err := s.Create()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
		if err := w.Commit(testEnvelope()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList lists queues of 10 and 1,000 messages; the time per
// message (ns/msg) must not grow with the queue.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			for range n {
				w, err := s.Create()
				if err != nil {
					b.Fatal(err)
				}
				w.Write([]byte("hi\r\n"))
				if err := w.Commit(testEnvelope("root@example.com", "ops@example.net")); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				envs, errs := s.List()
				if len(envs) != n || len(errs) != 0 {
					b.Fatalf("List = %d envelopes, %v", len(envs), errs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}

// BenchmarkDecode decodes a typical envelope: what List spends per message
// besides reading the file.
func BenchmarkDecode(b *testing.B) {
	e := testEnvelope("root@example.com", "ops@example.net")
	e.ID, e.Version, e.Created = "01JD2K7Q5W3N8X4Z", Version, t0()
	data, err := Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
