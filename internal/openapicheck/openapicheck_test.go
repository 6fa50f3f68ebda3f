package openapicheck_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/openapicheck"
)

// TestCheckRefuses: the checker refuses what the document does not
// describe, so the API tests that rely on it can fail.
func TestCheckRefuses(t *testing.T) {
	spec, err := openapicheck.New(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	withIndex := http.Header{"Content-Type": {"application/json"}, "X-Qcluster-Index": {"7"}}
	peer := `{"identifier": "b", "host": "h", "port": 7002}`
	ok := []struct {
		method, path string
		status       int
		h            http.Header
		body         string
	}{
		{"GET", "/v1/leader", 200, withIndex, peer},
		{"HEAD", "/v1/leader", 200, withIndex, ""},
		{"GET", "/v1/peers/a%2Fb", 404, json, `{"error": "x", "code": "unknown_peer"}`},
		{"GET", "/v1/leader", 503, json, `{"error": "x", "code": "no_leader"}`},
	}
	for _, c := range ok {
		if err := spec.Check(c.method, c.path, c.status, c.h, []byte(c.body)); err != nil {
			t.Errorf("%s %s %d: %v", c.method, c.path, c.status, err)
		}
	}
	bad := []struct {
		method, path string
		status       int
		h            http.Header
		body, want   string
	}{
		{"GET", "/v1/nothing", 200, json, `{}`, "no path"},
		{"PATCH", "/v1/leader", 200, json, `{}`, "no PATCH operation"},
		{"GET", "/v1/leader", 418, json, `{}`, "status 418"},
		{"GET", "/v1/leader", 200, json, peer, "X-QCluster-Index"},
		{"GET", "/v1/leader", 200, http.Header{"Content-Type": {"text/plain"}, "X-Qcluster-Index": {"7"}}, peer, "Content-Type text/plain"},
		{"GET", "/v1/leader", 200, withIndex, `{"identifier": "b", "host": "h", "port": 7002, "extra": 1}`, "does not match"},
		{"GET", "/v1/leader", 200, withIndex, `{"identifier": "b", "host": "h", "port": 0}`, "does not match"},
		{"GET", "/v1/leader", 503, json, `{"error": "x", "code": "no_such_code"}`, "does not match"},
		{"GET", "/v1/leader", 200, withIndex, `not json`, "not JSON"},
	}
	for _, c := range bad {
		err := spec.Check(c.method, c.path, c.status, c.h, []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s %d %s: %v, want an error saying %q", c.method, c.path, c.status, c.body, err, c.want)
		}
	}
}
