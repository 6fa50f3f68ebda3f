package join

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// CommitMetadata commits md, this peer's metadata, to the log, through the
// leader, and waits until the registry holds it. With no leader known it
// returns sdkerr.ErrNoLeader at once (Run commits it once one is).
func (p *Protocol) CommitMetadata(ctx context.Context, md map[string]any) error {
	for {
		if _, ok := p.d.Leader(); !ok {
			p.kickLoop() // the registry loop commits it: it polls while no leader is known
			return fmt.Errorf("%w: the metadata is kept and committed once a leader is elected", sdkerr.ErrNoLeader)
		}
		changed := p.d.RegistryChanged()
		if err := p.proposeMetadata(ctx, md); err != nil {
			return err
		}
		done, err := p.waitRegistry(ctx, changed, func(r *registry.State) bool {
			m, ok := r.Get(p.d.ID)
			return !ok || reflect.DeepEqual(m.Metadata, md) // not a member: nothing to commit
		})
		if done || err != nil {
			return err
		}
	}
}

// proposeMetadata proposes this peer's metadata to the log (raft forwards
// a follower's proposal to the leader).
func (p *Protocol) proposeMetadata(ctx context.Context, md map[string]any) error {
	data, err := registry.EncodeOp(registry.Op{Op: registry.OpMetadata, Identifier: p.d.Identifier, Metadata: md})
	if err != nil {
		return fmt.Errorf("%w: %w", sdkerr.ErrInvalidMetadata, err)
	}
	node := p.d.Node()
	if node == nil {
		return sdkerr.ErrNotStarted
	}
	err = node.Do(ctx, func(core *consensus.Core) error { return core.Propose(data) })
	switch {
	case errors.Is(err, consensus.ErrStopped):
		return sdkerr.ErrClosed
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("%w: %w", sdkerr.ErrNoLeader, err) // raft dropped it: no leader to forward to
	}
	return err
}

// MetadataSettled reports whether every peer reports this peer's current
// metadata: a committed log entry has carried it since this peer started
// (CommitMetadata, Run, or the change that added this peer), and the
// registry still holds it. The founding snapshot does not count: each
// founder writes it from its own config, where the others' entries for
// this peer are only a guess. A peer that is not a member has nothing to
// settle.
func (p *Protocol) MetadataSettled() bool {
	m, ok := p.d.Registry().Get(p.d.ID)
	if !ok || m.Identifier != p.d.Identifier {
		return true
	}
	md := p.d.Metadata()
	logged := p.d.MetadataLogged()
	return logged != nil && reflect.DeepEqual(*logged, md) && reflect.DeepEqual(m.Metadata, md)
}

// reconcileMetadata commits this peer's metadata, through the leader, until
// the log has carried it (see MetadataSettled): at start (the peers'
// configs may disagree about it), after it changed while no leader was
// known, or after the config changed across a restart. This peer's own
// config is the truth for it. It waits, up to RetryEvery, for the entry to
// be applied before it may propose again.
func (p *Protocol) reconcileMetadata(ctx context.Context) {
	if p.MetadataSettled() {
		return
	}
	if _, ok := p.d.Leader(); !ok {
		return
	}
	changed := p.d.RegistryChanged()
	if err := p.proposeMetadata(ctx, p.d.Metadata()); err != nil {
		if ctx.Err() == nil {
			p.d.Log.Debug("registry: cannot commit this peer's metadata yet", "err", err)
		}
		return
	}
	_, _ = p.waitRegistry(ctx, changed, func(*registry.State) bool { return p.MetadataSettled() })
}
