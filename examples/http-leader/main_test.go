package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
)

// TestConfigFiles checks that the shipped configs load and agree.
func TestConfigFiles(t *testing.T) {
	for _, name := range []string{"server_a", "server_b", "server_c"} {
		cfg, err := qcluster.LoadConfig(name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := serverPort(cfg.Metadata); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for _, p := range cfg.Peers {
			if _, err := serverPort(p.Metadata); err != nil {
				t.Errorf("%s: peer %s: %v", name, p.Identifier, err)
			}
		}
	}
}

func TestServerPort(t *testing.T) {
	for _, md := range []map[string]any{nil, {"server_port": "8001"}, {"server_port": 1.5}, {"server_port": 0.0}, {"server_port": 70000.0}} {
		if p, err := serverPort(md); err == nil {
			t.Errorf("serverPort(%v) = %s, want an error", md, p)
		}
	}
	if p, err := serverPort(map[string]any{"server_port": 8001.0}); err != nil || p != "8001" {
		t.Errorf("serverPort(8001) = %s, %v", p, err)
	}
}

// exampleProc is one running http-leader process.
type exampleProc struct {
	id            string
	apiPort, port int
	cmd           *exec.Cmd
	log           *lockedBuffer // its stdout and stderr
	done          chan struct{} // closed when it has exited
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePorts returns n distinct TCP ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// buildExample builds this example (with the race detector when the test
// has it) and returns the binary's path.
func buildExample(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build the example")
	}
	bin := filepath.Join(t.TempDir(), "http-leader")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// startExample writes a config per peer and starts the three processes.
func startExample(t *testing.T, bin string) []*exampleProc {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 6)
	ids := []string{"server_a", "server_b", "server_c"}
	procs := make([]*exampleProc, 3)
	for i, id := range ids {
		procs[i] = &exampleProc{id: id, apiPort: ports[i], port: ports[3+i]}
	}
	for i, p := range procs {
		var peers []qcluster.PeerConfig
		for j, o := range procs {
			if j != i {
				peers = append(peers, qcluster.PeerConfig{Host: "127.0.0.1", Port: o.apiPort, Identifier: o.id,
					Metadata: map[string]any{"server_port": o.port}})
			}
		}
		cfg := qcluster.Config{Identifier: p.id, ListenHost: "127.0.0.1", ListenPort: p.apiPort,
			Metadata: map[string]any{"server_port": p.port}, Peers: peers, DataDir: filepath.Join(dir, p.id)}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, p.id+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p.log = &lockedBuffer{}
		p.cmd = exec.Command(bin, path)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.done = make(chan struct{})
		go func() {
			p.cmd.Wait()
			close(p.done)
		}()
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.done
			if t.Failed() {
				t.Logf("--- %s's output:\n%s", p.id, p.log)
			}
		}
	})
	return procs
}

// leaderOf asks each running process for the leader and returns the one
// they all name, or nil.
func leaderOf(procs []*exampleProc, hc *http.Client) *exampleProc {
	var named string
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		default:
		}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/leader", p.apiPort))
		if err != nil {
			return nil
		}
		var l api.Peer
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || (named != "" && l.Identifier != named) {
			return nil
		}
		named = l.Identifier
	}
	for _, p := range procs {
		if p.id == named {
			return p
		}
	}
	return nil
}

func waitLeader(t *testing.T, procs []*exampleProc, hc *http.Client, not *exampleProc) *exampleProc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l := leaderOf(procs, hc); l != nil && l != not {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatal("the example's peers agreed on no leader within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// curl fetches url following redirects, with curl when it is installed
// and with Go's client (which follows 307 too) otherwise.
func curl(t *testing.T, url string) (string, error) {
	t.Helper()
	if path, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(path, "-sS", "-L", "--fail", "--max-time", "5", url).CombinedOutput()
		return string(out), err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(b), err
}

func TestExampleEndToEnd(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("signals the example's processes with SIGTERM")
	}
	bin := buildExample(t)
	procs := startExample(t, bin)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	leader := waitLeader(t, procs, hc, nil)
	var follower *exampleProc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	// Wait until the follower's HTTP server is up as well.
	url := fmt.Sprintf("http://127.0.0.1:%d/some/path?x=1", follower.port)
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	for {
		var err error
		if resp, err = hc.Get(url); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower's HTTP server did not come up: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	want := fmt.Sprintf("http://127.0.0.1:%d/some/path?x=1", leader.port)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("the follower answered %s, Location %q; want 307 to %s", resp.Status, resp.Header.Get("Location"), want)
	}
	body, err := curl(t, url)
	if err != nil || body != "hello from "+leader.id+"\n" {
		t.Fatalf("curl -L %s: %q, %v; want hello from %s", url, body, err, leader.id)
	}
	t.Logf("curl -L the follower %s: %q", follower.id, body)

	// Kill the leader (SIGKILL): the survivors elect another, and curl
	// through any survivor reaches it.
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	next := waitLeader(t, procs, hc, leader)
	elected := time.Since(killed)
	for _, p := range procs {
		if p == leader {
			continue
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", p.port)
		body, err := curl(t, url)
		if err != nil || body != "hello from "+next.id+"\n" {
			t.Fatalf("after the kill, curl -L %s (%s): %q, %v; want hello from %s", url, p.id, body, err, next.id)
		}
	}
	t.Logf("killed %s; %s leads, agreed %v after the kill; curl -L through both survivors reaches it", leader.id, next.id, elected)

	// SIGTERM the new leader: it hands leadership over, then exits 0.
	if err := next.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit within 10s of SIGTERM", next.id)
	}
	if code := next.cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(next.log.String(), "could not hand leadership over") {
		t.Fatalf("%s exited with %d after SIGTERM:\n%s", next.id, code, next.log)
	}
	// The last peer, alone, has no majority: it answers 503.
	var last *exampleProc
	for _, p := range procs {
		if p != leader && p != next {
			last = p
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", last.port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last peer alone did not answer 503: %v %v", resp, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
