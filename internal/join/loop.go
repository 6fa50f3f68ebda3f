package join

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/quiettimer"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Run is the registry loop, run beside the node until ctx ends: it
// registers this peer with a running cluster when it must join one
// (joining) or, when it founded one blind, checks that it was not meant
// to join one; it joins again when it finds that the cluster removed it
// while it was down or cut off, commits this peer's own metadata until the
// log carries it, and, on the leader, removes members that stayed dead for
// Deps.DeadMemberTimeout. The checks that wait for other peers back off
// (joinBackoffMin to joinBackoffMax, with jitter).
func (p *Protocol) Run(ctx context.Context, joining, blind bool) {
	if joining {
		p.joinLoop(ctx, p.d.Seeds, nil)
	}
	// Every second on an idle peer: a quiettimer wakes it once, not three
	// times (package quiettimer).
	t := quiettimer.New()
	defer t.Close()
	t.Reset(registryPollEvery)
	now := time.Now()
	blindBo := backoff.New(joinBackoffMin, joinBackoffMax)
	nextBlind, nextMaintain := now, now.Add(maintainEvery)
	removed := removedCheck{bo: backoff.New(joinBackoffMin, joinBackoffMax)}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-p.kick:
		}
		now := time.Now()
		if blind && !now.Before(nextBlind) {
			if p.checkBlindFounding(ctx, blindBo.Attempts()) {
				blind = false
			} else {
				nextBlind = now.Add(blindBo.Next())
			}
		}
		if !blind {
			p.checkRemoved(ctx, &removed, now)
		}
		maintain := !now.Before(nextMaintain)
		if maintain || !p.MetadataSettled() {
			p.reconcileMetadata(ctx)
		}
		if maintain {
			nextMaintain = now.Add(maintainEvery)
			if p.d.DeadMemberTimeout > 0 && p.d.IsLeader() {
				p.reapDead(ctx)
			}
		}
		due := []time.Time{nextMaintain}
		if blind {
			due = append(due, nextBlind)
		}
		t.Reset(p.pollAfter(time.Now(), due))
	}
}

// pollAfter is how long the registry loop sleeps: registryPollEvery while
// it waits on the cluster (no leader known, or this peer's metadata not in
// the log yet), else until the first of due (at most maintainEvery). An
// idle peer so wakes once a second for its registry, not ten times.
func (p *Protocol) pollAfter(now time.Time, due []time.Time) time.Duration {
	if _, ok := p.d.Leader(); !ok || !p.MetadataSettled() {
		return registryPollEvery
	}
	d := maintainEvery
	for _, at := range due {
		d = min(d, at.Sub(now))
	}
	return max(d, registryPollEvery)
}

// joinLoop asks contacts, in turn, to add this peer, until one does, ctx
// ends or stop (when not nil) reports true, waiting with a growing,
// jittered backoff between rounds. Every failed attempt is logged with
// the reason: at Warn (Error when the operator must fix something) in the
// first round, at Info after.
func (p *Protocol) joinLoop(ctx context.Context, contacts []config.PeerConfig, stop func() bool) {
	req := api.JoinRequest{
		Identifier:  p.d.Identifier,
		Host:        p.d.Host,
		Port:        p.d.Port,
		Metadata:    p.d.Metadata(),
		ClusterName: p.d.ClusterName,
	}
	if !p.d.Voter {
		f := false
		req.Voter = &f
	}
	bo := backoff.New(joinBackoffMin, joinBackoffMax)
	for {
		wait := bo.Next()
		for _, peer := range contacts {
			if stop != nil && stop() {
				p.joinErr.Store(nil)
				return
			}
			req.Metadata = p.d.Metadata()
			var res api.JoinResult
			err := p.d.Call(ctx, peer.Addr(), http.MethodPost, "/v1/join", req, &res)
			if err == nil {
				p.joinErr.Store(nil)
				for _, m := range res.Peers {
					if id := config.NodeID(m.Identifier); id != p.d.ID {
						p.d.Learned(id, config.PeerConfig{Host: m.Host, Port: m.Port}.Addr())
					}
				}
				p.d.Log.Info("joined the cluster", "via", peer.Identifier, "already_member", res.AlreadyMember, "members", len(res.Peers), "attempts", bo.Attempts())
				return
			}
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("join via %s (%s): %w", peer.Identifier, peer.Addr(), err)
			p.joinErr.Store(&err)
			level := slog.LevelInfo
			switch {
			case bo.Attempts() > 1:
			case errors.Is(err, sdkerr.ErrConflict) || errors.Is(err, sdkerr.ErrWrongCluster) || errors.Is(err, sdkerr.ErrInvalidMember) || errors.Is(err, sdkerr.ErrUnauthorized):
				level = slog.LevelError // needs a fix by the operator; retried anyway
			default:
				level = slog.LevelWarn
			}
			p.d.Log.Log(ctx, level, "cannot join the cluster yet; retrying", "err", err, "attempt", bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// removedCheck is the state of checkRemoved between rounds.
type removedCheck struct {
	bo       *backoff.Backoff
	next     time.Time // when to ask the members again
	leaderAt time.Time // when this peer last knew a leader (or started)
}

// checkRemoved joins the cluster again when it removed this peer while this
// peer could not see it (it was down, or cut off, longer than
// dead_member_timeout): such a peer still counts itself a member, but no
// leader ever talks to it again. When this peer has known no leader for
// removedAfter while its own configuration lists it, it asks the members it
// knows (with backoff) for their status; if one follows a leader in a
// configuration without this peer, it joins again through it, keeping its
// data (raft catches its log up). A peer that saw its own removal (Leave,
// or RemovePeer while it ran) does not come back by itself.
func (p *Protocol) checkRemoved(ctx context.Context, st *removedCheck, now time.Time) {
	if st.leaderAt.IsZero() {
		st.leaderAt = now
	}
	if _, ok := p.d.Leader(); ok || !p.InConf(p.d.ID) {
		st.leaderAt, st.next = now, time.Time{}
		st.bo.Reset()
		return
	}
	if now.Sub(st.leaderAt) < p.removedAfter() || now.Before(st.next) {
		return
	}
	var members []config.PeerConfig
	for _, m := range p.d.Registry().Sorted() {
		if m.Identifier != p.d.Identifier {
			members = append(members, config.PeerConfig{Host: m.Host, Port: m.Port, Identifier: m.Identifier})
		}
	}
	id, errs := p.probe(ctx, members, true)
	if id == "" {
		wait := st.bo.Next()
		st.next = now.Add(wait)
		p.d.Log.Debug("no leader known; no member says this peer was removed", "attempt", st.bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String(), "err", errors.Join(errs...))
		return
	}
	p.d.Log.Warn("the cluster removed this peer while it was down or cut off (dead_member_timeout); joining it again", "asked", id)
	contacts := []config.PeerConfig{}
	for _, m := range members {
		if m.Identifier == id {
			contacts = append(contacts, m)
		}
	}
	for _, m := range append(members, p.d.Seeds...) {
		if !slices.ContainsFunc(contacts, func(q config.PeerConfig) bool { return q.Addr() == m.Addr() }) {
			contacts = append(contacts, m)
		}
	}
	p.joinLoop(ctx, contacts, func() bool {
		_, ok := p.d.Leader()
		return ok && p.InConf(p.d.ID) // back (or it was a false alarm)
	})
	st.leaderAt, st.next = time.Now(), time.Time{}
	st.bo.Reset()
}

// reapDead removes, on the leader, one member that gossip has reported
// dead or left for longer than Deps.DeadMemberTimeout, never going below
// Deps.MinVoters voters.
func (p *Protocol) reapDead(ctx context.Context) {
	cutoff := time.Now().Add(-p.d.DeadMemberTimeout)
	v := p.d.View()
	reg := p.d.Registry()
	for _, gm := range p.d.Gossip() {
		if gm.State.Live() || gm.Since.After(cutoff) || gm.Name == p.d.Identifier {
			continue
		}
		id := config.NodeID(gm.Name)
		if m, ok := reg.Get(id); ok && m.Identifier != gm.Name {
			continue
		}
		_, voter := slices.BinarySearch(v.Voters, id)
		_, learner := slices.BinarySearch(v.Learners, id)
		if !voter && !learner {
			continue
		}
		if voter && len(v.Voters)-1 < p.d.MinVoters {
			continue
		}
		p.d.Log.Warn("removing a member that has been dead longer than dead_member_timeout",
			"member", gm.Name, "state", gm.State.String(), "since", gm.Since, "dead_member_timeout", p.d.DeadMemberTimeout.String())
		err := p.doLeader(ctx, func(core *consensus.Core) error {
			return core.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id})
		})
		if err != nil {
			p.d.Log.Debug("registry: cannot remove a dead member yet", "member", gm.Name, "err", err)
		}
		return // one change at a time
	}
}
