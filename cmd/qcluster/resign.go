package main

import (
	"context"
	"errors"
	"flag"
	"io"
)

const resignUsage = `Usage: qcluster resign [--addr 127.0.0.1:7001] [--token T]

Asks the leader to step down: it hands leadership to the best other member
without waiting for an election timeout, and the command waits until
another peer leads (POST /v1/leader/resign). Use it before stopping the
leader for maintenance. --addr may name any peer: a follower's answer names
the leader, and the request goes there. Needs the API token when the
cluster has one.

Example:

	qcluster resign --addr localhost:7001 --token s3cret

` + clientFlagsUsage + `
Flags:
`

// ResignCommand is "qcluster resign".
type ResignCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and makes the leader resign.
func (c *ResignCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("resign", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	if _, err := parseArgs(fs, args, c.Stdout, resignUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	cl, err := f.client("resign")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	res, err := cl.Resign(ctx)
	if err != nil {
		return clientError(err, cl)
	}
	return printTransfer(c.Stdout, f, res)
}
