package quietconn

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleRound is an idle peer's lease round in miniature: a 50-byte
// message and its answer on a loopback connection, then a pause that
// lets the process go idle. It reports the process's context switches
// per round (getrusage), which is what a quiet connection saves: compare
// the plain and quiet cases.
//
//	go test -run - -bench IdleRound -benchtime 100x ./internal/quietconn
func BenchmarkIdleRound(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"plain", func(c net.Conn) net.Conn { return c }},
		{"quiet", Wrap},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c = tc.wrap(c)
				defer c.Close()
				buf := make([]byte, 50)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c = tc.wrap(c)
			defer c.Close()
			buf := make([]byte, 50)
			before := switches(b)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(switches(b)-before)/float64(b.N), "switches/round")
		})
	}
}

// switches is the process's context switches so far.
func switches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}
