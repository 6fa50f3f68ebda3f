package main

import (
	"context"
	"errors"
	"flag"
	"io"
)

const peersUsage = `Usage: qcluster peers [--addr 127.0.0.1:7001] [-o text|json]

Lists the members of the cluster (GET /v1/peers) as the peer asked knows
them: identifier, address, role (leader, follower, learner; none for a
member gossip knows that is not in the Raft configuration yet; member in
masterless mode), health state from gossip (alive, suspect, dead, left, or
unknown), whether it is the peer that answered, and its metadata. -o json
prints the list as a JSON array, for scripts, with every field of the API
(voter, is_leader, ...).

Examples:

	qcluster peers --addr localhost:7001
	qcluster peers -o json

` + clientFlagsUsage + `
Flags:
`

// PeersCommand is "qcluster peers".
type PeersCommand struct {
	// Stdout receives the table, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and prints the members.
func (c *PeersCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	if _, err := parseArgs(fs, args, c.Stdout, peersUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	cl, err := f.client("peers")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	peers, err := cl.Peers(ctx)
	if err != nil {
		return clientError(err, cl)
	}
	if f.json() {
		return writeJSON(c.Stdout, peers)
	}
	return printMembers(c.Stdout, peers)
}
