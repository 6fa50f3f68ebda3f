package join

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// ExistingCluster asks the configured peers, in parallel, whether they
// already run a cluster, and reports whether one does that does not list
// this peer: then this peer must join it instead of founding one. Peers
// that do not answer, still start, or list this peer, say nothing against
// founding. blind reports that none answered at all.
func (p *Protocol) ExistingCluster(ctx context.Context) (joining, blind bool) {
	id, errs := p.probe(ctx, p.d.Seeds, false)
	if id != "" {
		p.d.Log.Info("a cluster is running that does not list this peer: joining it", "asked", id)
		return true, false
	}
	if len(errs) == len(p.d.Seeds) {
		p.d.Log.Warn("no configured peer answered; founding a new cluster with the configured peers. If this peer should join a running cluster, check that its peers are up and share its cluster_name, TLS settings and api_token",
			"err", errors.Join(errs...))
		return false, true
	}
	return false, false
}

// probe asks peers, in parallel, for their status and returns the
// identifier of one that runs a cluster that does not list this peer (or
// ""; with withLeader, one that also follows a leader), and the errors of
// the peers that did not answer.
func (p *Protocol) probe(ctx context.Context, remote []config.PeerConfig, withLeader bool) (string, []error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	found := make(chan string, len(remote))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, peer := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := p.status(ctx, peer.Addr())
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s (%s): %w", peer.Identifier, peer.Addr(), err))
				mu.Unlock()
				return
			}
			if st.Mode == config.ModeMasterless || len(st.Voters) == 0 || (withLeader && st.Leader == nil) {
				return // not running a cluster (yet)
			}
			if slices.Contains(st.Voters, p.d.Identifier) || slices.Contains(st.Learners, p.d.Identifier) {
				return
			}
			found <- peer.Identifier
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
// (Deps.DiscardFounding) and joins; otherwise it reports the conflict
// through JoinErr and the log. It returns true when done checking. attempt
// counts the earlier checks, for the log (ExistingCluster has warned
// already).
func (p *Protocol) checkBlindFounding(ctx context.Context, attempt int) bool {
	if _, ok := p.d.Leader(); ok {
		return true
	}
	id, errs := p.probe(ctx, p.d.Seeds, false)
	if id == "" {
		if len(errs) > 0 && ctx.Err() == nil {
			p.d.Log.Info("no leader yet, and some configured peers do not answer; asking them again (if this peer should join a running cluster, its peers must be up)",
				"attempt", attempt+1, "err", errors.Join(errs...))
		}
		return false
	}
	switch err := p.d.DiscardFounding(); {
	case err == nil:
		p.d.Log.Warn("this peer founded a cluster while none of its peers answered, but "+id+" runs a cluster that does not list it; it never led nor voted there, so it discards that state and joins", "asked", id)
		p.joinLoop(ctx, p.d.Seeds, nil)
		return true
	case ctx.Err() != nil:
		return true
	default:
		err = fmt.Errorf("%w: this peer founded a cluster with its configured peers because none of them answered when it first started, but %s runs a cluster that does not list it, and this peer's state has moved on (%w): stop this peer, delete its data_dir (%s) and start it again while %s is up, to join that cluster",
			sdkerr.ErrConflict, id, err, p.d.DataDir, id)
		p.joinErr.Store(&err)
		p.d.Log.Error("this peer cannot take part in the running cluster", "err", err)
		return true
	}
}
