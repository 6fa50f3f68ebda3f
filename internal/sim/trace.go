package sim

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

type trKind uint8

const (
	trNote trKind = iota // a fault, an action, a check
	trTick               // a loop iteration on the timer (n: ticks applied)
	trRecv               // a loop iteration that stepped received messages
	trCall               // a loop iteration that ran a call (propose, transfer)
)

// traceEntry is one line of the trace: what happened, and the acting peer's
// state after it.
type traceEntry struct {
	at    time.Duration
	peer  int32 // -1: the cluster (network, checks)
	kind  trKind
	mtype raftpb.MessageType
	from  uint64
	mterm uint64
	n     int32
	note  string

	hasState bool
	alive    bool
	role     consensus.Role
	term     uint64
	lead     uint64
	lease    time.Duration // published lease left on the peer's clock (0: none)
}

func (e *traceEntry) fill(p *peer) {
	e.hasState = true
	e.alive = !p.crashed
	if p.crashed {
		return
	}
	v := p.core.View()
	e.role, e.term, e.lead = v.Role, v.Term, v.Lead
	if now := p.clock(p.c.now); p.pub.IsLeaderAt(now) {
		e.lease = p.pub.LeaseUntil - now
	}
}

func (e *traceEntry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%12s ", fmtVT(e.at))
	if e.peer >= 0 {
		fmt.Fprintf(&b, "p%-2d ", e.peer+1)
	} else {
		b.WriteString("--  ")
	}
	var what string
	switch e.kind {
	case trTick:
		what = "tick"
		if e.n != 1 {
			what = fmt.Sprintf("timer: %d ticks", e.n)
		}
	case trRecv:
		what = fmt.Sprintf("recv %v from %d (t%d)", e.mtype, e.from, e.mterm)
		if e.n > 1 {
			what += fmt.Sprintf(" +%d more", e.n-1)
		}
	case trCall:
		what = "call: "
	}
	what += e.note
	b.WriteString(what)
	if e.hasState {
		if pad := 52 - len(what); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
		if !e.alive {
			b.WriteString(" | down")
		} else {
			fmt.Fprintf(&b, " | %v t%d lead %d", e.role, e.term, e.lead)
			if e.lease > 0 {
				fmt.Fprintf(&b, " LEASE %v left", e.lease.Round(time.Microsecond))
			}
		}
	}
	return b.String()
}

// tracer keeps the last events in a ring, mirrors them to a writer, and
// hashes every event into a digest that tells two runs apart.
type tracer struct {
	ring   []traceEntry
	next   int
	full   bool
	w      io.Writer
	digest uint64
}

func newTracer(n int, w io.Writer) tracer {
	return tracer{ring: make([]traceEntry, n), w: w, digest: 14695981039346656037}
}

func (t *tracer) mix(v uint64) {
	for range 8 {
		t.digest ^= v & 0xff
		t.digest *= 1099511628211
		v >>= 8
	}
}

func (t *tracer) add(e traceEntry) {
	t.mix(uint64(e.at))
	t.mix(uint64(e.peer) | uint64(e.kind)<<32 | uint64(e.mtype)<<40)
	t.mix(e.from ^ e.mterm<<20)
	t.mix(uint64(e.role) | e.term<<8 | e.lead<<40)
	t.mix(uint64(e.lease))
	for i := 0; i < len(e.note); i++ {
		t.digest ^= uint64(e.note[i])
		t.digest *= 1099511628211
	}
	t.ring[t.next] = e
	t.next++
	if t.next == len(t.ring) {
		t.next, t.full = 0, true
	}
	if t.w != nil {
		fmt.Fprintln(t.w, e.String())
	}
}

func (t *tracer) note(at time.Duration, idx int, s string) {
	t.add(traceEntry{at: at, peer: int32(idx), note: s})
}

// String returns the ring, oldest first.
func (t *tracer) String() string {
	var b strings.Builder
	emit := func(es []traceEntry) {
		for i := range es {
			b.WriteString(es[i].String())
			b.WriteByte('\n')
		}
	}
	if t.full {
		emit(t.ring[t.next:])
	}
	emit(t.ring[:t.next])
	return b.String()
}

func fmtVT(d time.Duration) string {
	return fmt.Sprintf("%.6fs", d.Seconds())
}
