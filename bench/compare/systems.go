package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/benchkit"
	"github.com/qcluster/qcluster/internal/proccluster"
)

// The systems -systems can name, in the order of the table.
const (
	sysQCluster    = "qcluster"
	sysEtcd        = "etcd"
	sysEtcdDefault = "etcd-default"
	sysHraft       = "hraft"
)

var allSystems = []string{sysQCluster, sysEtcd, sysEtcdDefault, sysHraft}

// Timings of the measured systems.
const (
	// etcd with QCluster-like timings: --heartbeat-interval 30
	// --election-timeout 150 (ms).
	etcdHeartbeat = 30 * time.Millisecond
	etcdElection  = 150 * time.Millisecond
	// etcd's own defaults, for the etcd-default row.
	etcdDefaultHeartbeat = 100 * time.Millisecond
	etcdDefaultElection  = 1000 * time.Millisecond
	// hraftTimeout is the hraft node's HeartbeatTimeout and
	// ElectionTimeout.
	hraftTimeout = 150 * time.Millisecond
)

// system is one row of the table: how to start its cluster, and its
// results.
type system struct {
	key      string // as named by -systems
	label    string // the table's row label
	settings string // how it runs, one line
	start    func(ctx context.Context, dir string) (cluster, error)

	skipped string // why it has no row ("" when measured)
	failed  error  // why its measurement stopped early
	cl      cluster
	stable  agreement // the latest agreement of all its members

	kills, stops         []time.Duration
	killJumps, stopJumps int // rounds whose new term was more than one above the old
	unprompted           int // leader changes found before a fault, since the previous round
	last                 roundInfo
	idle                 []*idleProc
	idleNote             string
}

// env is what the systems are built from: the harness's temporary
// directory, the HTTP client for status polls, and the output for
// progress messages.
type env struct {
	dir     string
	client  *http.Client
	stderr  io.Writer
	timeout time.Duration // of one status request
	qcBin   string        // -bin, or "" to build ./cmd/qcluster
	etcdBin string        // -etcd, or "" to find (or install) etcd

	// etcd found (or installed) once for both etcd rows.
	etcdOnce sync.Once
	etcd     struct {
		bin, version string
		err          error
	}
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // never send loopback polls through a proxy
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

// prepare returns the system named key, ready to start, or with skipped
// set when it cannot run here (the reason).
func (e *env) prepare(ctx context.Context, key string) *system {
	switch key {
	case sysQCluster:
		return e.prepareQCluster(ctx)
	case sysEtcd, sysEtcdDefault:
		return e.prepareEtcd(ctx, key)
	case sysHraft:
		return e.prepareHraft(ctx)
	}
	return &system{key: key, label: key, skipped: "unknown system"}
}

func (e *env) prepareQCluster(ctx context.Context) *system {
	hb, el := qcluster.DefaultHeartbeatInterval, qcluster.DefaultElectionTimeout
	s := &system{
		key:   sysQCluster,
		label: fmt.Sprintf("QCluster agent, defaults %d/%d ms", hb.Milliseconds(), el.Milliseconds()),
	}
	bin, how := e.qcBin, "given with -bin"
	if bin == "" {
		bin, how = filepath.Join(e.dir, "qcluster.bin"), "built from ./cmd/qcluster"
		fmt.Fprintln(e.stderr, "building ./cmd/qcluster ...")
		if err := benchkit.BuildAgent(ctx, bin); err != nil {
			s.skipped = err.Error()
			return s
		}
	}
	s.settings = fmt.Sprintf("qcluster agent (%s), default timings: heartbeat_interval %v, election_timeout %v", how, hb, el)
	s.start = func(ctx context.Context, dir string) (cluster, error) {
		c, err := proccluster.Start(ctx, proccluster.Options{
			Command:        []string{bin, "agent"},
			Peers:          3,
			Dir:            dir,
			RequestTimeout: e.timeout,
			StartTimeout:   30 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		return newQCCluster(c), nil
	}
	return s
}

// findEtcd returns the etcd binary and its version. When etcd is missing
// and the harness runs as root, it installs Debian's etcd-server package
// first.
func (e *env) findEtcd(ctx context.Context) (bin, version string, err error) {
	e.etcdOnce.Do(func() { e.etcd.bin, e.etcd.version, e.etcd.err = benchkit.FindEtcd(ctx, e.etcdBin, e.stderr) })
	return e.etcd.bin, e.etcd.version, e.etcd.err
}

func (e *env) prepareEtcd(ctx context.Context, key string) *system {
	hb, el := etcdHeartbeat, etcdElection
	if key == sysEtcdDefault {
		hb, el = etcdDefaultHeartbeat, etcdDefaultElection
	}
	s := &system{key: key}
	bin, version, err := e.findEtcd(ctx)
	major := "3.4"
	if err == nil {
		major = benchkit.MajorMinor(version)
	}
	if key == sysEtcdDefault {
		s.label = fmt.Sprintf("etcd %s defaults %d/%d ms", major, hb.Milliseconds(), el.Milliseconds())
	} else {
		s.label = fmt.Sprintf("etcd %s, %d/%d ms", major, hb.Milliseconds(), el.Milliseconds())
	}
	if err != nil {
		s.skipped = err.Error()
		return s
	}
	var flags []string
	if key == sysEtcd {
		flags = []string{"--heartbeat-interval", strconv.FormatInt(hb.Milliseconds(), 10), "--election-timeout", strconv.FormatInt(el.Milliseconds(), 10)}
		s.settings = fmt.Sprintf("etcd %s (%s) %s", version, bin, strings.Join(flags, " "))
	} else {
		s.settings = fmt.Sprintf("etcd %s (%s), its defaults: heartbeat %v, election timeout %v", version, bin, hb, el)
	}
	s.start = func(ctx context.Context, dir string) (cluster, error) {
		return e.startEtcd(ctx, bin, key, dir, flags)
	}
	return s
}

// startEtcd starts 3 etcd members on loopback.
func (e *env) startEtcd(ctx context.Context, bin, token, dir string, flags []string) (cluster, error) {
	members, err := benchkit.EtcdCluster(bin, dir, "compare-"+token, 3, flags)
	if err != nil {
		return nil, err
	}
	ids := &etcdIDs{byID: map[uint64]string{}}
	c := &procCluster{}
	for _, m := range members {
		c.ms = append(c.ms, &procMember{
			name:         m.Name,
			args:         m.Args,
			env:          m.Env,
			logPath:      filepath.Join(dir, m.Name+".log"),
			view:         e.etcdView(m.ClientURL, m.Name, ids),
			startTimeout: 30 * time.Second,
		})
	}
	if err := c.startAll(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// etcdIDs maps etcd's member IDs (which the status names the leader by)
// to member names; every member reports its own ID.
type etcdIDs struct {
	mu   sync.Mutex
	byID map[uint64]string
}

// etcdView returns the view function of the member with client URL url:
// POST /v3/maintenance/status (the gRPC gateway), answered locally by the
// member without a round through the leader.
func (e *env) etcdView(url, name string, ids *etcdIDs) func(context.Context) (view, error) {
	return func(ctx context.Context) (view, error) {
		body, err := e.request(ctx, http.MethodPost, url+"/v3/maintenance/status", []byte("{}"))
		if err != nil {
			return view{}, err
		}
		st, err := benchkit.ParseEtcdStatus(body)
		if err != nil {
			return view{}, fmt.Errorf("%s: %w", name, err)
		}
		ids.mu.Lock()
		defer ids.mu.Unlock()
		ids.byID[st.Self] = name
		v := view{Term: st.Term, IsLeader: st.Leader != 0 && st.Leader == st.Self}
		if st.Leader != 0 {
			v.Leader = ids.byID[st.Leader]
			if v.Leader == "" {
				v.Leader = fmt.Sprintf("etcd member %x", st.Leader)
			}
		}
		return v, nil
	}
}

// request does one HTTP request with the status timeout and returns the
// body of a 200 answer.
func (e *env) request(ctx context.Context, method, url string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func (e *env) prepareHraft(ctx context.Context) *system {
	s := &system{key: sysHraft}
	modDir, err := benchkit.ModuleDir(ctx)
	version := "?"
	if err == nil {
		version = hraftVersion(filepath.Join(modDir, "bench", "hraft", "go.mod"))
	}
	s.label = fmt.Sprintf("hashicorp/raft %s, %d ms", benchkit.MajorMinor(strings.TrimPrefix(version, "v")), hraftTimeout.Milliseconds())
	if err != nil {
		s.skipped = err.Error()
		return s
	}
	bin := filepath.Join(e.dir, "hraft.bin")
	fmt.Fprintln(e.stderr, "building bench/hraft ...")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(modDir, "bench", "hraft")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.skipped = fmt.Sprintf("go build in bench/hraft: %v: %s", err, benchkit.Tail(out, 5))
		return s
	}
	s.settings = fmt.Sprintf("bench/hraft: hashicorp/raft %s, raft-boltdb, TCP transport; HeartbeatTimeout = ElectionTimeout = %v, LeaderLeaseTimeout %v",
		version, hraftTimeout, hraftTimeout/2)
	s.start = func(ctx context.Context, dir string) (cluster, error) {
		return e.startHraft(ctx, bin, dir)
	}
	return s
}

// hraftVersion reads the version of github.com/hashicorp/raft that the
// hraft module requires.
func hraftVersion(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "?"
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/hashicorp/raft\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		return "?"
	}
	return string(m[1])
}

// startHraft starts 3 hraft nodes on loopback.
func (e *env) startHraft(ctx context.Context, bin, dir string) (cluster, error) {
	const host = "127.0.0.1"
	ports, err := proccluster.FreePorts(host, 6)
	if err != nil {
		return nil, err
	}
	names := []string{"hraft_a", "hraft_b", "hraft_c"}
	var peers []string
	for i, n := range names {
		peers = append(peers, n+"="+net.JoinHostPort(host, strconv.Itoa(ports[2*i])))
	}
	c := &procCluster{}
	for i, n := range names {
		statusURL := "http://" + net.JoinHostPort(host, strconv.Itoa(ports[2*i+1])) + "/status"
		c.ms = append(c.ms, &procMember{
			name: n,
			args: []string{bin,
				"-id", n,
				"-raft", net.JoinHostPort(host, strconv.Itoa(ports[2*i])),
				"-http", net.JoinHostPort(host, strconv.Itoa(ports[2*i+1])),
				"-peers", strings.Join(peers, ","),
				"-dir", filepath.Join(dir, n+".data"),
				"-timeout", hraftTimeout.String(),
			},
			logPath:      filepath.Join(dir, n+".log"),
			view:         e.hraftView(statusURL, n),
			startTimeout: 30 * time.Second,
		})
	}
	if err := c.startAll(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// hraftView returns the view function of the hraft node whose status is
// at url (GET, JSON: id, role, leader, term).
func (e *env) hraftView(url, name string) func(context.Context) (view, error) {
	return func(ctx context.Context) (view, error) {
		body, err := e.request(ctx, http.MethodGet, url, nil)
		if err != nil {
			return view{}, err
		}
		var st struct {
			Role   string `json:"role"`
			Leader string `json:"leader"`
			Term   uint64 `json:"term"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return view{}, fmt.Errorf("%s: status: %w", name, err)
		}
		return view{Leader: st.Leader, IsLeader: st.Role == "leader", Term: st.Term}, nil
	}
}
