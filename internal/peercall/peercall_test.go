package peercall

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var errMapped = errors.New("mapped")

// TestCall: the request carries the token and the JSON content type; the
// answer is decoded; an API error goes through apiError; another non-2xx
// answer says its status.
func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			api.WriteError(w, http.StatusUnauthorized, api.CodeUnauthorized, "headers")
			return
		}
		switch r.URL.Path {
		case "/v1/join":
			var req api.JoinRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Error(err)
			}
			_ = json.NewEncoder(w).Encode(api.JoinResult{Member: api.Member{Peer: api.Peer{Identifier: req.Identifier}}})
		case "/v1/refused":
			api.WriteError(w, http.StatusConflict, api.CodeConflict, "taken")
		default:
			http.Error(w, "no", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var got api.Error
	c := New("tok", nil, func(e api.Error) error { got = e; return errMapped })
	defer c.CloseIdleConnections()
	ctx := context.Background()
	var res api.JoinResult
	if err := c.Call(ctx, addr, http.MethodPost, "/v1/join", api.JoinRequest{Identifier: "n"}, &res); err != nil || res.Member.Identifier != "n" {
		t.Errorf("join: %+v %v", res, err)
	}
	if err := c.Call(ctx, addr, http.MethodDelete, "/v1/refused", nil, nil); !errors.Is(err, errMapped) || got.Code != api.CodeConflict {
		t.Errorf("API error: %v (%+v)", err, got)
	}
	if err := c.Call(ctx, addr, http.MethodGet, "/other", nil, nil); err == nil || !strings.Contains(err.Error(), "HTTP 502") {
		t.Errorf("a non-API error: %v", err)
	}
	if err := New("", nil, func(e api.Error) error { got = e; return errMapped }).Call(ctx, addr, http.MethodGet, "/v1/join", nil, nil); !errors.Is(err, errMapped) || got.Code != api.CodeUnauthorized {
		t.Errorf("without the token: %v (%+v)", err, got)
	}
}
