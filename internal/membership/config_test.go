package membership

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/transport"
)

func TestConfigValidate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := transport.NewMux(ln, transport.MuxOptions{})
	defer mux.Close()
	ok := func() Config {
		c := DefaultConfig()
		c.Name, c.Mux = "a", mux
		return c
	}
	if c := ok(); c.Validate() != nil {
		t.Fatalf("valid config: %v", c.Validate())
	}
	for _, tc := range []struct {
		field  string
		mutate func(*Config)
	}{
		{"Name", func(c *Config) { c.Name = "" }},
		{"Name", func(c *Config) { c.Name = strings.Repeat("n", 256) }},
		{"Name", func(c *Config) { c.Name = "\xff" }},
		{"Mux", func(c *Config) { c.Mux = nil }},
		{"Port", func(c *Config) { c.Port = 70000 }},
		{"AdvertisePort", func(c *Config) { c.AdvertisePort = -1 }},
		{"BindAddr", func(c *Config) { c.BindAddr = "localhost" }},
		{"Meta", func(c *Config) { c.Meta = make([]byte, MaxMetaSize+1) }},
		{"ClusterName", func(c *Config) { c.ClusterName = strings.Repeat("c", 256) }},
		{"ProbeInterval", func(c *Config) { c.ProbeInterval = -time.Second }},
		{"SuspicionMult", func(c *Config) { c.SuspicionMult = -1 }},
		{"RejoinInterval", func(c *Config) { c.RejoinInterval = -1 }},
		{"DeadMemberRetention", func(c *Config) { c.DeadMemberRetention = -1 }},
		{"EventBuffer", func(c *Config) { c.EventBuffer = -1 }},
		{"Profile", func(c *Config) { c.Profile = "mars" }},
		{"ProbeTimeout", func(c *Config) { c.ProbeInterval, c.ProbeTimeout = time.Second, time.Second }},
	} {
		c := ok()
		tc.mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig naming the field", tc.field, err)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", tc.field, err)
		}
	}
}

func TestSuspicionTimeout(t *testing.T) {
	c := Config{Profile: ProfileLocal}
	if lo, hi := c.SuspicionTimeout(3); lo != 3*time.Second || hi != 18*time.Second {
		t.Errorf("local, 3 members: %v..%v, want 3s..18s", lo, hi)
	}
	c = Config{Profile: ProfileLAN}
	if lo, hi := c.SuspicionTimeout(100); lo != 8*time.Second || hi != 48*time.Second {
		t.Errorf("lan, 100 members: %v..%v, want 8s..48s", lo, hi)
	}
}

func TestNewErrors(t *testing.T) {
	// New after Mux.Serve cannot register its handlers.
	n := startNode(t, "b", nil)
	c := DefaultConfig()
	c.Name, c.Mux = "a", n.mux
	c.Port = freeUDPPort(t) // b holds the Mux's port number
	if _, err := New(c); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Serve") {
		t.Errorf("New after Serve = %v, want ErrInvalidConfig mentioning Serve", err)
	}

	// A UDP port already taken is reported as such (startNode relies on
	// this to retry with another port).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := transport.NewMux(ln, transport.MuxOptions{})
	defer mux.Close()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ln.Addr().(*net.TCPAddr).Port})
	if err != nil {
		t.Skipf("UDP port taken by someone else: %v", err)
	}
	defer udp.Close()
	c.Mux, c.Port = mux, 0
	if _, err := New(c); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("New on a taken UDP port = %v, want EADDRINUSE", err)
	}
}

func freeUDPPort(t *testing.T) int {
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	return u.LocalAddr().(*net.UDPAddr).Port
}

func TestMemberlistLogAdapter(t *testing.T) {
	rec := newLogRecorder()
	l := newMemberlistLogger(slog.New(rec))
	l.Printf("[WARN] memberlist: Refuting a suspect message (from: %s)", "x")
	l.Printf("plain line")
	if !rec.contains("Refuting a suspect message (from: x) component=memberlist ml_level=WARN") {
		t.Errorf("adapter output: %q", *rec.lines)
	}
	if !rec.contains("plain line component=memberlist ml_level=") {
		t.Errorf("adapter output: %q", *rec.lines)
	}
	// Below debug, nothing is parsed or recorded.
	quiet := slog.New(slog.NewTextHandler(&failWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	newMemberlistLogger(quiet).Printf("[DEBUG] memberlist: noise")
}

type failWriter struct{ t *testing.T }

func (w *failWriter) Write(p []byte) (int, error) {
	w.t.Errorf("unexpected log output %q", p)
	return len(p), nil
}

func TestOpTimeout(t *testing.T) {
	if d, err := opTimeout(context.Background()); d != DefaultOpTimeout || err != nil {
		t.Errorf("no deadline: %v, %v", d, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if d, err := opTimeout(ctx); d < 59*time.Minute || err != nil {
		t.Errorf("1h deadline: %v, %v", d, err)
	}
	cancel()
	if _, err := opTimeout(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}
