package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/client"
)

const watchUsage = `Usage: qcluster watch [--addr 127.0.0.1:7001] [-o text|json]

Prints the leader, then a line each time it changes, and a line for each
membership change (a member joined, was updated, became suspect, was alive
again, failed, left or was removed), as the peer asked sees them (the event stream
GET /v1/watch: a change shows within milliseconds), until Ctrl-C (exit code
0). When the stream breaks it says so, moves to the next --addr if the peer
does not answer, and keeps trying; membership changes while it was away
are not shown (run 'qcluster peers'). With -o json each line is a JSON
object:

	{"time": "...", "event": "leader", "leader": {...} or null, "index": 42, "addr": "http://127.0.0.1:7001"}
	{"time": "...", "event": "member", "type": "joined", "member": {...}, "addr": "http://127.0.0.1:7001"}
	{"time": "...", "event": "error", "leader": null, "error": "..."}

Example:

	qcluster watch --addr localhost:7001,localhost:7002,localhost:7003

` + clientFlagsUsage + `
Flags:
`

// WatchCommand is "qcluster watch".
type WatchCommand struct {
	// Stdout receives one line per change, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
	// now is the clock (tests may set it).
	now func() time.Time
}

// watchLine is a leader or error line of -o json.
type watchLine struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Leader *api.Peer `json:"leader"`
	Index  uint64    `json:"index,omitempty"`
	Addr   string    `json:"addr,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// memberLine is a member line of -o json.
type memberLine struct {
	Time   time.Time  `json:"time"`
	Event  string     `json:"event"`
	Type   string     `json:"type"`
	Member api.Member `json:"member"`
	Addr   string     `json:"addr"`
}

// Run parses args and prints leadership and membership changes until ctx
// ends (then it returns nil). It fails at once only if no peer answers
// the first request.
func (c *WatchCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, false, true)
	if _, err := parseArgs(fs, args, c.Stdout, watchUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	cl, err := f.client("watch")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	ch, err := cl.WatchEvents(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return clientError(err, cl)
	}
	p := watchPrinter{w: c.Stdout, json: f.json(), cl: cl, now: c.now}
	if p.now == nil {
		p.now = time.Now
	}
	for ev := range ch {
		if err := p.print(ev); err != nil {
			return err
		}
	}
	return nil // ctx ended: Ctrl-C
}

// watchPrinter prints the events of a watch: a leader line only when the
// leader differs from the one printed last (the stream also reports
// changes of term and lease).
type watchPrinter struct {
	w    io.Writer
	json bool
	cl   *client.Client
	now  func() time.Time
	// last is what the last leader or error line said: "" before the
	// first, "error", "none", or the leader's identifier and address.
	last string
}

func (p *watchPrinter) print(ev client.Event) error {
	t := p.now()
	stamp := t.Format("2006-01-02T15:04:05.000Z07:00")
	var line any
	var text string
	switch {
	case ev.Err != nil:
		msg := clientError(ev.Err, p.cl).Error()
		p.last = "error"
		line = watchLine{Time: t, Event: "error", Error: msg}
		text = fmt.Sprintf("%s  error: %s; retrying", stamp, msg)
	case ev.Status != nil:
		l := ev.Status.Leader
		key := "none"
		if l != nil {
			key = l.Identifier + " " + peerAddr(*l)
		}
		if key == p.last {
			return nil
		}
		p.last = key
		line = watchLine{Time: t, Event: api.EventLeader, Leader: l, Index: ev.Status.Index, Addr: ev.Addr}
		if l == nil {
			text = fmt.Sprintf("%s  no leader  (as seen by %s)", stamp, baseHost(ev.Addr))
		} else {
			text = fmt.Sprintf("%s  leader %s at %s  (as seen by %s)", stamp, l.Identifier, peerAddr(*l), baseHost(ev.Addr))
		}
	case ev.Member != nil:
		m := ev.Member.Member
		line = memberLine{Time: t, Event: api.EventMember, Type: ev.Member.Type, Member: m, Addr: ev.Addr}
		text = fmt.Sprintf("%s  member %s %s: %s, %s, %s, metadata %s  (as seen by %s)", stamp, m.Identifier, ev.Member.Type,
			peerAddr(m.Peer), memberRole(m), orDash(m.State), metadataText(m.Metadata), baseHost(ev.Addr))
	default:
		return nil
	}
	if p.json {
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(p.w, text)
	return err
}
