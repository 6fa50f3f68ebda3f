package client

import (
	"errors"
	"testing"

	"github.com/qcluster/qcluster/api"
)

// TestAPIErrorMatchesSentinels: an answer's code maps to the client's
// sentinel through the API's one table of codes, and to no other.
func TestAPIErrorMatchesSentinels(t *testing.T) {
	sentinels := []error{ErrNoLeader, ErrNotLeader, ErrUnauthorized, ErrUnknownPeer, ErrBadRequest, ErrConflict, ErrWrongCluster, ErrMasterless}
	for _, tt := range []struct {
		status int
		code   string
		want   error // nil: none
	}{
		{503, api.CodeNoLeader, ErrNoLeader},
		{409, api.CodeNotLeader, ErrNotLeader},
		{401, api.CodeUnauthorized, ErrUnauthorized},
		{401, "", ErrUnauthorized}, // a proxy's 401
		{400, api.CodeUnknownPeer, ErrUnknownPeer},
		{404, api.CodeUnknownPeer, ErrUnknownPeer},
		{400, api.CodeBadRequest, ErrBadRequest},
		{409, api.CodeConflict, ErrConflict},
		{409, api.CodeWouldLoseQuorum, ErrConflict},
		{409, api.CodeWrongCluster, ErrWrongCluster},
		{409, api.CodeMasterless, ErrMasterless},
		{503, api.CodeUnavailable, nil},
		{500, api.CodeInternal, nil},
		{504, api.CodeTimeout, nil},
		{502, "", nil},
	} {
		e := &APIError{Status: tt.status, Code: tt.code}
		for _, s := range sentinels {
			if got := errors.Is(e, s); got != (s == tt.want) {
				t.Errorf("%d %q: errors.Is(%v) = %v", tt.status, tt.code, s, got)
			}
		}
	}
	// A sentinel of the client is also the API's.
	if !errors.Is(ErrConflict, api.ErrConflict) || errors.Is(ErrConflict, api.ErrWouldLoseQuorum) {
		t.Error("ErrConflict does not wrap api.ErrConflict alone")
	}
}
