package httpclient

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"
)

func TestOptions(t *testing.T) {
	tr := New(Options{}).Transport.(*http.Transport)
	if tr.Proxy != nil || tr.MaxIdleConnsPerHost != DefaultMaxIdleConnsPerHost || tr.IdleConnTimeout != DefaultIdleConnTimeout || tr.TLSClientConfig != nil {
		t.Errorf("zero Options: proxy %v, idle %d %v, tls %v", tr.Proxy != nil, tr.MaxIdleConnsPerHost, tr.IdleConnTimeout, tr.TLSClientConfig)
	}
	cfg := &tls.Config{ServerName: "x", NextProtos: []string{"h2"}}
	tr = New(Options{TLS: cfg, HTTP1: true, Proxy: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute, DisableCompression: true}).Transport.(*http.Transport)
	if tr.Proxy == nil || tr.MaxIdleConnsPerHost != 16 || tr.IdleConnTimeout != time.Minute || !tr.DisableCompression {
		t.Errorf("options not applied: %+v", tr)
	}
	if tr.TLSClientConfig == cfg || tr.TLSClientConfig.ServerName != "x" || tr.TLSClientConfig.NextProtos != nil || tr.ForceAttemptHTTP2 {
		t.Errorf("TLS: not a clone for HTTP/1 only: %+v", tr.TLSClientConfig)
	}
	if len(cfg.NextProtos) != 1 {
		t.Error("the caller's TLS config was changed")
	}
}

// TestTimeoutAndRedirects: Timeout bounds the whole request and, unless
// set, its dial and TLS handshake; NoRedirects returns the redirect.
func TestTimeoutAndRedirects(t *testing.T) {
	c := New(Options{})
	tr := c.Transport.(*http.Transport)
	if c.Timeout != 0 || c.CheckRedirect != nil || tr.MaxIdleConns != 100 || tr.TLSHandshakeTimeout != 10*time.Second {
		t.Errorf("zero Options: timeout %v, redirects %v, idle %d, handshake %v", c.Timeout, c.CheckRedirect != nil, tr.MaxIdleConns, tr.TLSHandshakeTimeout)
	}
	c = New(Options{Timeout: 20 * time.Second, NoRedirects: true, MaxIdleConns: 1})
	tr = c.Transport.(*http.Transport)
	if c.Timeout != 20*time.Second || tr.MaxIdleConns != 1 || tr.TLSHandshakeTimeout != 20*time.Second {
		t.Errorf("options not applied: timeout %v, idle %d, handshake %v", c.Timeout, tr.MaxIdleConns, tr.TLSHandshakeTimeout)
	}
	if c.CheckRedirect == nil || c.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Error("NoRedirects: redirects are followed")
	}
}
