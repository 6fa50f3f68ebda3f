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
