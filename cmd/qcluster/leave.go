package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/qcluster/qcluster/api"
)

const leaveUsage = `Usage: qcluster leave [--addr 127.0.0.1:7001] [--token T] [-o text|json]

Makes the peer at --addr leave the cluster gracefully and stop (POST
/v1/self/leave): a leader first hands leadership over, then the peer is
removed from the members, and the others see it as "left" rather than
failed. The command returns once the peer is out of the cluster. The peer
must join again to come back. --addr must name that one peer (the command
never moves on to another address: that would make another peer leave).
Needs the API token when the cluster has one.

Example:

	qcluster leave --addr localhost:7003 --token s3cret

` + clientFlagsUsage + `
Flags:
`

// LeaveCommand is "qcluster leave".
type LeaveCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// leaveLine is the -o json output of leave.
type leaveLine struct {
	Left string `json:"left"`
	Addr string `json:"addr"`
}

// Run parses args and makes the peer leave.
func (c *LeaveCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("leave", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	if _, err := parseArgs(fs, args, c.Stdout, leaveUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := f.oneAddr("leave"); err != nil {
		return err
	}
	cl, err := f.client("leave")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	res, err := cl.Leave(ctx)
	if err != nil {
		return clientError(err, cl)
	}
	addr := baseHost(cl.Addr())
	if f.json() {
		return writeJSON(c.Stdout, leaveLine{Left: res.Left, Addr: addr})
	}
	_, err = fmt.Fprintf(c.Stdout, "%s (%s) left the cluster and stopped\n", res.Left, addr)
	return err
}

const removeUsage = `Usage: qcluster remove [--addr 127.0.0.1:7001] [--token T] [-o text|json] identifier

Removes the member with the given identifier from the cluster (DELETE
/v1/peers/{identifier}) and waits until the change is committed. Removing
the leader makes it hand leadership over first. The member is not stopped:
use it for a member that is gone for good (to stop counting it toward the
majority), or run 'qcluster leave' on a member that still runs. --addr may
name any peer: the request goes on to the leader. Needs the API token when
the cluster has one.

Example:

	qcluster remove --addr localhost:7001 --token s3cret server_d

` + clientFlagsUsage + `
Flags:
`

// RemoveCommand is "qcluster remove".
type RemoveCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and removes the member.
func (c *RemoveCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("remove", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	pos, err := parseArgs(fs, args, c.Stdout, removeUsage, 1)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(pos) == 0 || pos[0] == "" {
		return usageErrorf("remove", "remove: give the identifier of the member to remove (qcluster peers lists them)")
	}
	id := pos[0]
	cl, err := f.client("remove")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	if err := cl.RemovePeer(ctx, id); err != nil {
		return clientError(err, cl)
	}
	if f.json() {
		return writeJSON(c.Stdout, api.RemoveResult{Removed: id})
	}
	_, err = fmt.Fprintf(c.Stdout, "removed %s from the cluster\n", id)
	return err
}
