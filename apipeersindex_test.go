package qcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// TestAPIPeersBlockingQuery: GET /v1/peers?index=N on a real peer waits
// while the membership stands still, and answers within moments of a
// membership change with the new list and a new index.
func TestAPIPeersBlockingQuery(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	leader := tc.waitLeader(10 * time.Second)
	obs := tc.peers[(tc.index(leader)+1)%3]
	changer := tc.peers[(tc.index(leader)+2)%3]
	h := newHTTPC(t)
	// query runs on other goroutines too: it reports, never fails.
	query := func(index uint64, wait string) (api.PeerList, time.Duration, error) {
		var pl api.PeerList
		t0 := time.Now()
		resp, err := h.hc.Get("http://" + obs.Addr() + "/v1/peers?index=" + strconv.FormatUint(index, 10) + "&wait=" + wait)
		if err != nil {
			return pl, time.Since(t0), err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		took := time.Since(t0)
		if err != nil {
			return pl, took, err
		}
		if resp.StatusCode != 200 {
			return pl, took, fmt.Errorf("GET /v1/peers?index=%d: %s %s", index, resp.Status, b)
		}
		if err := json.Unmarshal(b, &pl); err != nil {
			return pl, took, fmt.Errorf("GET /v1/peers?index=%d: %w in %s", index, err, b)
		}
		if got := resp.Header.Get(api.IndexHeader); got != strconv.FormatUint(pl.Index, 10) {
			return pl, took, fmt.Errorf("%s %s, body index %d", api.IndexHeader, got, pl.Index)
		}
		return pl, took, nil
	}
	var pl api.PeerList
	h.get(obs, "/v1/peers", &pl)

	// It blocks: a query with the current index answers after its wait,
	// with the same index, unless something changed meanwhile (gossip
	// settling, a lease lapsing on a loaded machine): then again.
	for tries := 0; ; tries++ {
		got, took, err := query(pl.Index, "300ms")
		if err != nil {
			t.Fatal(err)
		}
		if got.Index == pl.Index {
			if took < 300*time.Millisecond {
				t.Fatalf("a query with the current index %d answered after %v, before its wait", pl.Index, took)
			}
			break
		}
		if tries == 20 {
			t.Fatalf("the membership index never stood still for 300ms: %d -> %d", pl.Index, got.Index)
		}
		pl = got
	}

	// It wakes at a membership change: changer's metadata, committed
	// through the leader, reaches obs's answer within moments (not at the
	// end of the 1-minute wait).
	type answer struct {
		pl   api.PeerList
		took time.Duration
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		got, took, err := query(pl.Index, "1m")
		answers <- answer{got, took, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := changer.SetMetadata(ctx, map[string]any{"zone": "b"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		var a answer
		select {
		case a = <-answers:
		case <-deadline:
			t.Fatalf("no answer showing %s's new metadata within 20s", changer.cfg.Identifier)
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.pl.Index == pl.Index {
			t.Fatalf("a blocking query answered with its own index %d after %v: it did not wake on the change", pl.Index, a.took)
		}
		for _, m := range a.pl.Peers {
			if m.Identifier == changer.cfg.Identifier && m.Metadata["zone"] == "b" {
				t.Logf("the blocking query answered the change %v after it was sent (index %d -> %d)", a.took, pl.Index, a.pl.Index)
				return
			}
		}
		// An earlier change (the leadership, gossip) answered first; ask
		// again with the new index.
		pl = a.pl
		go func() {
			got, took, err := query(pl.Index, "1m")
			answers <- answer{got, took, err}
		}()
	}
}
