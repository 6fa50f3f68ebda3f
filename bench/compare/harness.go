package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
)

// agreement is a moment at which every polled member named the same
// leader, one of them, and that leader said it leads.
type agreement struct {
	leader member
	term   uint64
	at     time.Time // when the polls that showed it had all returned
	views  map[member]view
}

// polled is one member's answer to a poll, or why there was none.
type polled struct {
	m   member
	v   view
	err error
}

func (p polled) String() string {
	if p.err != nil {
		return fmt.Sprintf("%s: unreachable (%v)", p.m.Name(), p.err)
	}
	l := p.v.Leader
	if l == "" {
		l = "none"
	}
	return fmt.Sprintf("%s: term %d, leader %s, leads %v", p.m.Name(), p.v.Term, l, p.v.IsLeader)
}

// poll asks every given member for its view, concurrently.
func poll(ctx context.Context, ms []member) []polled {
	out := make([]polled, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			v, err := m.View(ctx)
			out[i] = polled{m: m, v: v, err: err}
		})
	}
	wg.Wait()
	return out
}

// agreed reports whether ps show an agreement: every member answered and
// names the same leader, the leader is one of them and says it leads.
func agreed(ps []polled) (agreement, bool) {
	if len(ps) == 0 || ps[0].err != nil || ps[0].v.Leader == "" {
		return agreement{}, false
	}
	lead := ps[0].v.Leader
	a := agreement{views: make(map[member]view, len(ps))}
	for _, p := range ps {
		if p.err != nil || p.v.Leader != lead {
			return agreement{}, false
		}
		if p.m.Name() == lead {
			if !p.v.IsLeader {
				return agreement{}, false
			}
			a.leader, a.term = p.m, p.v.Term
		}
		a.views[p.m] = p.v
	}
	return a, a.leader != nil
}

// waitAgreed polls ms every interval until they agree and accept (if not
// nil) accepts the agreement, or ctx ends.
func waitAgreed(ctx context.Context, ms []member, interval time.Duration, accept func(agreement) bool) (agreement, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []polled
	for {
		last = poll(ctx, ms)
		if a, ok := agreed(last); ok {
			a.at = time.Now()
			if accept == nil || accept(a) {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, p := range last {
				b.WriteString("\n    ")
				b.WriteString(p.String())
			}
			return agreement{}, fmt.Errorf("no agreed leader: %w; last views:%s", ctx.Err(), b.String())
		case <-tick.C:
		}
	}
}

// except returns ms without skip.
func except(ms []member, skip member) []member {
	var out []member
	for _, m := range ms {
		if m != skip {
			out = append(out, m)
		}
	}
	return out
}

// harness runs the rounds; its fields are the options that matter there.
type harness struct {
	poll    time.Duration // interval of the polls that detect agreement
	jitter  time.Duration // the kill or stop falls at a random instant in [0, jitter)
	timeout time.Duration // bound of one wait for an agreement
}

// waitStable waits until all of s's members agree; when back is not nil,
// also until it follows the leader with a term of at least minTerm.
func (h harness) waitStable(ctx context.Context, s *system, back member, minTerm uint64) (agreement, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return waitAgreed(ctx, s.cl.Members(), h.poll, func(a agreement) bool {
		return back == nil || (a.leader != back && a.views[back].Term >= minTerm)
	})
}

// pause waits a random instant in [0, h.jitter), so that the fault falls
// at a random point between two heartbeats.
func (h harness) pause(ctx context.Context) error {
	if h.jitter <= 0 {
		return nil
	}
	select {
	case <-time.After(rand.N(h.jitter)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// beforeFault waits a random instant within h.jitter, then until every
// member of s agrees on the leader, right before the fault: the leader may
// have changed since s's previous round (the other systems' rounds ran
// meanwhile), and a fault on a member that no longer leads would time
// nothing. It counts such changes in s.unprompted.
func (h harness) beforeFault(ctx context.Context, s *system) error {
	if err := h.pause(ctx); err != nil {
		return err
	}
	a, err := h.waitStable(ctx, s, nil, 0)
	if err != nil {
		return fmt.Errorf("before the fault: %w", err)
	}
	if a.leader != s.stable.leader {
		s.unprompted++
	}
	s.stable = a
	return nil
}

// killRound kills s's leader with SIGKILL, times until both survivors name
// the same new leader, restarts the killed member and waits until it
// follows.
func (h harness) killRound(ctx context.Context, s *system) error {
	if err := h.beforeFault(ctx, s); err != nil {
		return err
	}
	old := s.stable.leader
	at, err := old.Kill()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, h.timeout)
	after, err := waitAgreed(wctx, except(s.cl.Members(), old), h.poll, func(a agreement) bool { return a.leader != old })
	cancel()
	if err != nil {
		return fmt.Errorf("no new leader after SIGKILL of %s: %w", old.Name(), err)
	}
	s.kills = append(s.kills, after.at.Sub(at))
	s.last = roundInfo{old: old.Name(), leader: after.leader.Name(), termBefore: s.stable.term, termAfter: after.term, took: after.at.Sub(at)}
	if after.term > s.stable.term+1 {
		s.killJumps++
	}
	rctx, cancel := context.WithTimeout(ctx, h.timeout)
	err = old.Restart(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("restart %s: %w", old.Name(), err)
	}
	next, err := h.waitStable(ctx, s, old, s.stable.term)
	if err != nil {
		return fmt.Errorf("%s did not rejoin after its restart: %w", old.Name(), err)
	}
	s.stable = next
	return nil
}

// stopRound freezes s's leader with SIGSTOP, times until both survivors
// name the same new leader, resumes it with SIGCONT and waits until it
// follows.
func (h harness) stopRound(ctx context.Context, s *system) error {
	if err := h.beforeFault(ctx, s); err != nil {
		return err
	}
	old := s.stable.leader
	at := time.Now()
	if err := old.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, h.timeout)
	after, err := waitAgreed(wctx, except(s.cl.Members(), old), h.poll, func(a agreement) bool { return a.leader != old })
	cancel()
	if cerr := old.Signal(syscall.SIGCONT); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("no new leader after SIGSTOP of %s: %w", old.Name(), err)
	}
	s.stops = append(s.stops, after.at.Sub(at))
	s.last = roundInfo{old: old.Name(), leader: after.leader.Name(), termBefore: s.stable.term, termAfter: after.term, took: after.at.Sub(at)}
	if after.term > s.stable.term+1 {
		s.stopJumps++
	}
	next, err := h.waitStable(ctx, s, old, after.term)
	if err != nil {
		return fmt.Errorf("%s did not follow after SIGCONT: %w", old.Name(), err)
	}
	s.stable = next
	return nil
}

// roundInfo is what -v prints of a round.
type roundInfo struct {
	old, leader           string // the member hit and the new leader
	termBefore, termAfter uint64
	took                  time.Duration
}

// idleProc is one process measured while idle.
type idleProc struct {
	role   string // leader or follower
	name   string
	pid    int
	before int64 // CPU ticks at the start of the window
	rssKB  int64 // VmRSS at the end of the window
	anonKB int64 // RssAnon then: the part not mapped from files (the binary)
	// touchedKB is the anonymous memory it touched in the window (the
	// working set of its own memory: benchkit.AnonReferencedKB), or -1
	// where that cannot be read.
	touchedKB int64
	cpu       float64 // % of one core over the window
}

// measureIdle waits warmup, then reads every process's CPU time over the
// same window of every system, with nobody polling, its RSS at the end
// and the anonymous memory it touched in the window. A system whose leader changed
// meanwhile gets a note.
func (h harness) measureIdle(ctx context.Context, systems []*system, warmup, window time.Duration) error {
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	leaders := map[*system]member{}
	for _, s := range systems {
		a, err := h.waitStable(ctx, s, nil, 0)
		if err != nil {
			s.failed = fmt.Errorf("before the idle window: %w", err)
			continue
		}
		leaders[s] = a.leader
		s.idle = []*idleProc{{role: "leader", name: a.leader.Name(), pid: a.leader.PID()}}
		for _, m := range except(s.cl.Members(), a.leader) {
			s.idle = append(s.idle, &idleProc{role: "follower", name: m.Name(), pid: m.PID()})
		}
	}
	var err error
	for _, s := range systems {
		for _, p := range s.idle {
			if p.before, err = benchkit.CPUTicks(p.pid); err != nil {
				return err
			}
			p.touchedKB = 0
			if benchkit.ClearReferenced(p.pid) != nil {
				p.touchedKB = -1
			}
		}
	}
	start := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(start)
	for _, s := range systems {
		for _, p := range s.idle {
			after, err := benchkit.CPUTicks(p.pid)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if p.rssKB, err = benchkit.RSSKB(p.pid); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if p.anonKB, err = benchkit.StatusKB(p.pid, "RssAnon"); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			if p.touchedKB == 0 {
				if p.touchedKB, err = benchkit.AnonReferencedKB(p.pid); err != nil {
					p.touchedKB = -1
				}
			}
			p.cpu = float64(after-p.before) / benchkit.ClockTicksPerSecond / elapsed.Seconds() * 100
		}
	}
	for _, s := range systems {
		if leaders[s] == nil {
			continue
		}
		a, err := h.waitStable(ctx, s, nil, 0)
		switch {
		case err != nil:
			s.idleNote = "no agreed leader after the idle window"
		case a.leader != leaders[s]:
			s.idleNote = fmt.Sprintf("the leader changed during the idle window (%s -> %s)", leaders[s].Name(), a.leader.Name())
		}
	}
	return nil
}
