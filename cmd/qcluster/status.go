package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

const statusUsage = `Usage: qcluster status [--addr 127.0.0.1:7001] [-o text|json]

Shows one peer's view of the cluster (GET /v1/status): its role and term,
the leader it knows, whether it holds the leader lease, and the voters.

Examples:

	qcluster status --addr localhost:7002
	QCLUSTER_ADDR=localhost:7001 qcluster status -o json

` + clientFlagsUsage + `
Flags:
`

// StatusCommand is "qcluster status".
type StatusCommand struct {
	// Stdout receives the status, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and prints the status of the first peer that answers.
func (c *StatusCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	if _, err := parseArgs(fs, args, c.Stdout, statusUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	cl, err := f.client("status")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	st, err := cl.Status(ctx)
	if err != nil {
		return clientError(err, cl)
	}
	if f.json() {
		return writeJSON(c.Stdout, st)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Peer:\t%s (%s)\n", st.Identifier, baseHost(cl.Addr()))
	fmt.Fprintf(tw, "Role:\t%s\n", st.Role)
	fmt.Fprintf(tw, "Term:\t%d\n", st.Term)
	if st.Leader != nil {
		fmt.Fprintf(tw, "Leader:\t%s (%s)\n", st.Leader.Identifier, peerAddr(*st.Leader))
	} else {
		fmt.Fprintf(tw, "Leader:\tnone known\n")
	}
	if st.IsLeader {
		fmt.Fprintf(tw, "Is leader:\tyes (lease valid for %.0f ms more)\n", st.LeaseRemainingMS)
	} else {
		fmt.Fprintf(tw, "Is leader:\tno\n")
	}
	fmt.Fprintf(tw, "Voters:\t%s\n", strings.Join(st.Voters, ", "))
	fmt.Fprintf(tw, "Index:\t%d\n", st.Index)
	return tw.Flush()
}
