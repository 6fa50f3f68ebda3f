package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

const leaderUsage = `Usage: qcluster leader [--addr 127.0.0.1:7001] [-o text|json]

Prints the cluster's leader as the peer asked knows it (GET /v1/leader):
its identifier, address and metadata. When no leader is elected (no
majority of the peers is reachable, or an election is in progress) it says
so on stderr and exits with code 1, so scripts can test for a leader:

	qcluster leader -o json > leader.json || echo "no leader"

Example:

	qcluster leader --addr localhost:7001,localhost:7002

` + clientFlagsUsage + `
Flags:
`

// LeaderCommand is "qcluster leader".
type LeaderCommand struct {
	// Stdout receives the leader, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and prints the leader; no leader is an error.
func (c *LeaderCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("leader", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	if _, err := parseArgs(fs, args, c.Stdout, leaderUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	cl, err := f.client("leader")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	p, err := cl.Leader(ctx)
	if err != nil {
		return clientError(err, cl)
	}
	if f.json() {
		return writeJSON(c.Stdout, p)
	}
	_, err = fmt.Fprintf(c.Stdout, "%s at %s, metadata %s\n", p.Identifier, peerAddr(p), metadataText(p.Metadata))
	return err
}
