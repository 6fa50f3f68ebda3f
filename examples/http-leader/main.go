// Command http-leader is the seed's HTTP example in Go: every peer runs
// QCluster and an HTTP server on the server_port of its metadata. The
// leader answers "hello from <identifier>"; a follower redirects (307) to
// the leader's host and server_port; with no leader elected, a peer answers
// 503 with Retry-After. So with three peers running, `curl -L` reaches the
// leader through any of them, and keeps reaching a leader after the leader
// is killed.
//
// Run one per terminal, from the repository root:
//
//	go run ./examples/http-leader examples/http-leader/server_a.json
//	go run ./examples/http-leader examples/http-leader/server_b.json
//	go run ./examples/http-leader examples/http-leader/server_c.json
//
//	curl -L localhost:8002/
//
// Ctrl-C (or SIGTERM) stops a peer; a leader first hands leadership over,
// so its followers redirect to the new leader at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/qcluster/qcluster"
)

func main() {
	config := flag.String("config", "", "the peer's config file (e.g. examples/http-leader/server_a.json)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: http-leader -config <config.json>   (e.g. examples/http-leader/server_a.json)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *config == "" && flag.NArg() == 1 {
		*config = flag.Arg(0) // the seed's form: http-leader <config.json>
	} else if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *config == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string) error {
	cfg, err := qcluster.LoadConfig(path)
	if err != nil {
		return err
	}
	port, err := serverPort(cfg.Metadata)
	if err != nil {
		return fmt.Errorf("%s: metadata: %w", path, err)
	}
	cluster, err := qcluster.New(cfg)
	if err != nil {
		return err
	}
	if err := cluster.Start(ctx); err != nil {
		return err
	}
	defer cluster.Close()

	addr := net.JoinHostPort(cfg.ListenHost, port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on server_port: %w", err)
	}
	srv := &http.Server{Handler: handler(cluster), ReadHeaderTimeout: 5 * time.Second}
	slog.Info("serving HTTP", "peer", cfg.Identifier, "addr", addr)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	slog.Info("stopping", "peer", cfg.Identifier)
	if cluster.IsLeader() {
		// Hand over now rather than let the followers wait an election
		// timeout for the lease to run out.
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		// ErrNotLeader: leadership was lost meanwhile (other peers stop
		// too, say); nothing to hand over.
		if err := cluster.Resign(rctx); err != nil && !errors.Is(err, qcluster.ErrNotLeader) {
			slog.Warn("could not hand leadership over", "err", err)
		}
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// handler answers on the leader and redirects to it from a follower.
func handler(c *qcluster.Cluster) http.Handler {
	self := c.Self().Identifier
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.IsLeader() {
			fmt.Fprintf(w, "hello from %s\n", self)
			return
		}
		leader, ok := c.Leader()
		if !ok {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "no leader is elected right now (an election is in progress, or no majority of the peers is reachable); retry in a moment", http.StatusServiceUnavailable)
			return
		}
		port, err := serverPort(leader.Metadata)
		if err != nil {
			http.Error(w, fmt.Sprintf("the leader %s has no usable server_port in its metadata: %v", leader.Identifier, err), http.StatusBadGateway)
			return
		}
		to := url.URL{Scheme: "http", Host: net.JoinHostPort(leader.Host, port), Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		// 307 keeps the method and body of the request.
		http.Redirect(w, r, to.String(), http.StatusTemporaryRedirect)
	})
}

// serverPort reads "server_port" from a peer's metadata (a JSON number).
func serverPort(md map[string]any) (string, error) {
	var n int
	switch v := md["server_port"].(type) {
	case float64:
		n = int(v)
		if float64(n) != v {
			return "", fmt.Errorf("server_port %v is not a whole number", v)
		}
	case int:
		n = v
	case nil:
		return "", errors.New(`no server_port; add "metadata": {"server_port": 8001}`)
	default:
		return "", fmt.Errorf("server_port %v is not a number", v)
	}
	if n < 1 || n > 65535 {
		return "", fmt.Errorf("server_port %d is out of range (1-65535)", n)
	}
	return strconv.Itoa(n), nil
}
