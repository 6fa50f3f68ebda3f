package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
)

const peersUsage = `Usage: qcluster peers [--addr 127.0.0.1:7001] [-o text|json]

Lists the members of the cluster (GET /v1/peers) as the peer asked knows
them: identifier, address, whether it is the leader, whether it is the peer
that answered, whether it votes, and its metadata. -o json prints the list
as a JSON array, for scripts.

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
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tADDRESS\tLEADER\tSELF\tVOTER\tMETADATA")
	for _, m := range peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Identifier, peerAddr(m.Peer), yesNo(m.IsLeader), yesNo(m.IsSelf), yesNo(m.Voter), metadataText(m.Metadata))
	}
	return tw.Flush()
}
