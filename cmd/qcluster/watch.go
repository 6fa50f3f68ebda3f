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
)

const watchUsage = `Usage: qcluster watch [--addr 127.0.0.1:7001] [-o text|json]

Prints the leader, then a line each time it changes, as the peer asked
sees it (blocking queries on GET /v1/leader: a change shows within
milliseconds), until Ctrl-C (exit code 0). When the peer stops answering it
moves to the next --addr, says so if none answers, and keeps trying. With
-o json each line is a JSON object:

	{"time": "...", "leader": {...} or null, "index": 42, "addr": "http://127.0.0.1:7001"}
	{"time": "...", "leader": null, "error": "..."}

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

// watchLine is one line of -o json.
type watchLine struct {
	Time   time.Time `json:"time"`
	Leader *api.Peer `json:"leader"`
	Index  uint64    `json:"index,omitempty"`
	Addr   string    `json:"addr,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// Run parses args and prints leadership changes until ctx ends (then it
// returns nil). It fails at once only if no peer answers the first query.
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
	now := c.now
	if now == nil {
		now = time.Now
	}
	ch, err := cl.WatchLeader(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return clientError(err, cl)
	}
	for st := range ch {
		t := now()
		if f.json() {
			line := watchLine{Time: t, Leader: st.Leader, Index: st.Index, Addr: st.Addr}
			if st.Err != nil {
				line.Error = clientError(st.Err, cl).Error()
			}
			b, err := json.Marshal(line)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(c.Stdout, "%s\n", b); err != nil {
				return err
			}
			continue
		}
		stamp := t.Format("2006-01-02T15:04:05.000Z07:00")
		var err error
		switch {
		case st.Err != nil:
			_, err = fmt.Fprintf(c.Stdout, "%s  error: %s; retrying\n", stamp, clientError(st.Err, cl))
		case st.Leader == nil:
			_, err = fmt.Fprintf(c.Stdout, "%s  no leader  (as seen by %s)\n", stamp, baseHost(st.Addr))
		default:
			_, err = fmt.Fprintf(c.Stdout, "%s  leader %s at %s  (as seen by %s)\n", stamp, st.Leader.Identifier, peerAddr(*st.Leader), baseHost(st.Addr))
		}
		if err != nil {
			return err
		}
	}
	return nil // ctx ended: Ctrl-C
}
