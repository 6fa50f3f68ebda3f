package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/testpeers"
)

// inProcessPeers starts n peers in this process on loopback ports, with an
// API token when token is not empty, and closes them at the end of the
// test.
func inProcessPeers(t *testing.T, n int, token string) []*qcluster.Cluster {
	t.Helper()
	return testpeers.Start(t, n, testpeers.WithToken(token)).Peers
}

// agreedLeader waits until every running peer names the same leader, which
// holds the lease, and returns its index.
func agreedLeader(t *testing.T, peers []*qcluster.Cluster, skip ...int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		li := -1
		for i, p := range peers {
			if p.IsLeader() && !contains(skip, i) {
				li = i
			}
		}
		ok := li >= 0
		for i, p := range peers {
			if contains(skip, i) {
				continue
			}
			if l, known := p.Leader(); !known || l.Identifier != fmt.Sprintf("p%d", li) {
				ok = false
			}
		}
		if ok {
			return li
		}
		if time.Now().After(deadline) {
			t.Fatal("no agreed leader within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// clearEnv makes the tests independent of the caller's environment.
func clearEnv(t *testing.T) {
	for _, k := range []string{envAddr, envToken, envCACert, envCert, envKey, envClusterKey} {
		t.Setenv(k, "")
	}
}

func TestClientCommandUsageErrors(t *testing.T) {
	clearEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-o", "yaml"}, `-o "yaml": use text or json`},
		{[]string{"peers", "--output", "xml"}, `-o "xml"`},
		{[]string{"leader", "extra"}, `leader: unexpected argument "extra"`},
		{[]string{"transfer", "p1", "p2"}, `transfer: unexpected argument "p2"`},
		{[]string{"transfer", ""}, "the identifier is empty"},
		{[]string{"resign", "now"}, `unexpected argument "now"`},
		{[]string{"watch", "--timeout", "1s"}, "flag provided but not defined: -timeout"},
		{[]string{"status", "--addr", "ftp://x:1"}, "--addr: address \"ftp://x:1\": the scheme must be http or https"},
		{[]string{"status", "--addr", " , "}, "--addr is empty"},
		{[]string{"leader", "--addr", "h:99999"}, "the port must be 1-65535"},
		{[]string{"peers", "--timeout", "soon"}, "invalid value"},
	} {
		_, _, err := runMain(t.Context(), tt.args...)
		if ExitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%q) = %v (exit %d), want a usage error containing %q", tt.args, err, ExitCode(err), tt.want)
		}
	}
	for _, cmd := range []string{"status", "leader", "peers", "watch", "transfer", "resign"} {
		for _, args := range [][]string{{cmd, "-h"}, {"help", cmd}, {cmd, "--addr", "x", "--help"}} {
			stdout, _, err := runMain(t.Context(), args...)
			if err != nil || !strings.Contains(stdout, "Usage: qcluster "+cmd) || !strings.Contains(stdout, "-addr") || !strings.Contains(stdout, "QCLUSTER_ADDR") {
				t.Errorf("Run(%q) = %v, stdout %q; want the command's usage", args, err, stdout)
			}
		}
	}
	stdout, _, _ := runMain(t.Context(), "-h")
	for _, cmd := range []string{"status", "leader", "peers", "watch", "transfer", "resign"} {
		if !strings.Contains(stdout, "\t"+cmd+" ") {
			t.Errorf("top-level usage does not list %s:\n%s", cmd, stdout)
		}
	}
	// The token from the environment never shows in help.
	t.Setenv(envToken, "do-not-print-me")
	if stdout, _, _ := runMain(t.Context(), "transfer", "-h"); strings.Contains(stdout, "do-not-print-me") {
		t.Errorf("help prints the token:\n%s", stdout)
	}
}

func TestStatusLeaderPeersCommands(t *testing.T) {
	clearEnv(t)
	peers := inProcessPeers(t, 3, "tok")
	li := agreedLeader(t, peers)
	fi := (li + 1) % 3
	leaderID := fmt.Sprintf("p%d", li)
	faddr := peers[fi].Addr()

	stdout, _, err := runMain(t.Context(), "status", "--addr", faddr)
	if err != nil || !strings.Contains(stdout, "Role:       follower") || !strings.Contains(stdout, "Leader:     "+leaderID+" ("+peers[li].Addr()+")") ||
		!strings.Contains(stdout, "Voters:     p0, p1, p2") || !strings.Contains(stdout, fmt.Sprintf("Peer:       p%d (%s)", fi, faddr)) {
		t.Errorf("status: %v\n%s", err, stdout)
	}
	stdout, _, err = runMain(t.Context(), "status", "--addr", peers[li].Addr(), "-o", "json")
	var st api.Status
	if err != nil || json.Unmarshal([]byte(stdout), &st) != nil || !st.IsLeader || st.Identifier != leaderID {
		t.Errorf("status -o json: %v\n%s", err, stdout)
	}

	// A dead address first, then the follower; flags after -o.
	dead := freePort(t)
	stdout, _, err = runMain(t.Context(), "leader", "--addr", fmt.Sprintf("127.0.0.1:%d,%s", dead, faddr))
	want := fmt.Sprintf("%s at %s, metadata {\"server_port\":%d}\n", leaderID, peers[li].Addr(), 8000+li)
	if err != nil || stdout != want {
		t.Errorf("leader: %v\n%q, want %q", err, stdout, want)
	}
	// QCLUSTER_ADDR is the default address.
	t.Setenv(envAddr, faddr)
	stdout, _, err = runMain(t.Context(), "leader", "-o", "json")
	var p api.Peer
	if err != nil || json.Unmarshal([]byte(stdout), &p) != nil || p.Identifier != leaderID || p.Metadata["server_port"] != float64(8000+li) {
		t.Errorf("leader -o json with %s: %v\n%s", envAddr, err, stdout)
	}

	stdout, _, err = runMain(t.Context(), "peers")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if err != nil || len(lines) != 4 || !strings.HasPrefix(lines[0], "IDENTIFIER  ADDRESS") {
		t.Fatalf("peers: %v\n%s", err, stdout)
	}
	col := strings.Index(lines[0], "METADATA")
	for i, line := range lines[1:] {
		fields := strings.Fields(line)
		wantRole, wantSelf := "follower", yesNo(i == fi)
		if i == li {
			wantRole = "leader"
		}
		if len(fields) != 6 || fields[0] != fmt.Sprintf("p%d", i) || fields[1] != peers[i].Addr() || fields[2] != wantRole || fields[4] != wantSelf {
			t.Errorf("peers line %d: %q", i, line)
		}
		if strings.Index(line, "{") != col {
			t.Errorf("peers: the columns are not aligned:\n%s", stdout)
		}
	}
	stdout, _, err = runMain(t.Context(), "peers", "-o", "json")
	var members []api.Member
	if err != nil || json.Unmarshal([]byte(stdout), &members) != nil || len(members) != 3 || !members[li].IsLeader || !members[fi].IsSelf {
		t.Errorf("peers -o json: %v\n%s", err, stdout)
	}
}

func TestLeaderCommandWithoutLeader(t *testing.T) {
	clearEnv(t)
	peers := inProcessPeers(t, 3, "")
	agreedLeader(t, peers)
	peers[1].Close()
	peers[2].Close()
	// A closed leader hands over first, so p0 may lead for a moment (a
	// majority elected it before the second peer went) until its lease,
	// without a majority, runs out: wait until it knows no leader and its
	// API says so.
	deadline := time.Now().Add(10 * time.Second)
	var out, errOut *syncBuffer
	var m *Main
	var err error
	for {
		out, errOut = &syncBuffer{}, &syncBuffer{}
		m = &Main{Stdout: out, Stderr: errOut}
		_, ok := peers[0].Leader()
		err = m.Run(t.Context(), []string{"leader", "--addr", peers[0].Addr()})
		if !ok && err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("p0 still knows a leader")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
	if code := m.Report(err); code != 1 {
		t.Fatalf("leader without a leader: exit %d (%v)", code, err)
	}
	if out.String() != "" || !strings.Contains(errOut.String(), "qcluster: no leader: http://"+peers[0].Addr()+" knows no leader") {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
	// Nobody to ask: exit 1 too.
	_, _, err = runMain(t.Context(), "status", "--addr", peers[1].Addr())
	if ExitCode(err) != 1 || !strings.Contains(err.Error(), "cannot reach any peer: http://"+peers[1].Addr()+": connect: connection refused") {
		t.Errorf("status with nobody listening: %v", err)
	}
}

func TestTransferAndResignCommands(t *testing.T) {
	clearEnv(t)
	peers := inProcessPeers(t, 3, "s3cret")
	li := agreedLeader(t, peers)
	fi := (li + 1) % 3
	faddr := peers[fi].Addr()

	for _, args := range [][]string{{"resign", "--addr", faddr}, {"transfer", "--addr", faddr, "--token", "wrong"}} {
		_, _, err := runMain(t.Context(), args...)
		if ExitCode(err) != 1 || !strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), "--token") {
			t.Errorf("Run(%q) = %v, want exit 1 and a hint about --token", args, err)
		}
	}

	// Through a follower, to a named member; the id may come first.
	target := (li + 2) % 3
	stdout, _, err := runMain(t.Context(), "transfer", fmt.Sprintf("p%d", target), "--addr", faddr, "--token", "s3cret")
	if err != nil || !strings.HasPrefix(stdout, fmt.Sprintf("leadership moved from p%d to p%d in ", li, target)) {
		t.Fatalf("transfer: %v\n%s", err, stdout)
	}
	if got := agreedLeader(t, peers); got != target {
		t.Fatalf("after transfer the leader is p%d, want p%d", got, target)
	}
	// The token from the environment, JSON output.
	t.Setenv(envToken, "s3cret")
	stdout, _, err = runMain(t.Context(), "resign", "--addr", faddr, "-o", "json")
	var res api.TransferResult
	if err != nil || json.Unmarshal([]byte(stdout), &res) != nil || res.From != fmt.Sprintf("p%d", target) || res.Leader == nil || res.Leader.Identifier == res.From {
		t.Fatalf("resign -o json: %v\n%s", err, stdout)
	}
	agreedLeader(t, peers) // the resignation is over everywhere
	_, _, err = runMain(t.Context(), "transfer", "nobody", "--addr", faddr)
	if ExitCode(err) != 1 || !strings.Contains(err.Error(), `"nobody" is not another member`) {
		t.Errorf("transfer to an unknown member: %v", err)
	}
}

func TestWatchCommand(t *testing.T) {
	clearEnv(t)
	peers := inProcessPeers(t, 3, "")
	li := agreedLeader(t, peers)
	obs := (li + 1) % 3
	other := 3 - li - obs
	// Only the watch's own goroutines must be gone when it returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	for _, format := range []string{"text", "json"} {
		ctx, cancel := context.WithCancel(t.Context())
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- (&Main{Stdout: &out, Stderr: &out}).Run(ctx, []string{"watch", "--addr", peers[obs].Addr(), "-o", format})
		}()
		waitOutput := func(what string) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), what) {
				if time.Now().After(deadline) {
					cancel()
					t.Fatalf("watch -o %s printed no %q:\n%s", format, what, out.String())
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		name := func(i int) string {
			if format == "json" {
				return fmt.Sprintf(`"leader":{"identifier":"p%d"`, i)
			}
			return fmt.Sprintf("leader p%d at %s", i, peers[i].Addr())
		}
		waitOutput(name(li))
		tctx, tcancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := peers[li].Transfer(tctx, fmt.Sprintf("p%d", other)); err != nil {
			t.Fatal(err)
		}
		tcancel()
		waitOutput(name(other))
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch returned %v after Ctrl-C, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop after Ctrl-C")
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if format == "json" && !json.Valid([]byte(line)) {
				t.Errorf("watch -o json line %q", line)
			}
			if format == "text" && !strings.Contains(line, "(as seen by "+peers[obs].Addr()+")") {
				t.Errorf("watch line %q", line)
			}
		}
		t.Logf("watch -o %s:\n%s", format, out.String())
		li, other = other, li
	}
}
