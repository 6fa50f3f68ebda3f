package proccluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/qcluster/qcluster"
)

// LeadershipMessage is the message of the record a peer logs at every
// leadership change (qcluster.LeadershipLogMessage); ParseEvents looks for
// it. With a JSON handler the record's time has nanosecond precision, which
// lets ParseEvents and NamedSince time a fail-over exactly.
const LeadershipMessage = qcluster.LeadershipLogMessage

// Event is one leadership change read from an agent's JSON log.
type Event struct {
	// Time is when the agent logged the change.
	Time time.Time `json:"time"`
	// Peer is the identifier of the peer that logged it.
	Peer string `json:"peer"`
	// Leader is the leader the peer names, or "" when none.
	Leader string `json:"leader"`
	// Term is the peer's term.
	Term uint64 `json:"term"`
	// Role is the peer's Raft role.
	Role string `json:"role"`
	// IsLeader reports whether the peer held the leader lease.
	IsLeader bool `json:"is_leader"`
}

// Names reports whether the event shows the peer naming leader: a follower
// that names it, or the leader itself holding its lease.
func (e Event) Names(leader string) bool {
	if e.Leader != leader {
		return false
	}
	return e.Peer != leader || e.IsLeader
}

// ParseEvents reads the leadership changes (records with message
// LeadershipMessage) from a JSON log, one record a line. Other lines,
// including ones that are not JSON, are skipped.
func ParseEvents(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var rec struct {
			Event
			Msg string `json:"msg"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != LeadershipMessage {
			continue
		}
		out = append(out, rec.Event)
	}
	return out, sc.Err()
}

// NamedSince returns the time since which a peer has continuously named
// leader (Event.Names), judged from its events logged after after and up to
// until: the start of the streak of such events that is current at until.
// It returns false when the peer did not name leader at until, or had not
// logged a change to it after after.
func NamedSince(events []Event, leader string, after, until time.Time) (time.Time, bool) {
	var since time.Time
	for _, e := range events {
		if !e.Time.After(after) {
			continue
		}
		if e.Time.After(until) {
			break
		}
		switch {
		case !e.Names(leader):
			since = time.Time{}
		case since.IsZero():
			since = e.Time
		}
	}
	return since, !since.IsZero()
}

// Failover is how long a fail-over took, measured from the agents' logs.
type Failover struct {
	// Total is the time from the kill until the last survivor named the
	// new leader: the fail-over time.
	Total time.Duration
	// Peers says, for each survivor, how long after the kill it named the
	// new leader (for the new leader: held its lease), in the order given.
	Peers []PeerFailover
}

// PeerFailover is one survivor's part of a Failover.
type PeerFailover struct {
	Peer  *Peer
	After time.Duration
}

// MeasureFailover times a fail-over from the survivors' logs: for each
// survivor, the time since which it has named leader without interruption
// (NamedSince, with events after killedAt and up to now), relative to
// killedAt. Call it once the survivors agree on leader (WaitAgreed): it
// waits, until ctx ends, for their log lines to be written.
func MeasureFailover(ctx context.Context, survivors []*Peer, leader string, killedAt time.Time) (Failover, error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		f, missing, err := measureFailover(survivors, leader, killedAt, time.Now())
		if err != nil || missing == nil {
			return f, err
		}
		select {
		case <-ctx.Done():
			return f, fmt.Errorf("proccluster: %s logged no change to leader %s after the kill: %w", missing.ID, leader, ctx.Err())
		case <-tick.C:
		}
	}
}

func measureFailover(survivors []*Peer, leader string, killedAt, until time.Time) (f Failover, missing *Peer, err error) {
	for _, p := range survivors {
		evs, err := p.Events()
		if err != nil {
			return f, nil, err
		}
		since, ok := NamedSince(evs, leader, killedAt, until)
		if !ok {
			return f, p, nil
		}
		d := since.Sub(killedAt)
		f.Peers = append(f.Peers, PeerFailover{Peer: p, After: d})
		f.Total = max(f.Total, d)
	}
	return f, nil, nil
}
