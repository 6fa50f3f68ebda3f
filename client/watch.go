package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/latest"
)

// LeaderState is one value of WatchLeader: the leader as one peer reported
// it, or why no peer could be asked.
type LeaderState struct {
	// Leader is the leader; nil when the peer knows none (or when Err is
	// set).
	Leader *api.Peer
	// Index is the answering peer's change index (X-QCluster-Index).
	Index uint64
	// Addr is the base URL of the peer that answered.
	Addr string
	// Err, when not nil, says why no peer answered: the watch keeps trying
	// (with a growing pause, up to a second) and reports the leader again
	// once a peer answers. Leader is nil then, but that does not mean
	// there is no leader.
	Err error
}

// HasLeader reports whether a leader is known.
func (s LeaderState) HasLeader() bool { return s.Err == nil && s.Leader != nil }

// sameLeader reports whether a and b report the same leader (or both none,
// or both an error).
func sameLeader(a, b LeaderState) bool {
	if (a.Err != nil) != (b.Err != nil) || (a.Leader == nil) != (b.Leader == nil) {
		return false
	}
	return a.Leader == nil || (a.Leader.Identifier == b.Leader.Identifier && a.Leader.Host == b.Leader.Host && a.Leader.Port == b.Leader.Port)
}

// Watch retry pauses after failures (with jitter: see internal/backoff).
const (
	watchMinBackoff = 50 * time.Millisecond
	watchMaxBackoff = time.Second
)

// WatchLeader reports the leader, then every change of it, using blocking
// queries (GET /v1/leader?index=N&wait=...), so a change arrives as soon as
// the peer sees it. The first value is the leader now; WatchLeader returns
// an error only if no peer could be asked for it (or the answer was another
// error, such as ErrUnauthorized).
//
// The channel holds one value and always the latest: a reader that falls
// behind skips intermediate values but never misses the current one. A value
// never repeats the one before: each means a different leader, no leader,
// or an error (LeaderState.Err). After an error the watch tries the addresses
// again, resuming with the last index it had; a move to another peer can
// cost one extra query, never a missed change. The channel is closed when
// ctx ends; the watch's goroutine ends with it.
func (c *Client) WatchLeader(ctx context.Context) (<-chan LeaderState, error) {
	first, err := c.leaderState(ctx, 0, "")
	if err != nil {
		return nil, err
	}
	slot := latest.New[LeaderState]()
	slot.Set(first)
	go c.watchLeader(ctx, slot, first)
	return slot.C(), nil
}

func (c *Client) watchLeader(ctx context.Context, slot *latest.Slot[LeaderState], last LeaderState) {
	defer slot.Close()
	index, from := last.Index, last.Addr
	bo := backoff.New(watchMinBackoff, watchMaxBackoff)
	for {
		st, err := c.leaderState(ctx, index, from)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			st = LeaderState{Err: err}
		} else {
			index, from = st.Index, st.Addr
			bo.Reset()
		}
		if !sameLeader(last, st) {
			slot.Set(st)
			last = st
		}
		if err != nil && bo.Wait(ctx) != nil {
			return
		}
	}
}

// leaderState asks for the leader. With from set, it is a blocking query on
// index to the peer at from; another peer (when that one cannot be reached)
// is asked with index 0, since indexes are per peer, and so answers at
// once. "No leader" is a state, not an error.
func (c *Client) leaderState(ctx context.Context, index uint64, from string) (LeaderState, error) {
	req := request{method: "GET", path: "/v1/leader"}
	if from != "" {
		wait := c.opts.WatchWait.String()
		req.query = func(base string) url.Values {
			if base != from {
				return url.Values{"index": {"0"}, "wait": {wait}}
			}
			return url.Values{"index": {strconv.FormatUint(index, 10)}, "wait": {wait}}
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.WatchWait+c.opts.Timeout)
		defer cancel()
	}
	var p api.Peer
	m, err := c.call(ctx, req, &p)
	st := LeaderState{Index: m.index, Addr: m.addr}
	switch {
	case err == nil:
		st.Leader = &p
	case errors.Is(err, ErrNoLeader):
	default:
		return LeaderState{}, err
	}
	if !m.hasIndex {
		// Without an index every query would answer at once.
		return LeaderState{}, fmt.Errorf("qcluster client: %s answered without an %s header; is it a QCluster peer?", m.addr, api.IndexHeader)
	}
	return st, nil
}
