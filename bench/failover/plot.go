package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"html"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// killView is what -plot draws: every peer's view of the leadership around
// one kill, from the agents' logs.
type killView struct {
	mode     string // "TLS off" or "TLS on"
	round    int
	killed   string // the leader killed
	leader   string // the new leader
	killedAt time.Time
	agreed   time.Duration // from the kill until every survivor named leader (logs; 0 if unknown)
	from, to time.Time     // the window drawn
	lanes    []viewLane
}

// viewLane is one peer's view: its state when the window opens, and its
// changes within the window.
type viewLane struct {
	peer    string
	killed  bool // the peer killed at killedAt (its lane ends there)
	initial *proccluster.Event
	events  []proccluster.Event
}

// captureView reads the peers' logs around a kill at killedAt: the window
// runs from one election timeout before it to one after the fail-over.
func captureView(peers []*proccluster.Peer, killed *proccluster.Peer, leader string, killedAt time.Time, agreed, election time.Duration) (killView, error) {
	v := killView{killed: killed.ID, leader: leader, killedAt: killedAt, agreed: agreed,
		from: killedAt.Add(-election), to: killedAt.Add(agreed + election)}
	for _, p := range peers {
		evs, err := p.Events()
		if err != nil {
			return v, err
		}
		starts, err := runStarts(p.LogPath)
		if err != nil {
			return v, err
		}
		for _, t := range starts {
			evs = append(evs, proccluster.Event{Time: t, Peer: p.ID, Role: roleStarted})
		}
		slices.SortStableFunc(evs, func(a, b proccluster.Event) int { return a.Time.Compare(b.Time) })
		l := viewLane{peer: p.ID, killed: p == killed}
		for _, e := range evs {
			switch {
			case !e.Time.After(v.from):
				l.initial = &e
			case !e.Time.After(v.to) && (!l.killed || e.Time.Before(killedAt)):
				l.events = append(l.events, e)
			}
		}
		v.lanes = append(v.lanes, l)
	}
	return v, nil
}

// roleStarted marks, among a lane's events, the start of an agent process
// (from its log's first line of a run).
const roleStarted = "(started)"

// runStarts returns when each run of the agent began: the times of its
// log's "raft storage opened" records, the first each run writes.
func runStarts(logPath string) ([]time.Time, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"raft storage opened"`)) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "raft storage opened" {
			out = append(out, rec.Time)
		}
	}
	return out, sc.Err()
}

// typicalView returns the view of the round whose fail-over took the
// median time, or false when there is none. The first round is left out
// when there are others: it follows the cluster's first election closely.
func typicalView(modes []*mode) (killView, bool) {
	var vs []killView
	for _, m := range modes {
		for _, r := range m.rounds {
			if r.view != nil && (r.view.round > 1 || len(m.rounds) == 1) {
				vs = append(vs, *r.view)
			}
		}
	}
	if len(vs) == 0 {
		return killView{}, false
	}
	slices.SortStableFunc(vs, func(a, b killView) int { return cmp.Compare(a.agreed, b.agreed) })
	return vs[(len(vs)-1)/2], true
}

// segment is a stretch of one lane in one state.
type segment struct {
	from, to time.Time
	kind     string // "leads", "follows", "none", "killed"
	label    string
	leader   string // for "follows"
}

func stateOf(e proccluster.Event) segment {
	switch {
	case e.Role == roleStarted:
		return segment{kind: "unknown", label: "restarted"}
	case e.IsLeader:
		return segment{kind: "leads", label: fmt.Sprintf("leads (term %d)", e.Term)}
	case e.Leader != "":
		return segment{kind: "follows", leader: e.Leader, label: fmt.Sprintf("follows %s (term %d)", e.Leader, e.Term)}
	case e.Role == "leader":
		return segment{kind: "none", label: fmt.Sprintf("lease lapsed (term %d)", e.Term)}
	default:
		return segment{kind: "none", label: fmt.Sprintf("%s (term %d)", e.Role, e.Term)}
	}
}

func (l viewLane) segments(v killView) []segment {
	var segs []segment
	cur := segment{kind: "unknown", label: "no change logged yet"}
	if l.initial != nil {
		cur = stateOf(*l.initial)
	}
	cur.from = v.from
	for _, e := range l.events {
		cur.to = e.Time
		if e.Role == roleStarted {
			// The process was down until it started again.
			cur = segment{from: cur.from, to: cur.to, kind: "killed", label: "down"}
		}
		segs = append(segs, cur)
		cur = stateOf(e)
		cur.from = e.Time
	}
	if l.killed {
		cur.to = v.killedAt
		segs = append(segs, cur, segment{from: v.killedAt, to: v.to, kind: "killed", label: "killed (SIGKILL)"})
	} else {
		cur.to = v.to
		segs = append(segs, cur)
	}
	return slices.DeleteFunc(segs, func(s segment) bool { return !s.to.After(s.from) })
}

// leaderColor gives each leader a colour of its own, the same in every
// lane.
func leaderColor(id string) string {
	palette := []string{"#8fb8e8", "#9bd49b", "#d7b0e6", "#f2c98a", "#8fd6d0", "#e6a6b8"}
	h := fnv.New32a()
	h.Write([]byte(id))
	return palette[h.Sum32()%uint32(len(palette))]
}

// writePlot draws v as an SVG timeline: one lane per peer, time in
// milliseconds from the kill.
func writePlot(w io.Writer, v killView) error {
	const (
		left, right, top = 110.0, 30.0, 70.0
		laneH, gap       = 34.0, 12.0
		width            = 960.0
	)
	height := top + float64(len(v.lanes))*(laneH+gap) + 90
	span := v.to.Sub(v.from)
	if span <= 0 {
		return fmt.Errorf("plot: empty window")
	}
	x := func(t time.Time) float64 {
		return left + (width-left-right)*float64(t.Sub(v.from))/float64(span)
	}
	esc := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	title := fmt.Sprintf("Fail-over, each peer's view (%s, round %d): %s killed, %s leads", v.mode, v.round, v.killed, v.leader)
	if v.agreed > 0 {
		title += fmt.Sprintf(" after %.0f ms", msf(v.agreed))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))

	// Ticks every 50 or 100 ms.
	step := 50 * time.Millisecond
	if span > 1200*time.Millisecond {
		step = 100 * time.Millisecond
	}
	if span > 3*time.Second {
		step = 500 * time.Millisecond
	}
	bottom := top + float64(len(v.lanes))*(laneH+gap)
	first := v.killedAt.Add(-(v.killedAt.Sub(v.from) / step) * step)
	for t := first; !t.After(v.to); t = t.Add(step) {
		xx := x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#e4e4e4"/>`+"\n", xx, top-6, xx, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%.0f</text>`+"\n", xx, bottom+16, msf(t.Sub(v.killedAt)))
	}

	for i, l := range v.lanes {
		y := top + float64(i)*(laneH+gap)
		name := l.peer
		if l.killed {
			name += " †"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" font-weight="bold">%s</text>`+"\n", left-10, y+laneH/2+4, esc(name))
		for _, s := range l.segments(v) {
			x0, x1 := x(s.from), x(s.to)
			fill, stroke := "#eeeeee", "#bbbbbb"
			switch s.kind {
			case "leads":
				fill, stroke = "#1f5fa8", "#1f5fa8"
			case "follows":
				fill, stroke = leaderColor(s.leader), "#777777"
			case "none":
				fill, stroke = "#f6b26b", "#c97a2a"
			case "killed":
				fill, stroke = "#d9d9d9", "#d9d9d9"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="%s" stroke="%s"><title>%s: %s, %.1f to %.1f ms</title></rect>`+"\n",
				x0, y, x1-x0, laneH, fill, stroke, esc(l.peer), esc(s.label), msf(s.from.Sub(v.killedAt)), msf(s.to.Sub(v.killedAt)))
			if label := s.label; x1-x0 > float64(len(label))*6.4+8 {
				color := "#111111"
				if s.kind == "leads" {
					color = "#ffffff"
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x0+5, y+laneH/2+4, color, esc(label))
			}
		}
	}

	// The kill, and the moment every survivor agreed.
	mark := func(t time.Time, color, label string, anchor string, dx float64) {
		xx := x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/>`+"\n", xx, top-14, xx, bottom, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="%s" text-anchor="%s" font-weight="bold">%s</text>`+"\n", xx+dx, top-18, color, anchor, esc(label))
	}
	mark(v.killedAt, "#c0392b", "SIGKILL "+v.killed, "end", -4)
	if v.agreed > 0 {
		mark(v.killedAt.Add(v.agreed), "#1e8449", fmt.Sprintf("all survivors: %s leads (+%.0f ms)", v.leader, msf(v.agreed)), "start", 4)
	}

	// Legend.
	ly := bottom + 40
	items := []struct{ fill, label string }{{"#1f5fa8", "leads (holds the lease)"}, {leaderColor(v.killed), "follows " + v.killed}, {leaderColor(v.leader), "follows " + v.leader}, {"#f6b26b", "no leader: election"}, {"#d9d9d9", "killed"}}
	lx := left
	for _, it := range items {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="14" height="14" fill="%s" stroke="#777"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, ly-11, it.fill, lx+19, ly, esc(it.label))
		lx += 30 + float64(len(it.label))*6.6
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">From the agents' logs (nanosecond timestamps, one clock). Time in ms from the kill.</text>`+"\n", left, ly+26)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// savePlot writes the typical kill's timeline to path.
func savePlot(stdout io.Writer, path string, modes []*mode) error {
	v, ok := typicalView(modes)
	if !ok {
		return fmt.Errorf("-plot: no round was timed from the agents' logs")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writePlot(f, v); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: every peer's view around round %d (%s), the median fail-over (%.1f ms)\n", path, v.round, v.mode, msf(v.agreed))
	return nil
}
