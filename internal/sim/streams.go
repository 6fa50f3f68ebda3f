package sim

import (
	"fmt"
	"slices"
	"time"
)

// The transport's proof that a peer's process is gone (consensus
// Node.PeerGone), modelled: every peer holds an inbound raft stream from
// every other. When a process dies with its host up, the kernel closes its
// sockets: each stream from it ends with a clean end-of-file (after the
// messages already in flight on it: TCP delivers in order), and the
// receiver's transport, seeing no goodbye frame, connects to the dead
// peer's port: refused, if no process of that peer listens there when
// the connection arrives. Only both together are proof (the receiver's
// loop gets a ReportGoneAt, stamped with its clock when the refusal came).
// What is no proof: a reset stream (RST), a stream that ends after a
// goodbye frame, an end-of-file that a cut link (a firewall) drops, an
// end-of-file followed by an accepted connection (the peer restarted
// meanwhile, or it lives and closed the stream), a paused peer (it sends
// nothing, its sockets stay open), a host that is down (no kernel to
// close anything: CrashHost).

// endKind is how a raft stream ends, as its receiver sees it.
type endKind uint8

const (
	endEOF     endKind = iota // clean end-of-file, no goodbye frame
	endGoodbye                // a goodbye frame, then end-of-file
	endRST                    // connection reset
)

func (k endKind) String() string {
	switch k {
	case endEOF:
		return "end-of-file"
	case endGoodbye:
		return "goodbye"
	}
	return "reset"
}

// endStreams ends every live peer's inbound stream from `from`, each after
// a network delay (and extra), after the messages in flight on it.
func (c *Cluster) endStreams(from *peer, kind endKind, extra time.Duration) {
	for _, to := range c.peers {
		if to == from || to.crashed {
			continue
		}
		at := max(c.now+c.streamDelay(), c.lastSent[from.idx][to.idx]+1) + extra
		if c.opts.endDelay != nil {
			at += c.opts.endDelay(from.id, to.id)
		}
		inc := to.inc
		c.schedule(event{at: at, kind: evFunc, fn: func() { c.streamEnded(from, to, inc, kind) }})
	}
}

// streamDelay is a network delay drawn from the streams' own random
// source (so that modelling them does not shift the network's choices).
func (c *Cluster) streamDelay() time.Duration {
	n := &c.net
	return n.MinDelay + time.Duration(c.srng.Int64N(int64(n.MaxDelay-n.MinDelay)+1))
}

// streamEnded: to's transport sees its stream from `from` end.
func (c *Cluster) streamEnded(from, to *peer, inc uint64, kind endKind) {
	switch {
	case to.crashed || to.inc != inc:
		return // the stream died with its receiver
	case c.cut[from.idx][to.idx]:
		c.countFault("stream-end-lost") // dropped by the cut (a firewall)
		return
	case to.paused:
		// Its transport reads the end when the process runs again.
		c.after(c.tm.tick, func() { c.streamEnded(from, to, inc, kind) })
		return
	}
	if kind != endEOF {
		c.countFault("stream-" + kind.String() + "-seen")
		c.event(to.idx, fmt.Sprintf("stream from p%d ends with a %v: no proof", from.id, kind))
		return
	}
	// No goodbye: connect to its port (a round trip) to see whether a
	// process listens there.
	rtt := 2 * c.streamDelay()
	c.after(rtt, func() {
		if to.crashed || to.inc != inc {
			return
		}
		if !c.probeRefused(to, from) {
			c.countFault("probe-accepted")
			c.event(to.idx, fmt.Sprintf("stream from p%d ended; its port accepted a connection: no proof", from.id))
			return
		}
		c.countFault("probe-refused")
		to.gone = append(to.gone, goneReport{id: from.id, at: to.clock(c.now), roundTrip: rtt})
		c.event(to.idx, fmt.Sprintf("stream from p%d ended, its port refused a connection: proof that it is gone", from.id))
		to.kick()
		c.afterEvent()
	})
}

// probeRefused is the outcome of to's connection to target's port: refused
// when target's process is down and its host answers (a reset from its
// kernel), or when a firewall rejects it with a reset (Reject).
func (c *Cluster) probeRefused(to, target *peer) bool {
	if c.rejecting[target.idx] {
		return true
	}
	return target.crashed && !c.cut[to.idx][target.idx] && !c.cut[target.idx][to.idx]
}

// CrashHost crashes peer id's host: as Crash, but no kernel closes its
// sockets, so nobody gets proof that it is gone (and no fail-over starts
// before the election timeout).
func (c *Cluster) CrashHost(id uint64) {
	if p := c.peer(id); !p.crashed {
		c.hostDown = true
		p.crash("crash-host")
		c.hostDown = false
		c.afterEvent()
	}
}

// ResetStreams makes peer id (alive) reset its outbound raft streams:
// no proof.
func (c *Cluster) ResetStreams(id uint64) {
	if p := c.peer(id); !p.crashed {
		c.event(p.idx, "resets its streams")
		c.endStreams(p, endRST, 0)
	}
}

// CloseStreams makes peer id (alive) close its outbound raft streams
// cleanly, with a goodbye frame first or not: without one its receivers
// connect to its port, which accepts. No proof either way. Without a
// goodbye it is outside the transport's contract (a live peer says
// goodbye or resets): scenarios only, never the random schedules.
func (c *Cluster) CloseStreams(id uint64, goodbye bool) {
	if p := c.peer(id); !p.crashed {
		kind := endEOF
		if goodbye {
			kind = endGoodbye
		}
		c.event(p.idx, fmt.Sprintf("closes its streams (%v)", kind))
		c.endStreams(p, kind, 0)
	}
}

// Reject isolates peer id behind a firewall that rejects its traffic with
// TCP resets: as Isolate, and a connection to its port is refused while
// it runs. Heal removes it.
func (c *Cluster) Reject(id uint64) {
	p := c.peer(id)
	c.Isolate(id)
	c.rejecting[p.idx] = true
	c.event(p.idx, "firewall: reject with tcp reset")
	if !p.crashed {
		c.endStreams(p, endRST, 0)
	}
}

// failoverWatch times a fail-over: from the process crash of a peer that
// held the lease until every live member names a new leader holding it.
type failoverWatch struct {
	pending bool
	old     uint64
	at      time.Duration
}

// calm reports whether nothing but p is at fault: no link cut, every
// other peer up, running and not blocked in an fsync. A fail-over is
// timed only from a calm crash (the network may still lose, duplicate
// and delay messages).
func (c *Cluster) calm(p *peer) bool {
	for i := range c.cut {
		if slices.Contains(c.cut[i], true) {
			return false
		}
	}
	for _, q := range c.peers {
		if q != p && (q.crashed || q.paused || q.busyUntil > c.now) {
			return false
		}
	}
	return true
}

// watchFailover checks, after every event, whether the fail-over being
// timed has ended.
func (c *Cluster) watchFailover() {
	if !c.fo.pending {
		return
	}
	if l, ok := c.Agreed(); ok && l != c.fo.old {
		c.fo.pending = false
		c.stats.Failovers = append(c.stats.Failovers, c.now-c.fo.at)
		c.event(-1, fmt.Sprintf("fail-over: p%d leads, agreed by all, %v after p%d crashed", l, c.now-c.fo.at, c.fo.old))
	}
}
