// Package health is this peer's application health check
// (health_check): its state ("none", "passing", "failing") and output, the
// TTL a reporting application must keep, and the HTTP check's polling. It
// does not act on the state: the peer reads it (State, Changed).
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/httpclient"
)

// Check states (qcluster re-exports them as CheckNone, CheckPassing and
// CheckFailing).
const (
	None    = "none"    // the peer has no health_check
	Passing = "passing" // its application's check passes
	Failing = "failing" // it fails: the peer is no candidate for leadership
)

// Errors of Validate (qcluster re-exports them).
var (
	// ErrNoTTLCheck: a report for a peer whose config has no
	// health_check.ttl.
	ErrNoTTLCheck = errors.New(`qcluster: the config has no "health_check": {"ttl": ...}; the application's reports go nowhere`)
	// ErrInvalidHealth: a status other than "passing" or "failing", or an
	// output over MaxOutput bytes or not UTF-8.
	ErrInvalidHealth = errors.New("qcluster: invalid health report")
)

// MaxOutput bounds the output of a health report.
const MaxOutput = 4096

// Check is this peer's application health: its check's state and the
// last output, and, for a TTL check, when the application last said it
// passes.
type Check struct {
	cfg  *config.HealthCheckConfig // nil: no check
	kick chan struct{}             // signalled at every Set (capacity 1)

	mu       sync.Mutex
	status   string
	output   string
	reported time.Time // TTL: the last "passing" report
}

// New returns the check cfg configures (nil: none): failing, with no
// result yet, until it passes.
func New(cfg *config.HealthCheckConfig) *Check {
	h := &Check{cfg: cfg, kick: make(chan struct{}, 1), status: None}
	if cfg != nil {
		h.status, h.output = Failing, "no result yet"
	}
	return h
}

// Config returns the check's config (nil: no check).
func (h *Check) Config() *config.HealthCheckConfig { return h.cfg }

// Changed is signalled (capacity 1) at every Set.
func (h *Check) Changed() <-chan struct{} { return h.kick }

// State returns the check's state at now: a TTL check whose last
// "passing" is older than the TTL fails.
func (h *Check) State(now time.Time) (status, output string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg != nil && h.cfg.TTL > 0 && h.status == Passing && now.Sub(h.reported) > time.Duration(h.cfg.TTL) {
		h.status = Failing
		h.output = fmt.Sprintf("TTL expired: no report within %v", time.Duration(h.cfg.TTL))
	}
	return h.status, h.output
}

// Expiry returns when a TTL check that passes now will fail without a
// new report (zero: never).
func (h *Check) Expiry() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg == nil || h.cfg.TTL <= 0 || h.status != Passing {
		return time.Time{}
	}
	return h.reported.Add(time.Duration(h.cfg.TTL))
}

// Validate checks an application's report for a TTL check: ErrNoTTLCheck
// without one, ErrInvalidHealth for a bad status or output.
func (h *Check) Validate(status, output string) error {
	if h.cfg == nil || h.cfg.TTL <= 0 {
		return ErrNoTTLCheck
	}
	if status != Passing && status != Failing {
		return fmt.Errorf(`%w: status %q; use "passing" or "failing"`, ErrInvalidHealth, status)
	}
	if len(output) > MaxOutput || !utf8.ValidString(output) {
		return fmt.Errorf("%w: output must be UTF-8 of at most %d bytes", ErrInvalidHealth, MaxOutput)
	}
	return nil
}

// Set records the check's state (status Passing or Failing) at now.
func (h *Check) Set(status, output string, now time.Time) {
	h.mu.Lock()
	h.status, h.output = status, output
	if status == Passing {
		h.reported = now
	}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// RunHTTP polls health_check.http every interval until ctx ends: a 2xx
// answer passes; Failures failures in a row fail.
func (h *Check) RunHTTP(ctx context.Context) {
	hc := h.cfg
	// The application's own endpoint: no proxy, no redirect followed, one
	// idle connection, each check bounded by health_check.timeout.
	client := httpclient.New(httpclient.Options{Timeout: time.Duration(hc.Timeout), NoRedirects: true,
		MaxIdleConns: 1, IdleConnTimeout: 2 * time.Duration(hc.Interval)})
	defer client.CloseIdleConnections()
	ticker := time.NewTicker(time.Duration(hc.Interval))
	defer ticker.Stop()
	fails := 0
	for {
		ok, output := httpCheck(ctx, client, hc.HTTP)
		switch {
		case ctx.Err() != nil:
			return
		case ok:
			fails = 0
			h.Set(Passing, output, time.Now())
		default:
			fails++
			if fails >= hc.Failures {
				h.Set(Failing, output, time.Now())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// httpCheck runs one HTTP check.
func httpCheck(ctx context.Context, client *http.Client, url string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	out := fmt.Sprintf("HTTP GET %s: %s %s", url, resp.Status, body)
	if !utf8.ValidString(out) {
		out = fmt.Sprintf("HTTP GET %s: %s", url, resp.Status)
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 300, out
}
