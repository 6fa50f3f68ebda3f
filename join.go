package qcluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/peercall"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
	"github.com/qcluster/qcluster/internal/storage"
)

// ErrUnauthorized: a peer refused this peer's API token (Config.APIToken
// must be the same on every peer).
var ErrUnauthorized = sdkerr.Unauthorized

// Timings of self-registration and membership changes.
const (
	// probeTimeout bounds the question a new peer asks its configured
	// peers at start: is a cluster already running?
	probeTimeout = 2 * time.Second
	// joinBackoffMin and joinBackoffMax bound the wait between join
	// attempts.
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
	// maintainEvery is how often the registry loop reconciles this peer's
	// metadata and, on the leader, looks for dead members.
	maintainEvery = time.Second
	// registryPollEvery is how often the registry loop looks at what is
	// due (its checks run at maintainEvery or on their own backoff), and
	// how soon it commits this peer's metadata once a leader is known.
	registryPollEvery = 100 * time.Millisecond
)

// existingCluster asks the configured peers, in parallel, whether they
// already run a cluster, and reports whether one does that does not list
// this peer: then this peer must join it instead of founding one. Peers
// that do not answer, still start, or list this peer, say nothing against
// founding. blind reports that none answered at all.
func (c *Cluster) existingCluster(ctx context.Context) (joining, blind bool) {
	id, errs := c.probeCluster(ctx, c.cfg.RemotePeers(), false)
	if id != "" {
		c.log.Info("a cluster is running that does not list this peer: joining it", "asked", id)
		return true, false
	}
	if len(errs) == len(c.cfg.RemotePeers()) {
		c.log.Warn("no configured peer answered; founding a new cluster with the configured peers. If this peer should join a running cluster, check that its peers are up and share its cluster_name, TLS settings and api_token",
			"err", errors.Join(errs...))
		return false, true
	}
	return false, false
}

// probeCluster asks peers, in parallel, for their status and returns the
// identifier of one that runs a cluster that does not list this peer (or
// ""; with withLeader, one that also follows a leader), and the errors of
// the peers that did not answer.
func (c *Cluster) probeCluster(ctx context.Context, remote []PeerConfig, withLeader bool) (string, []error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	found := make(chan string, len(remote))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, p := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st api.Status
			if err := c.call(ctx, p.Addr(), http.MethodGet, "/v1/status", nil, &st); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s (%s): %w", p.Identifier, p.Addr(), err))
				mu.Unlock()
				return
			}
			if st.Mode == ModeMasterless || len(st.Voters) == 0 || (withLeader && st.Leader == nil) {
				return // not running a cluster (yet)
			}
			if slices.Contains(st.Voters, c.cfg.Identifier) || slices.Contains(st.Learners, c.cfg.Identifier) {
				return
			}
			found <- p.Identifier
		}()
	}
	go func() {
		wg.Wait()
		close(found)
	}()
	id, ok := <-found
	if ok {
		cancel()
	}
	for range found { // every prober is done once found is closed
	}
	return id, errs
}

// checkBlindFounding runs, on a peer that founded a cluster while none of
// its configured peers answered, until it first knows a leader: should a
// configured peer turn out to run a cluster that does not list this peer,
// this peer was meant to join it, and never will elect a leader where it
// is (the others refuse its votes). If its state is still the bare
// founding snapshot (it never voted, nothing was committed), it discards it
// and joins; otherwise it reports the conflict through JoinErr and the log.
// It returns true when done checking. attempt counts the earlier checks,
// for the log (existingCluster has warned already).
func (c *Cluster) checkBlindFounding(ctx context.Context, attempt int) bool {
	if _, ok := c.Leader(); ok {
		return true
	}
	id, errs := c.probeCluster(ctx, c.cfg.RemotePeers(), false)
	if id == "" {
		if len(errs) > 0 && ctx.Err() == nil {
			c.log.Info("no leader yet, and some configured peers do not answer; asking them again (if this peer should join a running cluster, its peers must be up)",
				"attempt", attempt+1, "err", errors.Join(errs...))
		}
		return false
	}
	switch err := c.discardFounding(); {
	case err == nil:
		c.log.Warn("this peer founded a cluster while none of its peers answered, but "+id+" runs a cluster that does not list it; it never led nor voted there, so it discards that state and joins", "asked", id)
		c.joinLoop(ctx, c.cfg.RemotePeers(), nil)
		return true
	case ctx.Err() != nil:
		return true
	default:
		err = fmt.Errorf("%w: this peer founded a cluster with its configured peers because none of them answered when it first started, but %s runs a cluster that does not list it, and this peer's state has moved on (%w): stop this peer, delete its data_dir (%s) and start it again while %s is up, to join that cluster",
			ErrConflict, id, err, c.cfg.DataDir, id)
		c.joinErr.Store(&err)
		c.log.Error("this peer cannot take part in the running cluster", "err", err)
		return true
	}
}

// errNotPristine: the state holds more than the founding snapshot.
var errNotPristine = errors.New("it holds more than the founding snapshot")

// discardFounding stops the node and, if its durable state is still the
// bare founding snapshot (term 1, no vote, nothing beyond index 1), deletes
// it and starts a node that waits to be added to a cluster. Otherwise it
// starts the node again on its state and returns errNotPristine. It runs
// on the registry loop, the only place besides Start that swaps the node.
func (c *Cluster) discardFounding() error {
	run := c.run.Load()
	run.nodeRun.cancel()
	<-run.nodeRun.done
	if run.ctx.Err() != nil {
		return run.ctx.Err() // closing
	}
	store := run.store
	hs, _, err := store.InitialState()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	pristine := hs.Term <= 1 && hs.Vote == 0 && hs.Commit <= 1 && last <= 1
	var voters []uint64
	if pristine {
		if err := store.Close(); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(c.cfg.DataDir, storage.FileName)); err != nil {
			return fmt.Errorf("discard the founding state: %w", err)
		}
		if store, err = storage.Open(c.cfg.DataDir, storage.Options{Logger: c.log, OnSave: c.metrics.ObserveFsync}); err != nil {
			return fmt.Errorf("reopen data_dir: %w", err)
		}
		// Close reads the store after waiting for this loop.
		withStore := *run
		withStore.store = store
		c.run.Store(&withStore)
		c.setRegistry(c.foundingRegistry())
	}
	node, err := c.newNode(store, run.tr, voters, nil)
	if err != nil {
		return err
	}
	c.runNode(c.useNode(run, store, node))
	if !pristine {
		return errNotPristine
	}
	return nil
}

// registryLoop runs beside the node: it registers this peer with a running
// cluster when it must join one (or, when it founded one blind, checks
// that it was not meant to join one), joins again when it finds that the
// cluster removed it while it was down or cut off, commits this peer's own
// metadata until the log carries it, and, on the leader, removes members
// that stayed dead for Config.DeadMemberTimeout. The checks that wait for
// other peers back off (joinBackoffMin to joinBackoffMax, with jitter).
func (c *Cluster) registryLoop(ctx context.Context, joining, blind bool) {
	if joining {
		c.joinLoop(ctx, c.cfg.RemotePeers(), nil)
	}
	t := time.NewTicker(registryPollEvery)
	defer t.Stop()
	now := time.Now()
	blindBo := backoff.New(joinBackoffMin, joinBackoffMax)
	nextBlind, nextMaintain := now, now.Add(maintainEvery)
	removed := removedCheck{bo: backoff.New(joinBackoffMin, joinBackoffMax)}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if blind && !now.Before(nextBlind) {
			if c.checkBlindFounding(ctx, blindBo.Attempts()) {
				blind = false
			} else {
				nextBlind = now.Add(blindBo.Next())
			}
		}
		if !blind {
			c.checkRemoved(ctx, &removed, now)
		}
		maintain := !now.Before(nextMaintain)
		if maintain || !c.ownMetadataSettled() {
			c.reconcileMetadata(ctx)
		}
		if maintain {
			nextMaintain = now.Add(maintainEvery)
			if c.cfg.DeadMemberTimeout > 0 && c.IsLeader() {
				c.reapDead(ctx)
			}
		}
	}
}

// joinLoop asks contacts, in turn, to add this peer, until one does, ctx
// ends or stop (when not nil) reports true, waiting with a growing,
// jittered backoff between rounds. Every failed attempt is logged with
// the reason: at Warn (Error when the operator must fix something) in the
// first round, at Info after.
func (c *Cluster) joinLoop(ctx context.Context, contacts []PeerConfig, stop func() bool) {
	req := api.JoinRequest{
		Identifier:  c.cfg.Identifier,
		Host:        c.self.Host,
		Port:        c.self.Port,
		Metadata:    c.selfMetadata(),
		ClusterName: c.cfg.ClusterName,
	}
	if !c.cfg.IsVoter() {
		f := false
		req.Voter = &f
	}
	bo := backoff.New(joinBackoffMin, joinBackoffMax)
	for {
		wait := bo.Next()
		for _, p := range contacts {
			if stop != nil && stop() {
				c.joinErr.Store(nil)
				return
			}
			req.Metadata = c.selfMetadata()
			var res api.JoinResult
			err := c.call(ctx, p.Addr(), http.MethodPost, "/v1/join", req, &res)
			if err == nil {
				c.joinErr.Store(nil)
				for _, m := range res.Peers {
					if id := NodeID(m.Identifier); id != c.selfID {
						addr := Peer{Host: m.Host, Port: m.Port}.Addr()
						c.transport().SetPeer(id, addr)
						c.gossipSeed(addr)
					}
				}
				c.log.Info("joined the cluster", "via", p.Identifier, "already_member", res.AlreadyMember, "members", len(res.Peers), "attempts", bo.Attempts())
				return
			}
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("join via %s (%s): %w", p.Identifier, p.Addr(), err)
			c.joinErr.Store(&err)
			level := slog.LevelInfo
			switch {
			case bo.Attempts() > 1:
			case errors.Is(err, ErrConflict) || errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrInvalidMember) || errors.Is(err, ErrUnauthorized):
				level = slog.LevelError // needs a fix by the operator; retried anyway
			default:
				level = slog.LevelWarn
			}
			c.log.Log(ctx, level, "cannot join the cluster yet; retrying", "err", err, "attempt", bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String())
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

// removedAfter is how long a voter (or learner) stays without a leader
// before it asks the other members whether they removed it.
func (c *Cluster) removedAfter() time.Duration {
	return max(time.Second, 4*time.Duration(c.cfg.ElectionTimeout))
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
func (c *Cluster) checkRemoved(ctx context.Context, st *removedCheck, now time.Time) {
	if st.leaderAt.IsZero() {
		st.leaderAt = now
	}
	if _, ok := c.Leader(); ok || !c.inConf(c.selfID) {
		st.leaderAt, st.next = now, time.Time{}
		st.bo.Reset()
		return
	}
	if now.Sub(st.leaderAt) < c.removedAfter() || now.Before(st.next) {
		return
	}
	var members []PeerConfig
	for _, p := range c.reg.Load().Sorted() {
		if p.Identifier != c.cfg.Identifier {
			members = append(members, PeerConfig{Host: p.Host, Port: p.Port, Identifier: p.Identifier})
		}
	}
	id, errs := c.probeCluster(ctx, members, true)
	if id == "" {
		wait := st.bo.Next()
		st.next = now.Add(wait)
		c.log.Debug("no leader known; no member says this peer was removed", "attempt", st.bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String(), "err", errors.Join(errs...))
		return
	}
	c.log.Warn("the cluster removed this peer while it was down or cut off (dead_member_timeout); joining it again", "asked", id)
	contacts := []PeerConfig{}
	for _, p := range members {
		if p.Identifier == id {
			contacts = append(contacts, p)
		}
	}
	for _, p := range append(members, c.cfg.RemotePeers()...) {
		if !slices.ContainsFunc(contacts, func(q PeerConfig) bool { return q.Addr() == p.Addr() }) {
			contacts = append(contacts, p)
		}
	}
	c.joinLoop(ctx, contacts, func() bool {
		_, ok := c.Leader()
		return ok && c.inConf(c.selfID) // back (or it was a false alarm)
	})
	st.leaderAt, st.next = time.Now(), time.Time{}
	st.bo.Reset()
}

// JoinErr returns why the last attempt of this peer to join a running
// cluster failed, or nil (it joined, or never had to).
func (c *Cluster) JoinErr() error {
	if p := c.joinErr.Load(); p != nil {
		return *p
	}
	return nil
}

// AddPeer adds a member to the cluster, as a voter or as a non-voting
// learner, and waits until the change is committed: every peer then
// reports it with this host, port and metadata. Called on a follower, it
// asks the leader. A peer that is already a member at the same address is
// not added twice (no error). Errors: ErrInvalidMember, ErrConflict (the
// identifier or address belongs to another member), ErrNoLeader,
// ErrMasterless, ctx's error.
//
// A peer normally registers itself: start it with a config that names
// itself and at least one running peer (see Config).
func (c *Cluster) AddPeer(ctx context.Context, p Peer, voter bool) error {
	_, err := c.join(ctx, api.JoinRequest{
		Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata,
		Voter: &voter, ClusterName: c.cfg.ClusterName,
	})
	return err
}

// join adds the member req describes, as the mode says.
func (c *Cluster) join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	return c.mode.join(ctx, req)
}

// join: a masterless cluster has no log to add members to.
func (masterlessMode) join(context.Context, api.JoinRequest) (api.JoinResult, error) {
	return api.JoinResult{}, fmt.Errorf("%w: members of a masterless cluster join by gossip: start the new peer with a config naming a running one", ErrMasterless)
}

// join adds the member req describes to the log, on the leader or through
// it.
func (l leaderMode) join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	c := l.c
	if req.ClusterName != c.cfg.ClusterName {
		return api.JoinResult{}, fmt.Errorf("%w: the peer %q belongs to cluster %q, this is %q", ErrWrongCluster, req.Identifier, req.ClusterName, c.cfg.ClusterName)
	}
	if msg := config.NameProblem(req.Identifier, false); req.Identifier == "" || msg != "" {
		if req.Identifier == "" {
			msg = "is missing"
		}
		return api.JoinResult{}, fmt.Errorf("%w: identifier %q %s", ErrInvalidMember, req.Identifier, msg)
	}
	if msg := config.HostProblem(req.Host, "port"); req.Host == "" || msg != "" {
		if req.Host == "" {
			msg = "is missing"
		}
		return api.JoinResult{}, fmt.Errorf("%w: host %q %s", ErrInvalidMember, req.Host, msg)
	}
	if req.Port < 1 || req.Port > 65535 {
		return api.JoinResult{}, fmt.Errorf("%w: port %d is out of range (1-65535)", ErrInvalidMember, req.Port)
	}
	md, err := normalizeMetadata(req.Metadata)
	if err != nil {
		return api.JoinResult{}, fmt.Errorf("%w: %w", ErrInvalidMember, err)
	}
	rec := registry.Member{Identifier: req.Identifier, Host: req.Host, Port: req.Port, Metadata: md}
	voter := req.Voter == nil || *req.Voter
	for {
		if !c.IsLeader() {
			var res api.JoinResult
			err := c.toLeader(ctx, http.MethodPost, "/v1/join", req, &res)
			if errors.Is(err, ErrNotLeader) {
				continue // the leader changed on the way; ask the new one
			}
			return res, err
		}
		already, err := c.addMember(ctx, rec, voter)
		if errors.Is(err, ErrNotLeader) {
			continue
		}
		if err != nil {
			return api.JoinResult{}, err
		}
		ms := c.Peers()
		res := api.JoinResult{AlreadyMember: already, Peers: make([]api.Member, 0, len(ms))}
		for _, m := range ms {
			res.Peers = append(res.Peers, toAPIMember(m))
		}
		if l, ok := c.Leader(); ok {
			lp := toAPIPeer(l)
			res.Leader = &lp
		}
		for _, m := range res.Peers {
			if m.Identifier == rec.Identifier {
				res.Member = m
			}
		}
		return res, nil
	}
}

// addMember proposes, on the leader, the configuration change that adds rec
// and waits until it is applied. It reports whether rec was a member
// already.
func (c *Cluster) addMember(ctx context.Context, rec registry.Member, voter bool) (bool, error) {
	id := NodeID(rec.Identifier)
	ctxData, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidMember, err)
	}
	typ := raftpb.ConfChangeAddNode
	if !voter {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	for {
		changed := c.registryChanged()
		var already bool
		err := c.doLeader(ctx, func(core *consensus.Core) error {
			reg := c.reg.Load()
			cs := core.ConfState()
			inConf := slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id)
			if p, ok := reg.Get(id); ok {
				if p.Identifier != rec.Identifier {
					return fmt.Errorf("%w: identifier %q has the same node ID (hash) as member %q; choose another identifier", ErrConflict, rec.Identifier, p.Identifier)
				}
				if p.Host != rec.Host || p.Port != rec.Port {
					return fmt.Errorf("%w: %q is already a member at %s; remove it first (DELETE /v1/peers/%s) to move it to %s",
						ErrConflict, rec.Identifier, p.Addr(), url.PathEscape(rec.Identifier), rec.Addr())
				}
				if inConf {
					already = true
					return nil
				}
			}
			for _, p := range reg.All() {
				if p.Identifier != rec.Identifier && p.Host == rec.Host && p.Port == rec.Port {
					return fmt.Errorf("%w: %s is the address of member %q", ErrConflict, rec.Addr(), p.Identifier)
				}
			}
			return core.ProposeConfChange(raftpb.ConfChange{Type: typ, NodeID: id, Context: ctxData})
		})
		if err != nil || already {
			return already, err
		}
		// Raft drops a change while another is pending, or before the
		// leader has committed an entry of its term: propose again after
		// a while unless it was applied.
		if done, err := c.waitRegistry(ctx, changed, func(r *registry.State) bool {
			p, ok := r.Get(id)
			return ok && p.Host == rec.Host && p.Port == rec.Port && c.inConf(id)
		}); done || err != nil {
			return false, err
		}
	}
}

// retryEvery is how long a membership change waits for its entry to be
// applied before proposing it again.
func (c *Cluster) retryEvery() time.Duration {
	return max(time.Second, 5*time.Duration(c.cfg.ElectionTimeout))
}

// waitRegistry waits, for up to retryEvery, until cond holds for the
// registry (checking at every change after changed); it reports whether
// cond holds.
func (c *Cluster) waitRegistry(ctx context.Context, changed <-chan struct{}, cond func(*registry.State) bool) (bool, error) {
	timer := time.NewTimer(c.retryEvery())
	defer timer.Stop()
	// The view (voters, learners) is published just after the registry
	// changes; conditions on it are polled.
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		if cond(c.reg.Load()) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-c.done:
			return false, ErrClosed
		case <-timer.C:
			return cond(c.reg.Load()), nil
		case <-changed:
			changed = c.registryChanged()
		case <-poll.C:
		}
	}
}

// doLeader runs fn on the node goroutine if this peer leads (ErrNotLeader
// otherwise).
func (c *Cluster) doLeader(ctx context.Context, fn func(*consensus.Core) error) error {
	node := c.node()
	if node == nil {
		return ErrNotStarted
	}
	err := node.Do(ctx, func(core *consensus.Core) error {
		if core.View().Role != consensus.Leader {
			return ErrNotLeader
		}
		return fn(core)
	})
	if errors.Is(err, consensus.ErrStopped) {
		return ErrClosed
	}
	return err
}

// RemovePeer removes the member named identifier from the cluster (from
// the voters or learners, and from the registry) and waits until the change
// is committed. Called on a follower, it asks the leader; removing the
// leader makes it hand leadership over first, so no election timeout is
// lost. The removed peer keeps running, but no longer takes part in
// elections (use Leave on the peer itself to also stop it).
//
// A voter is not removed when the voters that would remain could not
// elect a leader: when fewer than a majority of them are alive as gossip
// sees them now (suspect, dead or unknown members do not count). It
// returns ErrWouldLoseQuorum then (which matches ErrConflict too): bring
// the missing voters back, or remove the dead ones first.
//
// Errors: ErrUnknownPeer, ErrConflict (it is the last voter),
// ErrWouldLoseQuorum, ErrNoLeader, ErrMasterless, ctx's error.
func (c *Cluster) RemovePeer(ctx context.Context, identifier string) error {
	return c.mode.removePeer(ctx, identifier)
}

// removePeer: a masterless cluster has no log to remove members from.
func (masterlessMode) removePeer(context.Context, string) error {
	return fmt.Errorf("%w: a masterless member leaves by gossip (Leave on the member itself)", ErrMasterless)
}

// removePeer removes a member through the log (see RemovePeer).
func (l leaderMode) removePeer(ctx context.Context, identifier string) error {
	c := l.c
	id := NodeID(identifier)
	handedOver := false // this peer led and resigned to remove itself
	for {
		if !c.IsLeader() {
			if handedOver {
				// Right after the hand-over this peer may not know the
				// new leader yet: wait for it instead of answering
				// "no leader".
				if _, err := c.WaitForLeader(ctx); err != nil {
					return err
				}
			}
			err := c.toLeader(ctx, http.MethodDelete, "/v1/peers/"+url.PathEscape(identifier), nil, nil)
			if errors.Is(err, ErrNotLeader) || (handedOver && errors.Is(err, ErrNoLeader)) {
				continue
			}
			return err
		}
		if id == c.selfID && identifier == c.cfg.Identifier {
			handedOver = true
			if err := c.Resign(ctx); err != nil {
				if errors.Is(err, ErrUnknownPeer) {
					return fmt.Errorf("%w: %q is the only voter; a cluster cannot remove its last voter", ErrConflict, identifier)
				}
				return fmt.Errorf("hand over leadership before leaving: %w", err)
			}
			continue // the new leader removes it
		}
		changed := c.registryChanged()
		alive := c.aliveMembers()
		var gone bool
		err := c.doLeader(ctx, func(core *consensus.Core) error {
			cs := core.ConfState()
			p, inReg := c.reg.Load().Get(id)
			isVoter := slices.Contains(cs.Voters, id)
			if (inReg && p.Identifier != identifier) || (!inReg && !isVoter && !slices.Contains(cs.Learners, id)) {
				gone = true
				return fmt.Errorf("%w: %q is not a member", ErrUnknownPeer, identifier)
			}
			if isVoter && len(cs.Voters) == 1 {
				return fmt.Errorf("%w: %q is the only voter; a cluster cannot remove its last voter", ErrConflict, identifier)
			}
			if isVoter {
				if err := c.quorumAfterRemoval(cs.Voters, id, alive); err != nil {
					return fmt.Errorf("%w: cannot remove %q: %w", ErrWouldLoseQuorum, identifier, err)
				}
			}
			return core.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id})
		})
		if err != nil {
			if gone && errors.Is(err, ErrUnknownPeer) {
				return err
			}
			if errors.Is(err, ErrNotLeader) {
				continue
			}
			return err
		}
		if done, err := c.waitRegistry(ctx, changed, func(r *registry.State) bool {
			_, ok := r.Get(id)
			return !ok && !c.inConf(id)
		}); done || err != nil {
			return err
		}
	}
}

// aliveMembers returns the node IDs of the members gossip reports alive
// now, this peer included.
func (c *Cluster) aliveMembers() map[uint64]bool {
	alive := map[uint64]bool{c.selfID: true}
	reg := c.reg.Load()
	for _, gm := range c.gossipMembers() {
		if gm.State != membership.StateAlive {
			continue
		}
		id := NodeID(gm.Name)
		if p, ok := reg.Get(id); ok && p.Identifier != gm.Name {
			continue // another member's hash: not this one
		}
		alive[id] = true
	}
	return alive
}

// quorumAfterRemoval checks that the voters left once id is removed from
// voters could still elect a leader: a majority of them is alive.
func (c *Cluster) quorumAfterRemoval(voters []uint64, id uint64, alive map[uint64]bool) error {
	var rest, live []string
	for _, v := range voters {
		if v == id {
			continue
		}
		rest = append(rest, c.peer(v).Identifier)
		if alive[v] {
			live = append(live, c.peer(v).Identifier)
		}
	}
	need := len(rest)/2 + 1
	if len(live) >= need {
		return nil
	}
	slices.Sort(rest)
	slices.Sort(live)
	return fmt.Errorf("it would leave %d voters (%s), of which only %d %s alive as gossip sees them now (%s); they need %d to elect a leader: bring the others back, or remove the dead ones first",
		len(rest), strings.Join(rest, ", "), len(live), map[bool]string{true: "is", false: "are"}[len(live) == 1], strings.Join(live, ", "), need)
}

// inConf reports whether id is a voter or learner in the published view.
func (c *Cluster) inConf(id uint64) bool {
	v := c.snap.Load().view
	_, a := slices.BinarySearch(v.Voters, id)
	_, b := slices.BinarySearch(v.Learners, id)
	return a || b
}

// Leave leaves the cluster for good and closes the Cluster. In leader
// mode it first hands leadership over (when this peer leads), then has the
// leader remove it from the voters (or learners), and only then leaves
// gossip, so the others see it as "left" rather than failed and no
// election timeout is lost. In masterless mode it leaves gossip, and the
// others move its keys at once. The Cluster is closed when Leave returns,
// even on error. The last voter of a cluster cannot leave it (ErrConflict);
// Close it instead.
func (c *Cluster) Leave(ctx context.Context) error {
	err := c.leaveCluster(ctx)
	if cerr := c.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// leaveCluster does Leave's work but the closing.
func (c *Cluster) leaveCluster(ctx context.Context) error {
	c.mu.Lock()
	started, closed, g := c.started, c.closed, c.gossip()
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !started {
		return ErrNotStarted
	}
	if err := c.mode.leave(ctx); err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, gossipTimeout)
	defer cancel()
	if err := g.Leave(gctx); err != nil && !errors.Is(err, membership.ErrClosed) {
		return fmt.Errorf("qcluster: leave gossip: %w", err)
	}
	c.log.Info("left the cluster")
	return nil
}

// SetMetadata replaces this peer's metadata, at run time, and waits until
// every peer can see it: in leader mode, until the change is committed
// through the leader (then every peer reports it identically, and Leader
// returns it when this peer leads); in masterless mode, until gossip
// has sent it. The metadata must encode as JSON in at most MaxMetadataSize
// bytes (ErrInvalidMetadata otherwise). When no leader is known, the
// change is kept and committed once one is (the call returns ErrNoLeader,
// or ctx's error if ctx ends first). A restarted peer takes its metadata
// from its config again.
func (c *Cluster) SetMetadata(ctx context.Context, md map[string]any) error {
	md, err := normalizeMetadata(md)
	if err != nil {
		return err
	}
	c.mu.Lock()
	started, g := c.started, c.gossip()
	c.mu.Unlock()
	if !started {
		return ErrNotStarted
	}
	c.selfMeta.Store(&md)
	c.events.touch() // Peers shows it (masterless) before gossip confirms it
	raw, _ := encodeMetadata(md)
	gctx, cancel := context.WithTimeout(ctx, gossipTimeout)
	gerr := g.SetMeta(gctx, raw)
	cancel()
	return c.mode.commitMetadata(ctx, md, gerr)
}

// leave: a masterless member has only gossip to leave.
func (masterlessMode) leave(context.Context) error { return nil }

// leave removes this peer from the voters or learners first.
func (l leaderMode) leave(ctx context.Context) error {
	if l.c.inConf(l.c.selfID) {
		if err := l.c.RemovePeer(ctx, l.c.cfg.Identifier); err != nil {
			return fmt.Errorf("qcluster: leave the voters: %w", err)
		}
	}
	return nil
}

// commitMetadata: in masterless mode, gossip sending md (gerr) is all.
func (masterlessMode) commitMetadata(_ context.Context, _ map[string]any, gerr error) error {
	if gerr != nil && !errors.Is(gerr, membership.ErrNotConfirmed) {
		return gerr
	}
	return nil
}

// commitMetadata commits md to the log, through the leader, and waits
// until the registry holds it.
func (l leaderMode) commitMetadata(ctx context.Context, md map[string]any, _ error) error {
	c := l.c
	for {
		if _, ok := c.Leader(); !ok {
			return fmt.Errorf("%w: the metadata is kept and committed once a leader is elected", ErrNoLeader)
		}
		changed := c.registryChanged()
		if err := c.proposeMetadata(ctx, md); err != nil {
			return err
		}
		done, err := c.waitRegistry(ctx, changed, func(r *registry.State) bool {
			p, ok := r.Get(c.selfID)
			return !ok || reflect.DeepEqual(p.Metadata, md) // not a member: nothing to commit
		})
		if done || err != nil {
			return err
		}
	}
}

// proposeMetadata proposes this peer's metadata to the log (raft forwards
// a follower's proposal to the leader).
func (c *Cluster) proposeMetadata(ctx context.Context, md map[string]any) error {
	data, err := registry.EncodeOp(registry.Op{Op: registry.OpMetadata, Identifier: c.cfg.Identifier, Metadata: md})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	node := c.node()
	if node == nil {
		return ErrNotStarted
	}
	err = node.Do(ctx, func(core *consensus.Core) error { return core.Propose(data) })
	switch {
	case errors.Is(err, consensus.ErrStopped):
		return ErrClosed
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("%w: %w", ErrNoLeader, err) // raft dropped it: no leader to forward to
	}
	return err
}

// ownMetadataSettled reports whether every peer reports this peer's current
// metadata: a committed log entry has carried it since this peer started
// (SetMetadata, reconcileMetadata, or the change that added this peer),
// and the registry still holds it. The founding snapshot does not count:
// each founder writes it from its own config, where the others' entries
// for this peer are only a guess. A peer that is not a member has nothing
// to settle.
func (c *Cluster) ownMetadataSettled() bool {
	p, ok := c.reg.Load().Get(c.selfID)
	if !ok || p.Identifier != c.cfg.Identifier {
		return true
	}
	md := c.selfMetadata()
	logged := c.ownMetaLogged.Load()
	return logged != nil && reflect.DeepEqual(*logged, md) && reflect.DeepEqual(p.Metadata, md)
}

// reconcileMetadata commits this peer's metadata, through the leader, until
// the log has carried it (see ownMetadataSettled): at start (the peers'
// configs may disagree about it), after it changed while no leader was
// known, or after the config changed across a restart. This peer's own
// config is the truth for it. It waits, up to retryEvery, for the entry to
// be applied before it may propose again.
func (c *Cluster) reconcileMetadata(ctx context.Context) {
	if c.ownMetadataSettled() {
		return
	}
	if _, ok := c.Leader(); !ok {
		return
	}
	changed := c.registryChanged()
	if err := c.proposeMetadata(ctx, c.selfMetadata()); err != nil {
		if ctx.Err() == nil {
			c.log.Debug("registry: cannot commit this peer's metadata yet", "err", err)
		}
		return
	}
	_, _ = c.waitRegistry(ctx, changed, func(*registry.State) bool { return c.ownMetadataSettled() })
}

// reapDead removes, on the leader, one member that gossip has reported
// dead or left for longer than Config.DeadMemberTimeout, never going below
// Config.MinVoters voters.
func (c *Cluster) reapDead(ctx context.Context) {
	cutoff := time.Now().Add(-time.Duration(c.cfg.DeadMemberTimeout))
	v := c.snap.Load().view
	reg := c.reg.Load()
	for _, gm := range c.gossipMembers() {
		if gm.State.Live() || gm.Since.After(cutoff) || gm.Name == c.cfg.Identifier {
			continue
		}
		id := NodeID(gm.Name)
		if p, ok := reg.Get(id); ok && p.Identifier != gm.Name {
			continue
		}
		_, voter := slices.BinarySearch(v.Voters, id)
		_, learner := slices.BinarySearch(v.Learners, id)
		if !voter && !learner {
			continue
		}
		if voter && len(v.Voters)-1 < c.cfg.MinVoters {
			continue
		}
		c.log.Warn("removing a member that has been dead longer than dead_member_timeout",
			"member", gm.Name, "state", gm.State.String(), "since", gm.Since, "dead_member_timeout", c.cfg.DeadMemberTimeout.String())
		err := c.doLeader(ctx, func(core *consensus.Core) error {
			return core.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id})
		})
		if err != nil {
			c.log.Debug("registry: cannot remove a dead member yet", "member", gm.Name, "err", err)
		}
		return // one change at a time
	}
}

// toLeader sends an API request to the current leader.
func (c *Cluster) toLeader(ctx context.Context, method, path string, body, out any) error {
	l, ok := c.Leader()
	if !ok {
		return ErrNoLeader
	}
	if l.Identifier == c.cfg.Identifier {
		return ErrNotLeader // our lease lapsed between the checks
	}
	return c.call(ctx, l.Addr(), method, path, body, out)
}

// call sends one API request to the peer at addr, with this peer's API
// token, and decodes the JSON answer into out (when not nil). API errors
// come back as the SDK's errors.
func (c *Cluster) call(ctx context.Context, addr, method, path string, body, out any) error {
	return c.peerClient().Call(ctx, addr, method, path, body, out)
}

// fromAPIError turns another peer's API error into the SDK's error: its
// code's API error (api.ErrorOf), paired with the SDK's in sdkAPIErrors.
func fromAPIError(e api.Error) error {
	if base := api.ErrorOf(e.Code); base != nil {
		for _, m := range sdkAPIErrors {
			if m.api == base {
				return fmt.Errorf("%w: %s", m.sdk, e.Error)
			}
		}
	}
	return fmt.Errorf("qcluster: %s (%s)", e.Error, e.Code)
}

// peerClient is the client for requests to other peers (internal/peercall).
func (c *Cluster) peerClient() *peercall.Client {
	c.clientOnce.Do(func() {
		var tlsCfg *tls.Config
		if c.sec != nil {
			tlsCfg = c.sec.clientTLS
		}
		c.client = peercall.New(c.cfg.APIToken, tlsCfg, fromAPIError)
	})
	return c.client
}
