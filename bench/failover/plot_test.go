package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// TestWritePlot draws a made-up kill and checks the SVG: well-formed XML,
// one lane per peer, the kill and the agreement marked, states labelled,
// the killed peer's lane ending at the kill, identifiers escaped.
func TestWritePlot(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := func(v int) time.Time { return t0.Add(time.Duration(v) * time.Millisecond) }
	ev := func(at int, peer, leader, role string, term uint64, isLeader bool) proccluster.Event {
		return proccluster.Event{Time: ms(at), Peer: peer, Leader: leader, Role: role, Term: term, IsLeader: isLeader}
	}
	lead := ev(-500, "a<1>", "a<1>", "leader", 3, true)
	fb := ev(-480, "b", "a<1>", "follower", 3, false)
	v := killView{
		mode: "TLS off", round: 2, killed: "a<1>", leader: "b", killedAt: t0, agreed: 180 * time.Millisecond,
		from: ms(-150), to: ms(330),
		lanes: []viewLane{
			{peer: "a<1>", killed: true, initial: &lead, events: []proccluster.Event{ev(-20, "a<1>", "a<1>", "leader", 3, true)}},
			{peer: "b", initial: &fb, events: []proccluster.Event{
				ev(160, "b", "", "pre-candidate", 3, false), ev(170, "b", "", "candidate", 4, false), ev(180, "b", "b", "leader", 4, true)}},
			{peer: "c", events: []proccluster.Event{
				{Time: ms(-100), Peer: "c", Role: roleStarted}, ev(-90, "c", "a<1>", "follower", 3, false), ev(175, "c", "b", "follower", 4, false)}},
		},
	}
	var buf bytes.Buffer
	if err := writePlot(&buf, v); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
	}
	for _, want := range []string{
		"SIGKILL a&lt;1&gt;", "all survivors: b leads (+180 ms)", "follows a&lt;1&gt; (term 3)", "leads (term 4)",
		"candidate (term 4)", "killed (SIGKILL)", "down", "follows b (term 4)",
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("the plot lacks %q", want)
		}
	}
	if strings.Contains(svg, "a<1>") {
		t.Errorf("an identifier is not escaped")
	}
	// The killed peer's lane: it leads until the kill, then is dead.
	segs := v.lanes[0].segments(v)
	last := segs[len(segs)-1]
	if last.kind != "killed" || !last.from.Equal(t0) || segs[len(segs)-2].kind != "leads" {
		t.Errorf("the killed lane: %+v", segs)
	}
	// c was down until it restarted.
	if segs := v.lanes[2].segments(v); segs[0].kind != "killed" || segs[1].kind != "unknown" {
		t.Errorf("the restarted lane: %+v", segs)
	}
}
