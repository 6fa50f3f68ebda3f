package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/client"
)

const kvUsage = `Usage: qcluster kv get KEY [--stale] [--prefix] [-o text|json]
       qcluster kv put KEY [VALUE] [--cas REV] [--ephemeral] [-o text|json]
       qcluster kv del KEY [--cas REV] [-o text|json]
       qcluster kv ls [PREFIX] [--stale] [-o text|json]
       qcluster kv watch [KEY] [--prefix] [--from REV] [-o text|json]

Reads and changes the cluster's replicated key-value store (leader mode),
through the HTTP API (/v1/kv/..., /v1/kv-watch).

get prints the key's value (-o json: the key with its revisions, the value
in base64); with --prefix, KEY is a prefix and every key under it is
printed as KEY=VALUE. A missing key is exit code 1. Reads are linearizable;
--stale reads the answering peer's own copy (no leader needed, maybe
behind).

put sets the key to VALUE, or, without VALUE (or with "-"), to what it
reads from stdin, and prints the new revision. --cas REV changes the key
only if its mod revision is REV (--cas 0: only if it does not exist);
else exit code 1 and the key's revision now. --ephemeral binds the key to
the member of the peer asked: it goes when that member leaves or is
removed.

del deletes the key (--cas REV as for put). ls lists the keys under PREFIX
(all keys without one) with their revisions and owners.

watch prints every change of the key (or, with --prefix, of every key
under it; without KEY, of all keys) as it happens, from revision --from
(default: the changes after now), until Ctrl-C: "REV put KEY VALUE" or
"REV delete KEY" (-o json: one KVEvent per line). No change is lost when
the connection breaks; if the history to go on from is gone it says so and
exits with code 1.

Examples:

	qcluster kv put config/db postgres://db1:5432/app
	qcluster kv get config/db
	echo -n 'v2' | qcluster kv put --cas 7 config/db
	qcluster kv put --ephemeral services/web/$(hostname) 10.0.0.5:8080
	qcluster kv ls services/
	qcluster kv watch --prefix services/

` + clientFlagsUsage + `
Flags:
`

// KVCommand is "qcluster kv".
type KVCommand struct {
	// Stdin is read by "kv put" without a VALUE.
	Stdin io.Reader
	// Stdout receives the results, and help when asked for.
	Stdout io.Writer
	// Stderr is not used; errors are returned.
	Stderr io.Writer
}

// casFlag is --cas: unset, or a revision.
type casFlag struct {
	set bool
	rev uint64
}

func (f *casFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatUint(f.rev, 10)
}

func (f *casFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a revision; give the key's mod revision, or 0 for a key that must not exist", s)
	}
	f.set, f.rev = true, n
	return nil
}

// kvActions are the actions of "qcluster kv".
var kvActions = []string{"get", "put", "del", "ls", "watch"}

// Run parses args and runs the action.
func (c *KVCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kv", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, true)
	var cas casFlag
	fs.Var(&cas, "cas", "change only if the key's mod `revision` is this (0: only if absent)")
	ephemeral := fs.Bool("ephemeral", false, "put: bind the key to the member of the peer asked")
	prefix := fs.Bool("prefix", false, "get, watch: KEY is a prefix: every key under it")
	stale := fs.Bool("stale", false, "get, ls: read the peer's own copy (no leader needed)")
	from := fs.Uint64("from", 0, "watch: the `revision` to start from (default: the changes after now)")
	pos, err := parseArgs(fs, args, c.Stdout, kvUsage, 3)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(pos) == 0 {
		return usageErrorf("kv", "kv: name an action: get, put, del, ls or watch")
	}
	action, rest := pos[0], pos[1:]
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	allowed := map[string][]string{
		"get": {"prefix", "stale"}, "put": {"cas", "ephemeral"}, "del": {"cas"},
		"ls": {"stale"}, "watch": {"prefix", "from"},
	}
	own, ok := allowed[action]
	if !ok {
		return usageErrorf("kv", "kv: unknown action %q; use get, put, del, ls or watch", action)
	}
	for _, name := range []string{"cas", "ephemeral", "prefix", "stale", "from"} {
		if set[name] && !slices.Contains(own, name) {
			return usageErrorf("kv", "kv %s: --%s does not apply (it goes with %s)", action, name, users(allowed, name))
		}
	}
	need := func(n, most int, what string) error {
		if len(rest) < n {
			return usageErrorf("kv", "kv %s: %s", action, what)
		}
		if len(rest) > most {
			return usageErrorf("kv", "kv %s: unexpected argument %q", action, rest[most])
		}
		return nil
	}
	switch action {
	case "get":
		err = need(1, 1, "name the KEY (with --prefix, a prefix)")
	case "put":
		err = need(1, 2, "name the KEY, then the VALUE (or give it on stdin)")
	case "del":
		err = need(1, 1, "name the KEY")
	case "ls", "watch":
		err = need(0, 1, "")
	}
	if err != nil {
		return err
	}
	var value []byte
	if action == "put" {
		if value, err = c.value(rest); err != nil {
			return err
		}
	}
	cl, err := f.client("kv")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()
	kv := cl.KV()
	arg := ""
	if len(rest) > 0 {
		arg = rest[0]
	}
	var ropts []client.ReadOption
	if *stale {
		ropts = append(ropts, client.Stale())
	}
	var wopts []client.WriteOption
	if cas.set {
		wopts = append(wopts, client.IfModRevision(cas.rev))
	}
	if *ephemeral {
		wopts = append(wopts, client.Ephemeral())
	}
	switch action {
	case "get":
		return c.get(ctx, cl, kv, arg, *prefix, ropts, f.json())
	case "put":
		res, err := kv.Put(ctx, arg, value, wopts...)
		if err != nil {
			return kvError(err, cl, arg)
		}
		if f.json() {
			return writeJSON(c.Stdout, res)
		}
		_, err = fmt.Fprintf(c.Stdout, "put %s: revision %d\n", arg, res.Revision)
		return err
	case "del":
		res, err := kv.Delete(ctx, arg, wopts...)
		if err != nil {
			return kvError(err, cl, arg)
		}
		if f.json() {
			return writeJSON(c.Stdout, res)
		}
		_, err = fmt.Fprintf(c.Stdout, "deleted %s: revision %d\n", arg, res.Revision)
		return err
	case "ls":
		list, err := kv.List(ctx, arg, ropts...)
		if err != nil {
			return kvError(err, cl, arg)
		}
		if f.json() {
			return writeJSON(c.Stdout, list)
		}
		tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tMOD_REVISION\tVERSION\tSIZE\tOWNER")
		for _, k := range list.KVs {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", k.Key, k.ModRevision, k.Version, len(k.Value), orDash(k.Owner))
		}
		return tw.Flush()
	}
	return c.watch(ctx, cl, kv, arg, *prefix || arg == "", *from, f.json())
}

// value is the value of "kv put": the argument, or stdin.
func (c *KVCommand) value(rest []string) ([]byte, error) {
	if len(rest) == 2 && rest[1] != "-" {
		return []byte(rest[1]), nil
	}
	in := c.Stdin
	if in == nil {
		in = os.Stdin
	}
	b, err := io.ReadAll(io.LimitReader(in, api.MaxValueSize+1))
	if err != nil {
		return nil, fmt.Errorf("kv put: reading the value from stdin: %w", err)
	}
	if len(b) > api.MaxValueSize {
		return nil, usageErrorf("kv", "kv put: the value on stdin is larger than %d bytes", api.MaxValueSize)
	}
	return b, nil
}

func (c *KVCommand) get(ctx context.Context, cl *client.Client, kv *client.KV, key string, prefix bool, opts []client.ReadOption, asJSON bool) error {
	if prefix {
		list, err := kv.List(ctx, key, opts...)
		if err != nil {
			return kvError(err, cl, key)
		}
		if asJSON {
			return writeJSON(c.Stdout, list)
		}
		for _, k := range list.KVs {
			if _, err := fmt.Fprintf(c.Stdout, "%s=%s\n", k.Key, k.Value); err != nil {
				return err
			}
		}
		return nil
	}
	k, err := kv.Get(ctx, key, opts...)
	if err != nil {
		return kvError(err, cl, key)
	}
	if asJSON {
		return writeJSON(c.Stdout, k)
	}
	_, err = fmt.Fprintf(c.Stdout, "%s\n", k.Value)
	return err
}

// watch prints the changes until ctx ends (nil) or the watch ends.
func (c *KVCommand) watch(ctx context.Context, cl *client.Client, kv *client.KV, key string, prefix bool, from uint64, asJSON bool) error {
	events, err := kv.Watch(ctx, key, from)
	if err != nil {
		return kvError(err, cl, key)
	}
	for ev := range events {
		if ev.Err != nil {
			return kvError(ev.Err, cl, key)
		}
		if !prefix && ev.KV.Key != key {
			continue
		}
		if asJSON {
			err = writeJSON(c.Stdout, ev.KVEvent)
		} else if ev.Type == api.KVEventPut {
			_, err = fmt.Fprintf(c.Stdout, "%d put %s %s\n", ev.Revision, ev.KV.Key, ev.KV.Value)
		} else {
			_, err = fmt.Fprintf(c.Stdout, "%d %s %s\n", ev.Revision, ev.Type, ev.KV.Key)
		}
		if err != nil {
			return err
		}
	}
	return nil // ctx ended: Ctrl-C
}

// kvError turns an error of the KV store into a message for people.
func kvError(err error, cl *client.Client, key string) error {
	var ae *client.APIError
	var ce *client.CompactedError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("the changes to go on from are no longer kept (the oldest revision kept is %d): read the keys again and watch from their revision", ce.Oldest)
	case errors.Is(err, client.ErrKeyNotFound):
		return fmt.Errorf("key not found: %s", key)
	case errors.Is(err, client.ErrCompareFailed) && errors.As(err, &ae):
		if ae.KV == nil {
			return fmt.Errorf("compare failed: %s does not exist", key)
		}
		return fmt.Errorf("compare failed: the mod revision of %s is %d", key, ae.KV.ModRevision)
	case errors.Is(err, client.ErrQuota):
		return fmt.Errorf("the KV store is full: %s", addrMessage(err))
	case errors.Is(err, client.ErrUnsupported):
		return fmt.Errorf("%s has no KV store (is the cluster in leader mode, and the peer recent?)", addrOf(err))
	}
	return clientError(err, cl)
}

// addrMessage is an *APIError's message.
func addrMessage(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// users lists the actions that take flag name.
func users(allowed map[string][]string, name string) string {
	var out string
	for _, a := range kvActions {
		if slices.Contains(allowed[a], name) {
			if out != "" {
				out += ", "
			}
			out += a
		}
	}
	return out
}
