package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestTTL: a TTL check fails until the first "passing", passes within the
// TTL, and fails once the TTL runs out without a report.
func TestTTL(t *testing.T) {
	h := New(&config.HealthCheckConfig{TTL: config.Duration(time.Second)})
	now := time.Now()
	if st, _ := h.State(now); st != Failing {
		t.Fatalf("before any report: %s, want failing", st)
	}
	h.Set(Passing, "ok", now)
	select {
	case <-h.Changed():
	default:
		t.Error("Set did not signal Changed")
	}
	if st, out := h.State(now.Add(900 * time.Millisecond)); st != Passing || out != "ok" {
		t.Errorf("within the TTL: %s %q", st, out)
	}
	if exp := h.Expiry(); !exp.Equal(now.Add(time.Second)) {
		t.Errorf("Expiry %v, want %v", exp, now.Add(time.Second))
	}
	st, out := h.State(now.Add(1100 * time.Millisecond))
	if st != Failing || !strings.Contains(out, "TTL expired") {
		t.Errorf("after the TTL: %s %q", st, out)
	}
	if !h.Expiry().IsZero() {
		t.Error("a failing check has an expiry")
	}
}

func TestValidate(t *testing.T) {
	if err := New(nil).Validate(Passing, ""); !errors.Is(err, ErrNoTTLCheck) {
		t.Errorf("no check: %v", err)
	}
	h := New(&config.HealthCheckConfig{TTL: config.Duration(time.Second)})
	for _, tt := range []struct{ status, output string }{
		{"ok", ""}, {None, ""}, {Passing, strings.Repeat("x", MaxOutput+1)}, {Failing, "\xff"},
	} {
		if err := h.Validate(tt.status, tt.output); !errors.Is(err, ErrInvalidHealth) {
			t.Errorf("Validate(%q, %d bytes) = %v, want ErrInvalidHealth", tt.status, len(tt.output), err)
		}
	}
	if err := h.Validate(Failing, "disk full"); err != nil {
		t.Errorf("a good report: %v", err)
	}
}

// TestRunHTTP: a 2xx answer passes; Failures failures in a row fail.
func TestRunHTTP(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	h := New(&config.HealthCheckConfig{HTTP: srv.URL, Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(5 * time.Second), Failures: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.RunHTTP(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, out := h.State(time.Now())
			if st == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("state %s (%s), want %s", st, out, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(Passing)
	fail.Store(true)
	wait(Failing)
	if _, out := h.State(time.Now()); !strings.Contains(out, "503") {
		t.Errorf("output %q does not show the answer", out)
	}
	fail.Store(false)
	wait(Passing)
}

// runHTTP runs h.RunHTTP until the test ends.
func runHTTP(t *testing.T, h *Check) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.RunHTTP(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitState waits until h's state is want and its output has sub.
func waitState(t *testing.T, h *Check, want, sub string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, out := h.State(time.Now())
		if st == want && strings.Contains(out, sub) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s (%s), want %s with %q", st, out, want, sub)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunHTTPRedirectNotFollowed: a redirect is the answer, and not a 2xx
// one: the check fails although the target would pass.
func TestRunHTTPRedirectNotFollowed(t *testing.T) {
	var moved atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if moved.Load() {
			http.Redirect(w, r, "/ok", http.StatusFound)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := New(&config.HealthCheckConfig{HTTP: srv.URL + "/healthz", Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(5 * time.Second), Failures: 1})
	runHTTP(t, h)
	waitState(t, h, Passing, "200")
	moved.Store(true)
	waitState(t, h, Failing, "302")
}

// TestRunHTTPTimeout: an answer slower than health_check.timeout fails.
func TestRunHTTPTimeout(t *testing.T) {
	var slow atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slow.Load() {
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	h := New(&config.HealthCheckConfig{HTTP: srv.URL, Interval: config.Duration(200 * time.Millisecond),
		Timeout: config.Duration(100 * time.Millisecond), Failures: 1})
	runHTTP(t, h)
	waitState(t, h, Passing, "200")
	slow.Store(true)
	waitState(t, h, Failing, "Timeout")
}
