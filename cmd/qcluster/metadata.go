package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/qcluster/qcluster/api"
)

const metadataUsage = `Usage: qcluster metadata [--addr 127.0.0.1:7001] [-o text|json] [get]
       qcluster metadata [--addr 127.0.0.1:7001] [--token T] [-o text|json] set '{"server_port": 8004}'

Shows (get, the default) or replaces (set) the metadata of the peer at
--addr: the custom metadata every peer sees in its member list and, for
the leader, in GET /v1/leader. "qcluster meta" is the same command.

set replaces the whole metadata with the given JSON object ('{}' clears
it) (PUT /v1/self/metadata) and waits until the cluster records it: in
leader mode the change is committed through the leader. It changes the one
peer at --addr, so --addr must name one peer. Needs the API token when the
cluster has one. Both print the peer's identifier and metadata; -o json
prints the peer as GET /v1/peers/{identifier} shows it.

Examples:

	qcluster metadata --addr localhost:7001
	qcluster metadata --addr localhost:7001 --token s3cret set '{"server_port": 8012}'

` + clientFlagsUsage + `
Flags:
`

// MetadataCommand is "qcluster metadata" (or "qcluster meta").
type MetadataCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and shows or sets the peer's metadata.
func (c *MetadataCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("metadata", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	pos, err := parseArgs(fs, args, c.Stdout, metadataUsage, 2)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	action := "get"
	if len(pos) > 0 {
		action = pos[0]
	}
	var md map[string]any
	switch {
	case action == "get" && len(pos) > 1:
		return usageErrorf("metadata", "metadata: get takes no argument, got %q", pos[1])
	case action == "get":
	case action == "set" && len(pos) < 2:
		return usageErrorf("metadata", `metadata: set needs the new metadata, a JSON object such as '{"server_port": 8004}' ('{}' clears it)`)
	case action == "set":
		if md, err = parseObject(pos[1]); err != nil {
			return usageErrorf("metadata", "metadata set: %v", err)
		}
		if err := f.oneAddr("metadata"); err != nil {
			return err
		}
	default:
		return usageErrorf("metadata", "metadata: unknown action %q; use get or set", action)
	}
	cl, err := f.client("metadata")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	var m api.Member
	if action == "set" {
		if m, err = cl.SetMetadata(ctx, md); err != nil {
			return clientError(err, cl)
		}
	} else {
		peers, err := cl.Peers(ctx)
		if err != nil {
			return clientError(err, cl)
		}
		found := false
		for _, p := range peers {
			if p.IsSelf {
				m, found = p, true
			}
		}
		if !found {
			return fmt.Errorf("%s does not list itself among the members", baseHost(cl.Addr()))
		}
	}
	if f.json() {
		return writeJSON(c.Stdout, m)
	}
	text := "{}"
	if len(m.Metadata) > 0 {
		text = metadataText(m.Metadata)
	}
	_, err = fmt.Fprintf(c.Stdout, "%s (%s) metadata: %s\n", m.Identifier, baseHost(cl.Addr()), text)
	return err
}
