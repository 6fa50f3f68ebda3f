package client

import (
	"errors"
	"testing"

	"github.com/qcluster/qcluster/api"
)

func TestSameLeader(t *testing.T) {
	a := &api.Peer{Identifier: "a", Host: "h", Port: 1}
	a2 := &api.Peer{Identifier: "a", Host: "h", Port: 1, Metadata: map[string]any{"x": 1.0}}
	b := &api.Peer{Identifier: "b", Host: "h", Port: 2}
	moved := &api.Peer{Identifier: "a", Host: "h", Port: 3}
	err := errors.New("down")
	for _, tt := range []struct {
		name string
		x, y LeaderState
		same bool
	}{
		{"same leader", LeaderState{Leader: a}, LeaderState{Leader: a2}, true},
		{"no leader twice", LeaderState{}, LeaderState{}, true},
		{"other leader", LeaderState{Leader: a}, LeaderState{Leader: b}, false},
		{"leader moved", LeaderState{Leader: a}, LeaderState{Leader: moved}, false},
		{"leader lost", LeaderState{Leader: a}, LeaderState{}, false},
		{"error", LeaderState{Leader: a}, LeaderState{Err: err}, false},
		{"error again", LeaderState{Err: err}, LeaderState{Err: err}, true},
	} {
		if got := sameLeader(tt.x, tt.y); got != tt.same {
			t.Errorf("%s: sameLeader = %v, want %v", tt.name, got, tt.same)
		}
	}
}
