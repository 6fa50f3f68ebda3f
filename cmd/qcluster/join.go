package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
)

const joinUsage = `Usage: qcluster join [--addr 127.0.0.1:7001] [--token T] --id ID --host HOST --port PORT
                    [--learner] [--meta '{"server_port": 8004}'] [--cluster-name NAME]
       qcluster join [--addr 127.0.0.1:7001] [--token T] --config FILE [flags]

Asks the cluster at --addr to add a member (POST /v1/join) and waits until
the change is committed, then prints the members (-o json: the whole
answer, with the new member, the leader and the members). --addr may name
any peer: the request goes on to the leader. Needs the API token when the
cluster has one.

The new member is given by --id, --host (the host other peers reach it at)
and --port (its listen_port), with optional --meta (its metadata, a JSON
object) and --cluster-name (must equal the cluster's). Or by --config, its
peer config file: identifier, advertise_host (else listen_host) and
listen_port, metadata, cluster_name, and voter; flags given as well
override the file. --learner adds it as a non-voting member: it follows the
leader and reports it, but neither votes nor can lead.

A member already there with the same address is not changed ("already a
member"). A peer started with a config that names a live peer joins by
itself; this command is for adding members by hand or from scripts.

Examples:

	qcluster join --addr localhost:7001 --token s3cret --id server_d --host 10.0.0.4 --port 7004
	qcluster join --addr localhost:7001 --config server_d.json --learner

` + clientFlagsUsage + `
Flags:
`

// JoinCommand is "qcluster join".
type JoinCommand struct {
	// Stdout receives the result, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// Run parses args and adds the member.
func (c *JoinCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	var (
		id, host, meta, clusterName, configPath string
		port                                    int
		learner                                 bool
	)
	fs.StringVar(&id, "id", "", "the new member's `identifier`")
	fs.StringVar(&host, "host", "", "the `host` name or IP address other peers reach the new member at")
	fs.IntVar(&port, "port", 0, "the new member's listen `port`")
	fs.BoolVar(&learner, "learner", false, "add it as a non-voting member (a learner)")
	fs.StringVar(&meta, "meta", "", "the new member's metadata, a `JSON` object")
	fs.StringVar(&clusterName, "cluster-name", "", "the cluster's `name`, when it has one")
	fs.StringVar(&configPath, "config", "", "take the member from its peer config `file`")
	if _, err := parseArgs(fs, args, c.Stdout, joinUsage, 0); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	var req api.JoinRequest
	if configPath != "" {
		cfg, err := qcluster.LoadConfig(configPath)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("join: %w", err), Hint: helpHint("join")}
		}
		h, p, err := net.SplitHostPort(cfg.AdvertiseAddr())
		if err != nil {
			return &UsageError{Err: fmt.Errorf("join: config %s: %w", configPath, err), Hint: helpHint("join")}
		}
		req = api.JoinRequest{Identifier: cfg.Identifier, Host: h, Metadata: cfg.Metadata, ClusterName: cfg.ClusterName, Voter: cfg.Voter}
		req.Port, _ = strconv.Atoi(p)
	}
	if set["id"] {
		req.Identifier = id
	}
	if set["host"] {
		req.Host = host
	}
	if set["port"] {
		req.Port = port
	}
	if set["cluster-name"] {
		req.ClusterName = clusterName
	}
	if set["meta"] {
		md, err := parseObject(meta)
		if err != nil {
			return usageErrorf("join", "join: --meta: %v", err)
		}
		req.Metadata = md
	}
	if learner {
		no := false
		req.Voter = &no
	}
	switch {
	case req.Identifier == "":
		return usageErrorf("join", "join: --id is required (or --config): give the new member's identifier")
	case req.Host == "":
		return usageErrorf("join", "join: --host is required (or --config): give the host name or IP address other peers reach the new member at")
	case req.Port < 1 || req.Port > 65535:
		if !set["port"] && configPath == "" {
			return usageErrorf("join", "join: --port is required (or --config): give the new member's listen_port")
		}
		return usageErrorf("join", "join: --port %d: give a port 1-65535", req.Port)
	}

	cl, err := f.client("join")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	res, err := cl.Join(ctx, req)
	if err != nil {
		return clientError(err, cl)
	}
	if f.json() {
		return writeJSON(c.Stdout, res)
	}
	what := "joined the cluster as a " + memberRole(res.Member)
	if res.AlreadyMember {
		what = "is already a member (nothing changed)"
	}
	by := ""
	if res.Leader != nil {
		by = " (leader " + res.Leader.Identifier + ")"
	}
	fmt.Fprintf(c.Stdout, "%s at %s %s%s\n\n", res.Member.Identifier, peerAddr(res.Member.Peer), what, by)
	return printMembers(c.Stdout, res.Peers)
}

// parseObject parses s as a JSON object (numbers as float64, as the API
// sees them).
func parseObject(s string) (map[string]any, error) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{") {
		return nil, fmt.Errorf("%q is not a JSON object; give one such as '{\"server_port\": 8004}'", s)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(t))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%q is not a JSON object: %v", s, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%q holds more than one JSON value; give one object", s)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}
