package join

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Join adds the member req describes to the log, on the leader or, on a
// follower, through it (POST /v1/join), and waits until the change is
// applied. A request that names another cluster, or an invalid identifier,
// host, port or metadata, is refused before anything is sent or proposed.
func (p *Protocol) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	rec, err := p.checkJoin(req)
	if err != nil {
		return api.JoinResult{}, err
	}
	voter := req.Voter == nil || *req.Voter
	var hold leaderHold
	for {
		if !p.d.IsLeader() {
			var res api.JoinResult
			err := p.toLeader(ctx, http.MethodPost, "/v1/join", req, &res)
			if errors.Is(err, sdkerr.ErrNotLeader) {
				continue // the leader changed on the way; ask the new one
			}
			if errors.Is(err, sdkerr.ErrNoLeader) && p.waitOutNoLeader(ctx, &hold) {
				continue
			}
			return res, err
		}
		already, err := p.addMember(ctx, rec, voter)
		if errors.Is(err, sdkerr.ErrNotLeader) {
			continue
		}
		if err != nil {
			return api.JoinResult{}, err
		}
		res := api.JoinResult{AlreadyMember: already, Peers: p.d.Members()}
		if l, ok := p.d.Leader(); ok {
			res.Leader = &l
		}
		for _, m := range res.Peers {
			if m.Identifier == rec.Identifier {
				res.Member = m
			}
		}
		return res, nil
	}
}

// checkJoin checks a join request from the network and returns the
// registry record it asks for.
func (p *Protocol) checkJoin(req api.JoinRequest) (registry.Member, error) {
	if req.ClusterName != p.d.ClusterName {
		return registry.Member{}, fmt.Errorf("%w: the peer %q belongs to cluster %q, this is %q", sdkerr.ErrWrongCluster, req.Identifier, req.ClusterName, p.d.ClusterName)
	}
	if msg := config.NameProblem(req.Identifier, false); req.Identifier == "" || msg != "" {
		if req.Identifier == "" {
			msg = "is missing"
		}
		return registry.Member{}, fmt.Errorf("%w: identifier %q %s", sdkerr.ErrInvalidMember, req.Identifier, msg)
	}
	if msg := config.HostProblem(req.Host, "port"); req.Host == "" || msg != "" {
		if req.Host == "" {
			msg = "is missing"
		}
		return registry.Member{}, fmt.Errorf("%w: host %q %s", sdkerr.ErrInvalidMember, req.Host, msg)
	}
	if req.Port < 1 || req.Port > 65535 {
		return registry.Member{}, fmt.Errorf("%w: port %d is out of range (1-65535)", sdkerr.ErrInvalidMember, req.Port)
	}
	md, err := p.d.Normalize(req.Metadata)
	if err != nil {
		return registry.Member{}, fmt.Errorf("%w: %w", sdkerr.ErrInvalidMember, err)
	}
	return registry.Member{Identifier: req.Identifier, Host: req.Host, Port: req.Port, Metadata: md}, nil
}

// addMember proposes, on the leader, the configuration change that adds rec
// and waits until it is applied. It reports whether rec was a member
// already.
func (p *Protocol) addMember(ctx context.Context, rec registry.Member, voter bool) (bool, error) {
	id := config.NodeID(rec.Identifier)
	ctxData, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("%w: %w", sdkerr.ErrInvalidMember, err)
	}
	typ := raftpb.ConfChangeAddNode
	if !voter {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	for {
		changed := p.d.RegistryChanged()
		var already bool
		err := p.doLeader(ctx, func(core *consensus.Core) error {
			var err error
			already, err = addable(p.d.Registry(), core.ConfState(), rec, id)
			if err != nil || already {
				return err
			}
			return core.ProposeConfChange(raftpb.ConfChange{Type: typ, NodeID: id, Context: ctxData})
		})
		if err != nil || already {
			return already, err
		}
		// Raft drops a change while another is pending, or before the
		// leader has committed an entry of its term: propose again after
		// a while unless it was applied.
		if done, err := p.waitRegistry(ctx, changed, func(r *registry.State) bool {
			m, ok := r.Get(id)
			return ok && m.Host == rec.Host && m.Port == rec.Port && p.InConf(id)
		}); done || err != nil {
			return false, err
		}
	}
}

// addable checks, against the registry and the configuration, that rec
// (node ID id) may be added: its node ID and address are not another
// member's, nor is it a member at another address. It reports whether rec
// is a member already.
func addable(reg *registry.State, cs raftpb.ConfState, rec registry.Member, id uint64) (bool, error) {
	inConf := slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id)
	if m, ok := reg.Get(id); ok {
		if m.Identifier != rec.Identifier {
			return false, fmt.Errorf("%w: identifier %q has the same node ID (hash) as member %q; choose another identifier", sdkerr.ErrConflict, rec.Identifier, m.Identifier)
		}
		if m.Host != rec.Host || m.Port != rec.Port {
			return false, fmt.Errorf("%w: %q is already a member at %s; remove it first (DELETE /v1/peers/%s) to move it to %s",
				sdkerr.ErrConflict, rec.Identifier, m.Addr(), url.PathEscape(rec.Identifier), rec.Addr())
		}
		if inConf {
			return true, nil
		}
	}
	for _, m := range reg.All() {
		if m.Identifier != rec.Identifier && m.Host == rec.Host && m.Port == rec.Port {
			return false, fmt.Errorf("%w: %s is the address of member %q", sdkerr.ErrConflict, rec.Addr(), m.Identifier)
		}
	}
	return false, nil
}

// RemovePeer removes the member named identifier through the log, on the
// leader or, on a follower, through it (DELETE /v1/peers/{identifier}),
// and waits until the change is applied. Removing the leader makes it
// hand leadership over first. A voter is not removed when fewer than a
// majority of the voters left are alive as gossip sees them now
// (sdkerr.ErrWouldLoseQuorum), nor when it is the last voter (sdkerr.ErrConflict).
func (p *Protocol) RemovePeer(ctx context.Context, identifier string) error {
	id := config.NodeID(identifier)
	var hold leaderHold
	for {
		if !p.d.IsLeader() {
			// Right after this peer handed leadership over to remove
			// itself, it may not know the new leader yet, and the new
			// leader may not have its lease yet: both are a time without
			// a leader, waited out as any other.
			err := p.toLeader(ctx, http.MethodDelete, "/v1/peers/"+url.PathEscape(identifier), nil, nil)
			if errors.Is(err, sdkerr.ErrNotLeader) {
				continue
			}
			if errors.Is(err, sdkerr.ErrNoLeader) && p.waitOutNoLeader(ctx, &hold) {
				continue
			}
			return err
		}
		if id == p.d.ID && identifier == p.d.Identifier {
			if err := p.d.Resign(ctx); err != nil {
				if errors.Is(err, sdkerr.ErrUnknownPeer) {
					return fmt.Errorf("%w: %q is the only voter; a cluster cannot remove its last voter", sdkerr.ErrConflict, identifier)
				}
				return fmt.Errorf("hand over leadership before leaving: %w", err)
			}
			continue // the new leader removes it
		}
		changed := p.d.RegistryChanged()
		alive := p.aliveMembers()
		var gone bool
		err := p.doLeader(ctx, func(core *consensus.Core) error {
			cs := core.ConfState()
			m, inReg := p.d.Registry().Get(id)
			isVoter := slices.Contains(cs.Voters, id)
			if (inReg && m.Identifier != identifier) || (!inReg && !isVoter && !slices.Contains(cs.Learners, id)) {
				gone = true
				return fmt.Errorf("%w: %q is not a member", sdkerr.ErrUnknownPeer, identifier)
			}
			if isVoter && len(cs.Voters) == 1 {
				return fmt.Errorf("%w: %q is the only voter; a cluster cannot remove its last voter", sdkerr.ErrConflict, identifier)
			}
			if isVoter {
				if err := p.quorumAfterRemoval(cs.Voters, id, alive); err != nil {
					return fmt.Errorf("%w: cannot remove %q: %w", sdkerr.ErrWouldLoseQuorum, identifier, err)
				}
			}
			return core.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id})
		})
		if err != nil {
			if gone && errors.Is(err, sdkerr.ErrUnknownPeer) {
				return err
			}
			if errors.Is(err, sdkerr.ErrNotLeader) {
				continue
			}
			return err
		}
		if done, err := p.waitRegistry(ctx, changed, func(r *registry.State) bool {
			_, ok := r.Get(id)
			return !ok && !p.InConf(id)
		}); done || err != nil {
			return err
		}
	}
}

// Leave removes this peer from the voters or learners, if it is one (see
// RemovePeer).
func (p *Protocol) Leave(ctx context.Context) error {
	if p.InConf(p.d.ID) {
		if err := p.RemovePeer(ctx, p.d.Identifier); err != nil {
			return fmt.Errorf("qcluster: leave the voters: %w", err)
		}
	}
	return nil
}

// aliveMembers returns the node IDs of the members gossip reports alive
// now, this peer included.
func (p *Protocol) aliveMembers() map[uint64]bool {
	alive := map[uint64]bool{p.d.ID: true}
	reg := p.d.Registry()
	for _, gm := range p.d.Gossip() {
		if gm.State != membership.StateAlive {
			continue
		}
		id := config.NodeID(gm.Name)
		if m, ok := reg.Get(id); ok && m.Identifier != gm.Name {
			continue // another member's hash: not this one
		}
		alive[id] = true
	}
	return alive
}

// quorumAfterRemoval checks that the voters left once id is removed from
// voters could still elect a leader: a majority of them is alive.
func (p *Protocol) quorumAfterRemoval(voters []uint64, id uint64, alive map[uint64]bool) error {
	var rest, live []string
	for _, v := range voters {
		if v == id {
			continue
		}
		rest = append(rest, p.d.Name(v))
		if alive[v] {
			live = append(live, p.d.Name(v))
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
