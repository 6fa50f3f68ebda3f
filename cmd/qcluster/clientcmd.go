package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/client"
)

// Environment variables the client commands read.
const (
	envAddr  = "QCLUSTER_ADDR"
	envToken = "QCLUSTER_TOKEN"
)

// defaultAddr is the peer the client commands ask when neither --addr nor
// QCLUSTER_ADDR says otherwise.
const defaultAddr = "127.0.0.1:7001"

// clientFlagsUsage is the part of every client command's help that
// describes the shared flags.
const clientFlagsUsage = `--addr is a peer's API address (its listen_host:listen_port), or a
comma-separated list: the command asks the first that answers (leave and
metadata act on the one peer they ask and take one address). Default
$QCLUSTER_ADDR, else 127.0.0.1:7001. --token is the cluster's api_token,
needed by the commands that change the cluster (transfer, resign, join,
remove, leave, metadata set, kv put and del, lock), and by every command
when the peers protect reads; default $QCLUSTER_TOKEN.

` + clientTLSUsage + `
Exit codes: 0 success, 1 failure (no peer reachable, no leader, refused),
2 usage error.
`

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr    string
	token   string
	timeout time.Duration
	output  string
	tls     tlsFlags
}

// register adds --addr, --token, the TLS flags (--cacert, --cert, --key,
// --cluster-key) and --timeout to fs, and -o/--output when the command has
// a JSON form.
func (f *clientFlags) register(fs *flag.FlagSet, timeout, output bool) {
	addr := os.Getenv(envAddr)
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&f.addr, "addr", addr, "peer API `address`es, comma-separated (env "+envAddr+")")
	// The token's default is read after parsing, so that help never
	// prints it.
	fs.StringVar(&f.token, "token", "", "API `token` (the peers' api_token; default $"+envToken+")")
	f.tls.register(fs)
	if timeout {
		fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up after this long")
	}
	if output {
		fs.StringVar(&f.output, "o", "text", "output `format`: text or json")
		fs.StringVar(&f.output, "output", "text", "output `format`: text or json (same as -o)")
	}
}

// client checks the flags and returns a client for them.
func (f *clientFlags) client(cmd string) (*client.Client, error) {
	if f.token == "" {
		f.token = os.Getenv(envToken)
	}
	switch f.output {
	case "", "text", "json":
	default:
		return nil, usageErrorf(cmd, "%s: -o %q: use text or json", cmd, f.output)
	}
	var addrs []string
	for _, a := range strings.Split(f.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, usageErrorf(cmd, "%s: --addr is empty; give a peer's address such as %s", cmd, defaultAddr)
	}
	tlsCfg, err := f.tls.config(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithOptions(client.Options{Token: f.token, Timeout: f.timeout, TLS: tlsCfg}, addrs...)
	if err != nil {
		return nil, usageErrorf(cmd, "%s: --addr: %s", cmd, strings.TrimPrefix(err.Error(), "qcluster client: "))
	}
	return c, nil
}

// oneAddr checks that --addr names one peer, for the commands that act on
// the peer they ask (moving on to another address would change another
// peer).
func (f *clientFlags) oneAddr(cmd string) error {
	var n int
	for _, a := range strings.Split(f.addr, ",") {
		if strings.TrimSpace(a) != "" {
			n++
		}
	}
	if n > 1 {
		return usageErrorf(cmd, "%s: --addr (or $%s) names %d peers, %q; %s acts on the one peer it asks: give that peer's address alone", cmd, envAddr, n, f.addr, cmd)
	}
	return nil
}

// json reports whether the output is JSON.
func (f *clientFlags) json() bool { return f.output == "json" }

// parseArgs parses a command's flags, which may come before, between or
// after its positional arguments (at most maxArgs of them). Like
// parseFlags, it prints help and returns errHelp when asked for, and
// returns a *UsageError for anything wrong.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer, usage string, maxArgs int) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, errHelp
		case err != nil:
			return nil, flagError(fs, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...) // after "--", everything is an argument
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) > maxArgs {
		return nil, usageErrorf(fs.Name(), "%s: unexpected argument %q", fs.Name(), pos[maxArgs])
	}
	return pos, nil
}

// clientError turns an error from the client into a message for people.
func clientError(err error, c *client.Client) error {
	e := clientErrorText(err, c)
	if hint := tlsHint(err, strings.HasPrefix(c.Addr(), "https://")); hint != "" {
		return fmt.Errorf("%s; %s", strings.TrimRight(e.Error(), "."), hint)
	}
	return e
}

// clientErrorText is clientError without the TLS advice.
func clientErrorText(err error, c *client.Client) error {
	var ae *client.APIError
	switch {
	case errors.Is(err, client.ErrUnreachable):
		return fmt.Errorf("cannot reach any peer: %s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), client.ErrUnreachable.Error()), ": "))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer in time from %s: %w", c.Addr(), err)
	case errors.Is(err, client.ErrUnauthorized):
		return fmt.Errorf("unauthorized: %s needs the cluster's API token (api_token); give it with --token or %s", addrOf(err), envToken)
	case errors.Is(err, client.ErrNoLeader):
		return fmt.Errorf("no leader: %s knows no leader (no majority of the peers is reachable, or an election is in progress)", addrOf(err))
	case errors.As(err, &ae):
		msg := ae.Message
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", ae.Status)
		}
		return fmt.Errorf("%s: %s", ae.Addr, msg)
	}
	return err
}

// addrOf returns the address of the peer that gave an *APIError.
func addrOf(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Addr
	}
	return "the peer"
}

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// peerAddr is a peer's host:port.
func peerAddr(p api.Peer) string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// metadataText shows metadata as compact JSON ("-" when there is none).
func metadataText(m map[string]any) string {
	if len(m) == 0 {
		return "-"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprint(m)
	}
	return string(b)
}

// baseHost shows a client base URL without "http://".
func baseHost(base string) string {
	if u, err := url.Parse(base); err == nil && u.Scheme == "http" && u.Path == "" {
		return u.Host
	}
	return base
}

// printMembers writes members as a table.
func printMembers(w io.Writer, members []api.Member) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTIFIER\tADDRESS\tROLE\tSTATE\tSELF\tMETADATA")
	for _, m := range members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Identifier, peerAddr(m.Peer), memberRole(m), orDash(m.State), yesNo(m.IsSelf), metadataText(m.Metadata))
	}
	return tw.Flush()
}

// memberRole is m's role, or, from a peer that does not report roles,
// what its flags say.
func memberRole(m api.Member) string {
	switch {
	case m.Role != "":
		return m.Role
	case m.IsLeader:
		return "leader"
	case m.Voter:
		return "follower"
	}
	return "learner"
}

// orDash returns s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
