package raftguard

import (
	"errors"
	"strings"
	"testing"
	"time"

	kvstore "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/kv"
)

// testGuard is a leader whose registry knows node 7 as "seven" and whose
// least session TTL is 2 s (as with a 1 s election timeout).
func testGuard() *Guard {
	return New(Deps{
		Member: func(id uint64) (string, bool) {
			if id == 7 {
				return "seven", true
			}
			return "", false
		},
		MinSessionTTL: func() time.Duration { return 2 * time.Second },
	})
}

// TestAcceptKVProposal: the leader appends a follower's KV operation only
// if it decodes and binds keys to nobody or to the sender.
func TestAcceptKVProposal(t *testing.T) {
	enc := func(op kvstore.Op) []byte {
		b, err := kvstore.EncodeOp(op)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const from, other = 7, 9
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"put", enc(kvstore.Op{Type: kvstore.OpPut, Key: "a", Value: []byte("v")}), true},
		{"own ephemeral", enc(kvstore.Op{Type: kvstore.OpPut, Key: "a", Owner: from}), true},
		{"lock", enc(kvstore.Op{Type: kvstore.OpPut, Key: kv.LockPrefix + "x", Compare: true, Owner: from}), true},
		{"delete", enc(kvstore.Op{Type: kvstore.OpDelete, Key: "a", Compare: true, ModRevision: 3}), true},
		{"another's ephemeral", enc(kvstore.Op{Type: kvstore.OpPut, Key: "a", Owner: other}), false},
		{"quota change", enc(kvstore.Op{Type: kvstore.OpSetQuota, Quota: 1 << 10}), false},
		{"another's lock", enc(kvstore.Op{Type: kvstore.OpPut, Key: kv.LockPrefix + "x", Compare: true, Owner: other}), false},
		{"garbage", []byte{kvstore.Kind, 1, 0, 0xff}, false},
		{"key too large", append([]byte{kvstore.Kind, 1, 0, 0, 0, 0, 0, 0x81, 0x08}, make([]byte, 1025+1)...), false},
	}
	g := testGuard()
	for _, tt := range tests {
		err := g.Accept(from, tt.data)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrForeignProposal)) {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// TestAcceptKVProposalSession: a member grants sessions only to itself,
// and no shorter than the leader's MinSessionTTL (the proposer checks it
// too, but a forwarded grant is the leader's to vet).
func TestAcceptKVProposalSession(t *testing.T) {
	for _, tt := range []struct {
		op   kvstore.Op
		from uint64
		ok   bool
	}{
		{kvstore.Op{Type: kvstore.OpGrant, Owner: 2, TTL: 2 * time.Second}, 2, true},
		{kvstore.Op{Type: kvstore.OpGrant, Owner: 2, TTL: time.Minute}, 2, true},
		{kvstore.Op{Type: kvstore.OpGrant, Owner: 3, TTL: 2 * time.Second}, 2, false},
		{kvstore.Op{Type: kvstore.OpGrant, Owner: 2, TTL: 2*time.Second - time.Millisecond}, 2, false},
		{kvstore.Op{Type: kvstore.OpGrant, Owner: 2, TTL: time.Millisecond}, 2, false},
		{kvstore.Op{Type: kvstore.OpKeepAlive, Session: 9}, 2, true},
		{kvstore.Op{Type: kvstore.OpPut, Key: "a", Session: 9}, 2, true},
	} {
		data, err := kvstore.EncodeOp(tt.op)
		if err != nil {
			t.Fatal(err)
		}
		err = testGuard().Accept(tt.from, data)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrForeignProposal)) {
			t.Errorf("%+v from %d: %v", tt.op, tt.from, err)
		}
	}
}

// TestAcceptMetadataProposal: a follower proposes only its own metadata,
// as the registry names it, within the metadata limits.
func TestAcceptMetadataProposal(t *testing.T) {
	enc := func(op registry.Op) []byte {
		b, err := registry.EncodeOp(op)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big := strings.Repeat("x", metadata.MaxSize) // over the limit once encoded
	for _, tt := range []struct {
		name string
		from uint64
		data []byte
		ok   bool
	}{
		{"own", 7, enc(registry.Op{Op: registry.OpMetadata, Identifier: "seven", Metadata: map[string]any{"zone": "a"}}), true},
		{"another's", 7, enc(registry.Op{Op: registry.OpMetadata, Identifier: "nine", Metadata: map[string]any{"zone": "a"}}), false},
		{"not a member", 9, enc(registry.Op{Op: registry.OpMetadata, Identifier: "nine"}), false},
		{"too large", 7, enc(registry.Op{Op: registry.OpMetadata, Identifier: "seven", Metadata: map[string]any{"x": big}}), false},
		{"garbage", 7, []byte{byte(registry.KindRegistry), '{'}, false},
		{"empty", 7, nil, false},
	} {
		if err := testGuard().Accept(tt.from, tt.data); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
