package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/qcluster/qcluster/api"
)

const transferUsage = `Usage: qcluster transfer [--addr 127.0.0.1:7001] [--token T] [identifier]

Asks the leader to hand leadership to the member with the given identifier,
or, without one, to the best other member, and waits until it has
(POST /v1/leader/transfer). The hand-over does not wait for an election
timeout: it takes milliseconds. --addr may name any peer: a follower's
answer names the leader, and the request goes there. Needs the API token
when the cluster has one.

Example:

	qcluster transfer --addr localhost:7001 --token s3cret server_c

` + clientFlagsUsage + `
Flags:
`

// TransferCommand is "qcluster transfer".
type TransferCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and moves leadership.
func (c *TransferCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("transfer", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	pos, err := parseArgs(fs, args, c.Stdout, transferUsage, 1)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	target := ""
	if len(pos) == 1 {
		if target = pos[0]; target == "" {
			return usageErrorf("transfer", "transfer: the identifier is empty; give a member's identifier (qcluster peers lists them), or none")
		}
	}
	cl, err := f.client("transfer")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	res, err := cl.Transfer(ctx, target)
	if err != nil {
		return clientError(err, cl)
	}
	return printTransfer(c.Stdout, f, res)
}

// printTransfer reports a completed hand-over.
func printTransfer(w io.Writer, f clientFlags, res api.TransferResult) error {
	if f.json() {
		return writeJSON(w, res)
	}
	to := "another peer"
	if res.Leader != nil {
		to = res.Leader.Identifier
	}
	_, err := fmt.Fprintf(w, "leadership moved from %s to %s in %.1f ms (term %d)\n", res.From, to, res.DurationMS, res.Term)
	return err
}
