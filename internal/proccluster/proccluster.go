// Package proccluster runs a QCluster of agent processes on one machine: it
// writes a config file per peer, starts one `qcluster agent` process per
// peer, kills and restarts them, reads their state over the HTTP API
// (GET /v1/status; HTTPS with Options.ClusterKey) and their leadership
// changes from their JSON logs. The
// qcluster demo command, the fail-over benchmark and the tests share it.
//
//	c, err := proccluster.Start(ctx, proccluster.Options{
//		Command: []string{exe, "agent"},
//		Peers:   3,
//		Dir:     dir,
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close() // kills whatever still runs
//	agreed, err := c.WaitAgreed(ctx, c.Peers, 0, nil)
//
// A Cluster kills every process it started when it is closed, and on Linux
// the kernel kills the agents too if the controlling process dies first
// (Pdeathsig). Agents run in their own process group, so a Ctrl-C in the
// terminal reaches only the controlling program.
//
// Files in Options.Dir, per peer: <id>.json (the config), <id>.log (the
// agent's output, appended across restarts) and <id>.data/ (its data_dir).
package proccluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/httpclient"
	"github.com/qcluster/qcluster/internal/pki"
)

// Errors returned by the package, wrapped with %w.
var (
	// ErrNotRunning: the peer has no running process.
	ErrNotRunning = errors.New("proccluster: peer is not running")
	// ErrRunning: the peer already has a running process.
	ErrRunning = errors.New("proccluster: peer is already running")
	// ErrExited: an agent process exited while it was expected to run.
	ErrExited = errors.New("proccluster: agent exited")
	// ErrClosed: the Cluster was closed.
	ErrClosed = errors.New("proccluster: closed")
)

// Options configures a Cluster. Command and Dir are required.
type Options struct {
	// Command runs an agent: the program and the arguments that select its
	// agent mode, such as {"/usr/local/bin/qcluster", "agent"}. The Cluster
	// appends --config <file> --log-format json --log-level <LogLevel>.
	Command []string

	// Peers is the number of peers. Default 3.
	Peers int

	// Host is the address every peer listens on. Default "127.0.0.1".
	Host string

	// Heartbeat and ElectionTimeout are written into every config (as
	// heartbeat_interval and election_timeout). Zero leaves the SDK
	// defaults (50ms and 150ms).
	Heartbeat, ElectionTimeout time.Duration

	// Dir holds the configs, data dirs and logs. It must exist. Required.
	Dir string

	// LogLevel is the agents' --log-level. Default "info".
	LogLevel string

	// Output, when set, receives a copy of every agent's log lines.
	Output io.Writer

	// StartTimeout bounds the wait for a started agent to answer on its
	// port. Default 10s.
	StartTimeout time.Duration

	// Attempts is how many times Start tries again with fresh ports when
	// an agent cannot bind its port (another program took it between the
	// port check and the agent's start). Default 3.
	Attempts int

	// RequestTimeout bounds each HTTP request to an agent. Default 250ms.
	RequestTimeout time.Duration

	// ClusterKey, when set, is written into every config as cluster_key
	// (base64 of 32 bytes, as made by pki.NewClusterKey): the agents then
	// talk TLS to each other and serve their API over HTTPS only, and the
	// Cluster polls them over HTTPS with a client certificate derived from
	// the key. Default: none (plain TCP and HTTP).
	ClusterKey string
}

func (o Options) withDefaults() Options {
	if o.Peers == 0 {
		o.Peers = 3
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 250 * time.Millisecond
	}
	return o
}

// Cluster is a set of agent processes on this machine. Its methods are safe
// for concurrent use.
type Cluster struct {
	// Peers are the cluster's peers, in identifier order. The slice must
	// not be modified.
	Peers []*Peer

	opts   Options
	client *http.Client
	scheme string    // of the agents' API: http, or https with a cluster key
	out    io.Writer // synchronized copy of Options.Output, or nil

	mu     sync.Mutex
	closed bool
}

// Peer is one member of a Cluster and the agent process that runs it (if
// any: a killed peer keeps its identity, config and data for Restart).
type Peer struct {
	// ID is the peer's identifier: server_a, server_b, ...
	ID string
	// Host and Port are the peer's listen address (and HTTP API).
	Host string
	Port int
	// ConfigPath, DataDir and LogPath are the peer's files.
	ConfigPath, DataDir, LogPath string

	c *Cluster

	mu   sync.Mutex
	proc *process // the latest process, running or exited; nil before the first start
}

// process is one run of an agent.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited and been reaped
	state   *os.ProcessState
	err     error // from Wait, when the process could not be waited for
}

// Name returns the identifier of the i-th peer (from 0): server_a, ...,
// server_z, then server_26, server_27, ...
func Name(i int) string {
	if i >= 0 && i < 26 {
		return "server_" + string(rune('a'+i))
	}
	return "server_" + strconv.Itoa(i)
}

// Start writes the configs and starts one agent per peer, on free ports of
// opts.Host, and returns once every agent answers GET /v1/status. It does
// not wait for a leader (see WaitAgreed). If an agent cannot bind its port,
// Start stops them all and tries again with fresh ports, up to
// opts.Attempts times. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts = opts.withDefaults()
	switch {
	case len(opts.Command) == 0:
		return nil, errors.New("proccluster: Options.Command is required")
	case opts.Dir == "":
		return nil, errors.New("proccluster: Options.Dir is required")
	case opts.Peers < 1:
		return nil, fmt.Errorf("proccluster: Options.Peers is %d; need at least 1", opts.Peers)
	}
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	for attempt := 1; attempt <= opts.Attempts; attempt++ {
		err = c.startAll(ctx)
		if err == nil {
			return c, nil
		}
		c.killAll()
		if !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
	}
	c.Close()
	return nil, err
}

// newCluster returns a Cluster for opts (with defaults) without peers.
func newCluster(opts Options) (*Cluster, error) {
	tlsCfg, err := clientTLS(opts.ClusterKey)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		opts:   opts,
		scheme: "http",
		client: httpclient.New(httpclient.Options{
			TLS:                 tlsCfg, // never through a proxy: loopback polls
			DialTimeout:         opts.RequestTimeout,
			MaxIdleConnsPerHost: 4,
			DisableCompression:  true,
		}),
	}
	if tlsCfg != nil {
		c.scheme = "https"
	}
	if opts.Output != nil {
		c.out = &lockedWriter{w: opts.Output}
	}
	return c, nil
}

// clientTLS returns the configuration for polling agents that have
// clusterKey: a client certificate for "proccluster" derived from the key,
// and the agents' certificates verified against the CA the key derives.
// It returns nil without a key.
func clientTLS(clusterKey string) (*tls.Config, error) {
	if clusterKey == "" {
		return nil, nil
	}
	key, err := pki.ParseClusterKey(clusterKey)
	if err != nil {
		return nil, fmt.Errorf("proccluster: Options.ClusterKey: %w", err)
	}
	creds, err := pki.Derive(key, pki.Identity{Identifier: "proccluster"}, nil)
	if err != nil {
		return nil, fmt.Errorf("proccluster: Options.ClusterKey: %w", err)
	}
	return creds.ClientTLS(), nil
}

// errPortTaken marks a start that failed because a port was taken.
var errPortTaken = errors.New("port taken")

// startAll picks ports, writes configs and starts every agent.
func (c *Cluster) startAll(ctx context.Context) error {
	ports, err := FreePorts(c.opts.Host, c.opts.Peers)
	if err != nil {
		return err
	}
	c.Peers = make([]*Peer, c.opts.Peers)
	for i := range c.Peers {
		id := Name(i)
		p := &Peer{
			ID: id, Host: c.opts.Host, Port: ports[i], c: c,
			ConfigPath: filepath.Join(c.opts.Dir, id+".json"),
			DataDir:    filepath.Join(c.opts.Dir, id+".data"),
			LogPath:    filepath.Join(c.opts.Dir, id+".log"),
		}
		// A previous attempt may have left files behind.
		_ = os.RemoveAll(p.DataDir)
		_ = os.Remove(p.LogPath)
		c.Peers[i] = p
	}
	for _, p := range c.Peers {
		if err := p.writeConfig(); err != nil {
			return err
		}
	}
	for _, p := range c.Peers {
		if err := p.spawn(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Peers))
	for i, p := range c.Peers {
		wg.Go(func() { errs[i] = p.waitReady(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fileConfig is the JSON config file of a peer, in QCluster's documented
// format.
type fileConfig struct {
	Identifier        string     `json:"identifier"`
	ListenHost        string     `json:"listen_host"`
	ListenPort        int        `json:"listen_port"`
	Peers             []filePeer `json:"peers"`
	DataDir           string     `json:"data_dir"`
	HeartbeatInterval string     `json:"heartbeat_interval,omitempty"`
	ElectionTimeout   string     `json:"election_timeout,omitempty"`
	ClusterKey        string     `json:"cluster_key,omitempty"`
}

type filePeer struct {
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Identifier string `json:"identifier"`
}

func (p *Peer) writeConfig() error {
	o := p.c.opts
	fc := fileConfig{
		Identifier: p.ID,
		ListenHost: p.Host,
		ListenPort: p.Port,
		DataDir:    p.DataDir,
		ClusterKey: o.ClusterKey,
	}
	if o.Heartbeat != 0 {
		fc.HeartbeatInterval = o.Heartbeat.String()
	}
	if o.ElectionTimeout != 0 {
		fc.ElectionTimeout = o.ElectionTimeout.String()
	}
	for _, q := range p.c.Peers {
		if q != p {
			fc.Peers = append(fc.Peers, filePeer{Host: q.Host, Port: q.Port, Identifier: q.ID})
		}
	}
	b, err := json.MarshalIndent(fc, "", "  ")
	if err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if o.ClusterKey != "" {
		perm = 0o600 // it holds the cluster's secret
	}
	// A fresh file gets perm (WriteFile keeps an existing file's mode).
	if err := os.Remove(p.ConfigPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(p.ConfigPath, append(b, '\n'), perm)
}

// Addr returns the peer's host:port.
func (p *Peer) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// String returns the peer's identifier.
func (p *Peer) String() string { return p.ID }

// spawn starts the peer's agent process without waiting for it to be ready.
func (p *Peer) spawn() error {
	c := p.c
	// Holding c.mu while starting means Close either sees the process (and
	// kills it) or has already refused new ones.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		return fmt.Errorf("%w: %s", ErrRunning, p.ID)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append(append([]string(nil), c.opts.Command[1:]...),
		"--config", p.ConfigPath, "--log-format", "json", "--log-level", c.opts.LogLevel)
	cmd := exec.Command(c.opts.Command[0], args...)
	// The config file is the whole config: QCLUSTER_<FIELD> variables of
	// the caller's environment would override it in every agent alike.
	cmd.Env = agentEnv(os.Environ())
	// Without Output the agent writes to the log file itself; with it, a
	// goroutine of cmd copies the output to both until the agent exits.
	cmd.Stdout, cmd.Stderr = logf, logf
	if c.out != nil {
		w := io.MultiWriter(logf, c.out)
		cmd.Stdout, cmd.Stderr = w, w
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("proccluster: start agent %s: %w", p.ID, err)
	}
	proc := &process{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		proc.state = cmd.ProcessState
		if proc.state == nil {
			proc.err = err
		}
		close(proc.done)
	}()
	p.proc = proc
	return nil
}

func (pr *process) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// current returns the latest process, or nil.
func (p *Peer) current() *process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

// waitReady waits until the peer's agent answers GET /v1/status, or fails
// when it exits first (errPortTaken when it could not bind its port).
func (p *Peer) waitReady(ctx context.Context) error {
	proc := p.current()
	if proc == nil {
		return fmt.Errorf("%w: %s", ErrNotRunning, p.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, p.c.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := p.Status(ctx); err == nil {
			return nil
		}
		select {
		case <-proc.done:
			err := fmt.Errorf("%w: %s (%s) right after it started; its last log lines:\n%s",
				ErrExited, p.ID, proc.describe(), indent(p.LogTail(8), "    "))
			if strings.Contains(p.LogTail(20), "address already in use") {
				err = fmt.Errorf("%w (%w)", err, errPortTaken)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("proccluster: %s did not answer on %s within %v: %w", p.ID, p.Addr(), p.c.opts.StartTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// describe tells how the process ended.
func (pr *process) describe() string {
	switch {
	case pr.err != nil:
		return pr.err.Error()
	case pr.state == nil:
		return "running"
	}
	if ws, ok := pr.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit code " + strconv.Itoa(pr.state.ExitCode())
}

// Running reports whether the peer's agent process is running.
func (p *Peer) Running() bool {
	proc := p.current()
	return proc != nil && !proc.exited()
}

// PID returns the process ID of the peer's latest agent process, or 0.
func (p *Peer) PID() int {
	proc := p.current()
	if proc == nil {
		return 0
	}
	return proc.cmd.Process.Pid
}

// Signal sends sig to the peer's running agent.
func (p *Peer) Signal(sig os.Signal) error {
	proc := p.current()
	if proc == nil || proc.exited() {
		return fmt.Errorf("%w: %s", ErrNotRunning, p.ID)
	}
	if err := proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("proccluster: signal %s: %w", p.ID, err)
	}
	return nil
}

// Kill sends SIGKILL to the peer's agent and waits until the process is
// gone. It returns the instant just before the signal was sent.
func (p *Peer) Kill() (time.Time, error) {
	proc := p.current()
	if proc == nil || proc.exited() {
		return time.Time{}, fmt.Errorf("%w: %s", ErrNotRunning, p.ID)
	}
	at := time.Now()
	if err := proc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return at, fmt.Errorf("proccluster: kill %s: %w", p.ID, err)
	}
	<-proc.done
	return at, nil
}

// Wait waits for the peer's latest agent process to exit and returns its
// state, or ctx's error.
func (p *Peer) Wait(ctx context.Context) (*os.ProcessState, error) {
	proc := p.current()
	if proc == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, p.ID)
	}
	select {
	case <-proc.done:
		return proc.state, proc.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Restart starts the peer's agent again with the same config, port and
// data dir, and waits until it answers on its port. The peer must not be
// running.
func (p *Peer) Restart(ctx context.Context) error {
	if err := p.spawn(); err != nil {
		return err
	}
	if err := p.waitReady(ctx); err != nil {
		if proc := p.current(); proc != nil && !proc.exited() {
			_ = proc.cmd.Process.Kill()
			<-proc.done
		}
		return err
	}
	return nil
}

// Status asks the peer's agent for GET /v1/status, with the cluster's
// request timeout.
func (p *Peer) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	body, err := p.get(ctx, "/v1/status", 1<<20)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s: GET /v1/status: %w", p.ID, err)
	}
	return st, nil
}

// Metric reads a counter or gauge from the peer's GET /metrics: the
// series of family name whose labels include every label-value pair in
// labels (none: the family's first series). A series that is not there
// is an error (a renamed metric must not read as 0).
func (p *Peer) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	body, err := p.get(ctx, "/metrics", 8<<20)
	if err != nil {
		return 0, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%s: GET /metrics: %w", p.ID, err)
	}
series:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue series
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), nil
		}
		return m.GetGauge().GetValue(), nil
	}
	return 0, fmt.Errorf("%s: no %s%v in /metrics", p.ID, name, labels)
}

// get makes a GET request for path to the peer's API (within the
// cluster's RequestTimeout) and returns up to limit bytes of its body; a
// status other than 200 is an error.
func (p *Peer) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.c.scheme+"://"+p.Addr()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET %s: %s: %s", p.ID, path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Events returns the leadership changes the peer's agent logged (see
// LogLeadership), across all of its runs, oldest first.
func (p *Peer) Events() ([]Event, error) {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseEvents(f)
}

// LogTail returns the last n lines of the peer's log ("" if there is none).
func (p *Peer) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Peer returns the peer with identifier id, or nil.
func (c *Cluster) Peer(id string) *Peer {
	for _, p := range c.Peers {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// Running returns the peers whose agent is running.
func (c *Cluster) Running() []*Peer {
	var out []*Peer
	for _, p := range c.Peers {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// Except returns the peers other than the given ones.
func (c *Cluster) Except(skip ...*Peer) []*Peer {
	var out []*Peer
outer:
	for _, p := range c.Peers {
		for _, s := range skip {
			if p == s {
				continue outer
			}
		}
		out = append(out, p)
	}
	return out
}

// PeerStatus is one peer's answer to GET /v1/status, or why there was none.
type PeerStatus struct {
	Peer   *Peer
	Status api.Status
	Err    error
}

// LeaderID returns the identifier of the leader the peer names, or "".
func (s PeerStatus) LeaderID() string {
	if s.Err != nil || s.Status.Leader == nil {
		return ""
	}
	return s.Status.Leader.Identifier
}

// String describes the status in a few words, for error messages.
func (s PeerStatus) String() string {
	if s.Err != nil {
		return fmt.Sprintf("%s: unreachable (%v)", s.Peer.ID, s.Err)
	}
	leader := s.LeaderID()
	if leader == "" {
		leader = "none"
	}
	return fmt.Sprintf("%s: %s, term %d, leader %s", s.Peer.ID, s.Status.Role, s.Status.Term, leader)
}

// Poll asks every given peer for its status, concurrently.
func (c *Cluster) Poll(ctx context.Context, peers []*Peer) []PeerStatus {
	out := make([]PeerStatus, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			st, err := p.Status(ctx)
			out[i] = PeerStatus{Peer: p, Status: st, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Agreement is a moment at which every polled peer named the same leader,
// and the leader, one of them, held its lease.
type Agreement struct {
	// Leader is the agreed leader.
	Leader *Peer
	// Term is the leader's term.
	Term uint64
	// At is when the polls that showed the agreement had all returned.
	At time.Time
	// Statuses are the polled statuses, in the order of the peers asked.
	Statuses []PeerStatus
}

// Status returns the agreement's status of p, or false.
func (a Agreement) Status(p *Peer) (api.Status, bool) {
	for _, s := range a.Statuses {
		if s.Peer == p {
			return s.Status, true
		}
	}
	return api.Status{}, false
}

// agreement reports whether sts show an agreed leader among their peers.
func agreement(sts []PeerStatus) (Agreement, bool) {
	if len(sts) == 0 {
		return Agreement{}, false
	}
	lead := sts[0].LeaderID()
	if lead == "" {
		return Agreement{}, false
	}
	a := Agreement{Statuses: sts}
	for _, s := range sts {
		if s.LeaderID() != lead {
			return Agreement{}, false
		}
		if s.Peer.ID == lead {
			if !s.Status.IsLeader {
				return Agreement{}, false
			}
			a.Leader, a.Term = s.Peer, s.Status.Term
		}
	}
	return a, a.Leader != nil
}

// WaitAgreed polls the given peers every interval (default 5ms) until they
// all name the same leader, the leader is one of them and holds its lease,
// and accept (if not nil) accepts the agreement. It returns ctx's error,
// with the last statuses seen, when ctx ends first.
func (c *Cluster) WaitAgreed(ctx context.Context, peers []*Peer, interval time.Duration, accept func(Agreement) bool) (Agreement, error) {
	if interval <= 0 {
		interval = 5 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []PeerStatus
	for {
		last = c.Poll(ctx, peers)
		if a, ok := agreement(last); ok {
			a.At = time.Now()
			if accept == nil || accept(a) {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, s := range last {
				b.WriteString("\n    ")
				b.WriteString(s.String())
			}
			return Agreement{}, fmt.Errorf("proccluster: no agreed leader: %w; last statuses:%s", ctx.Err(), b.String())
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to every running agent and waits for them to exit;
// agents still running when ctx ends are killed. It returns an error naming
// every agent that did not exit with code 0.
func (c *Cluster) Stop(ctx context.Context) error {
	running := c.Running()
	for _, p := range running {
		_ = p.Signal(syscall.SIGTERM)
	}
	var errs []error
	for _, p := range running {
		proc := p.current()
		select {
		case <-proc.done:
		case <-ctx.Done():
			_ = proc.cmd.Process.Kill()
			<-proc.done
			errs = append(errs, fmt.Errorf("proccluster: %s did not stop after SIGTERM; killed it", p.ID))
			continue
		}
		if proc.state == nil || proc.state.ExitCode() != 0 {
			errs = append(errs, fmt.Errorf("proccluster: %s stopped with %s", p.ID, proc.describe()))
		}
	}
	return errors.Join(errs...)
}

// killAll kills every running agent and waits for them.
func (c *Cluster) killAll() {
	for _, p := range c.Peers {
		if proc := p.current(); proc != nil && !proc.exited() {
			_ = proc.cmd.Process.Kill()
			<-proc.done
		}
	}
}

// Close kills every agent that still runs and waits for them. Files are
// left in Options.Dir. Close is safe to call more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.killAll()
	c.client.CloseIdleConnections()
}

// SysProcAttr returns the attributes the Cluster starts its agents with:
// a process group of their own and, on Linux, SIGKILL from the kernel if
// the controlling program dies. Programs that start other cluster members
// the same way (the comparison benchmark) use it too.
func SysProcAttr() *syscall.SysProcAttr { return sysProcAttr() }

// FreePorts returns n distinct ports on host that are free for both TCP and
// UDP right now (QCluster uses both on its one port). Another program may
// take them before they are used; Start retries when that happens.
func FreePorts(host string, n int) ([]int, error) {
	var (
		ports   []int
		closers []io.Closer
	)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10*n+10 {
			return nil, fmt.Errorf("proccluster: could not find %d free ports on %s", n, host)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("proccluster: find a free port: %w", err)
		}
		closers = append(closers, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // the UDP side is taken: keep the TCP one bound and try another
		}
		closers = append(closers, pc)
		ports = append(ports, port)
	}
	return ports, nil
}

// lockedWriter serializes writes from several agents' output copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func indent(s, prefix string) string {
	if s == "" {
		return prefix + "(no output)"
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	var b strings.Builder
	for sc.Scan() {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(prefix)
		b.WriteString(sc.Text())
	}
	return b.String()
}

// agentEnv returns environ without the variables that set config fields
// (qcluster.ConfigFields).
func agentEnv(environ []string) []string {
	fields := map[string]bool{}
	for _, f := range qcluster.ConfigFields() {
		fields[f.Env] = true
	}
	var out []string
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); !fields[k] {
			out = append(out, kv)
		}
	}
	return out
}
