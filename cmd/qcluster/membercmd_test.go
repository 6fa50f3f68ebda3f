package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
)

var fakeLeader = &api.Peer{Identifier: "server_a", Host: "localhost", Port: 7001, Metadata: map[string]any{"server_port": 8001.0}}

// newFakePeer returns an api.Backend for the client commands' tests: one
// peer, server_b, following server_a, whose answers the test sets.
func newFakePeer() *apitest.Backend {
	return apitest.New(
		api.Status{Identifier: "server_b", Role: "follower", Term: 2, Index: 40, Leader: fakeLeader, Voters: []string{"server_a", "server_b"}, Learners: []string{"server_c"}, Mode: api.ModeLeader, Joined: true},
		[]api.Member{
			{Peer: *fakeLeader, Voter: true, IsLeader: true, Role: "leader", State: "alive"},
			{Peer: api.Peer{Identifier: "server_b", Host: "localhost", Port: 7002}, Voter: true, IsSelf: true, Role: "follower", State: "alive"},
			{Peer: api.Peer{Identifier: "server_c", Host: "localhost", Port: 7003}, Role: "learner", State: "suspect"},
		},
		400)
}

// serveFake serves the API over f on a loopback port and returns its
// address.
func serveFake(t *testing.T, f *apitest.Backend, opts api.Options) string {
	t.Helper()
	srv := httptest.NewServer(api.NewHandlerWithOptions(f, opts))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// wantExit checks a command's error: its exit code and message.
func wantExit(t *testing.T, args []string, err error, code int, want ...string) {
	t.Helper()
	if got := ExitCode(err); got != code {
		t.Errorf("Run(%q) = %v: exit %d, want %d", args, err, got, code)
		return
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Run(%q) = %v, want a message containing %q", args, err, w)
		}
	}
}

func TestMembershipCommandsHelp(t *testing.T) {
	clearEnv(t)
	for cmd, name := range map[string]string{"join": "join", "remove": "remove", "leave": "leave", "metadata": "metadata", "meta": "metadata"} {
		for _, args := range [][]string{{cmd, "-h"}, {"help", cmd}, {cmd, "--addr", "x", "--help"}} {
			stdout, _, err := runMain(t.Context(), args...)
			if err != nil || !strings.Contains(stdout, "Usage: qcluster "+name) || !strings.Contains(stdout, "-addr") || !strings.Contains(stdout, "QCLUSTER_ADDR") || !strings.Contains(stdout, "Exit codes") {
				t.Errorf("Run(%q) = %v, stdout %q; want the command's usage", args, err, stdout)
			}
		}
	}
	stdout, _, _ := runMain(t.Context(), "-h")
	for _, cmd := range []string{"join", "remove", "leave", "metadata"} {
		if !strings.Contains(stdout, "\t"+cmd+" ") {
			t.Errorf("top-level usage does not list %s:\n%s", cmd, stdout)
		}
	}
}

func TestJoinCommand(t *testing.T) {
	clearEnv(t)
	f := newFakePeer()
	addr := serveFake(t, f, api.Options{Token: "tok"})

	args := []string{"join", "--addr", addr, "--token", "tok", "--id", "server_d", "--host", "10.0.0.4", "--port", "7004",
		"--meta", `{"server_port": 8004}`, "--cluster-name", "blue", "--learner"}
	stdout, _, err := runMain(t.Context(), args...)
	if err != nil {
		t.Fatalf("Run(%q) = %v", args, err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 7 || lines[0] != "server_d at 10.0.0.4:7004 joined the cluster as a learner (leader server_a)" || lines[1] != "" ||
		!strings.HasPrefix(lines[2], "IDENTIFIER  ADDRESS") || !strings.Contains(lines[6], "server_d") || !strings.Contains(lines[6], `{"server_port":8004}`) {
		t.Errorf("join output:\n%s", stdout)
	}
	req := f.Calls().Joins[0]
	if req.Identifier != "server_d" || req.Host != "10.0.0.4" || req.Port != 7004 || req.Voter == nil || *req.Voter || req.ClusterName != "blue" || req.Metadata["server_port"] != 8004.0 {
		t.Errorf("the peer got %+v", req)
	}

	// From a peer config file; flags override it; JSON output.
	dir := t.TempDir()
	cfg := writeFile(t, dir, "d.json", `{"identifier": "server_e", "listen_host": "0.0.0.0", "advertise_host": "db5.example.com", "listen_port": 7005,
		"metadata": {"server_port": 8005}, "cluster_name": "blue", "voter": false, "server_port": 8005}`)
	t.Setenv(envToken, "tok")
	stdout, _, err = runMain(t.Context(), "join", "--config", cfg, "--addr", addr, "-o", "json")
	var res api.JoinResult
	if err != nil || json.Unmarshal([]byte(stdout), &res) != nil || res.Member.Identifier != "server_e" || res.Member.Role != "learner" || len(res.Peers) != 4 {
		t.Fatalf("join --config -o json: %v\n%s", err, stdout)
	}
	req = f.Calls().Joins[1]
	if req.Identifier != "server_e" || req.Host != "db5.example.com" || req.Port != 7005 || req.Voter == nil || *req.Voter || req.ClusterName != "blue" || req.Metadata["server_port"] != 8005.0 {
		t.Errorf("join --config sent %+v", req)
	}
	if _, _, err := runMain(t.Context(), "join", "--config", cfg, "--addr", addr, "--port", "7105", "--id", "server_f"); err != nil {
		t.Fatal(err)
	}
	if req = f.Calls().Joins[2]; req.Identifier != "server_f" || req.Port != 7105 || req.Host != "db5.example.com" {
		t.Errorf("flags over --config sent %+v", req)
	}

	// Usage errors reach no peer.
	n := len(f.Calls().Joins)
	bad := writeFile(t, dir, "bad.json", `{"identifier": "server_e", "listen_prot": 7005}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"join", "--host", "h", "--port", "7004"}, "--id is required"},
		{[]string{"join", "--id", "d", "--port", "7004"}, "--host is required"},
		{[]string{"join", "--id", "d", "--host", "h"}, "--port is required"},
		{[]string{"join", "--id", "d", "--host", "h", "--port", "70000"}, "--port 70000"},
		{[]string{"join", "--id", "d", "--host", "h", "--port", "7004", "--meta", "[1]"}, "--meta: \"[1]\" is not a JSON object"},
		{[]string{"join", "--id", "d", "--host", "h", "--port", "7004", "--meta", "{"}, "not a JSON object"},
		{[]string{"join", "--id", "d", "--host", "h", "--port", "7004", "--meta", "{} {}"}, "more than one"},
		{[]string{"join", "--config", bad}, "listen_prot"},
		{[]string{"join", "--config", dir + "/missing.json"}, "missing.json"},
		{[]string{"join", "server_d"}, `unexpected argument "server_d"`},
	} {
		_, _, err := runMain(t.Context(), append(tc.args, "--addr", addr)...)
		wantExit(t, tc.args, err, 2, tc.want)
	}
	if len(f.Calls().Joins) != n {
		t.Errorf("usage errors reached the peer")
	}

	// Refusals: exit 1 with the peer's reason.
	t.Setenv(envToken, "")
	args = []string{"join", "--addr", addr, "--id", "server_d", "--host", "h", "--port", "7004"}
	_, _, err = runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "unauthorized", "--token")
	args = append(args, "--token", "tok")
	f.SetErr(fmt.Errorf("%w: server_c has the address h:7004", api.ErrConflict))
	_, _, err = runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "server_c has the address h:7004")
	f.SetErr(api.ErrNoLeader)
	_, _, err = runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "no leader")
	f.SetErr(nil)
	_, _, err = runMain(t.Context(), "join", "--addr", addr, "--token", "tok", "--id", "server d", "--host", "h", "--port", "7004")
	wantExit(t, nil, err, 1, "identifier", "whitespace")
}

func TestRemoveAndLeaveCommands(t *testing.T) {
	clearEnv(t)
	f := newFakePeer()
	addr := serveFake(t, f, api.Options{Token: "tok"})
	t.Setenv(envToken, "tok")

	stdout, _, err := runMain(t.Context(), "remove", "server_c", "--addr", addr)
	if err != nil || stdout != "removed server_c from the cluster\n" || len(f.Calls().Removed) != 1 || f.Calls().Removed[0] != "server_c" {
		t.Errorf("remove: %v %q %q", err, stdout, f.Calls().Removed)
	}
	stdout, _, err = runMain(t.Context(), "remove", "--addr", addr, "-o", "json", "server_a")
	var rr api.RemoveResult
	if err != nil || json.Unmarshal([]byte(stdout), &rr) != nil || rr.Removed != "server_a" {
		t.Errorf("remove -o json: %v %q", err, stdout)
	}
	args := []string{"remove", "nobody", "--addr", addr}
	_, _, err = runMain(t.Context(), args...)
	wantExit(t, args, err, 1, `"nobody" is not a member`)
	for _, args := range [][]string{{"remove"}, {"remove", ""}, {"remove", "a", "b"}} {
		_, _, err := runMain(t.Context(), append(args, "--addr", addr)...)
		wantExit(t, args, err, 2)
	}
	f.SetErr(fmt.Errorf("%w: 2 voters would remain, fewer than min_voters 3", api.ErrConflict))
	args = []string{"remove", "server_a", "--addr", addr}
	_, _, err = runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "min_voters")
	f.SetErr(nil)

	stdout, _, err = runMain(t.Context(), "leave", "--addr", addr)
	if err != nil || stdout != fmt.Sprintf("server_b (%s) left the cluster and stopped\n", addr) || f.Calls().Leaves != 1 {
		t.Errorf("leave: %v %q (%d leaves)", err, stdout, f.Calls().Leaves)
	}
	stdout, _, err = runMain(t.Context(), "leave", "--addr", addr, "-o", "json")
	var ll leaveLine
	if err != nil || json.Unmarshal([]byte(stdout), &ll) != nil || ll.Left != "server_b" || ll.Addr != addr {
		t.Errorf("leave -o json: %v %q", err, stdout)
	}
	// leave acts on one peer: a list is refused before anything is sent.
	t.Setenv(envAddr, addr+","+addr)
	_, _, err = runMain(t.Context(), "leave")
	wantExit(t, []string{"leave"}, err, 2, "names 2 peers", "QCLUSTER_ADDR", "give that peer's address alone")
	t.Setenv(envAddr, "")
	_, _, err = runMain(t.Context(), "leave", "--addr", addr, "extra")
	wantExit(t, nil, err, 2, `unexpected argument "extra"`)
	if f.Calls().Leaves != 2 {
		t.Errorf("%d leaves, want 2", f.Calls().Leaves)
	}
	f.SetErr(fmt.Errorf("%w: the last voter cannot leave; stop it instead", api.ErrConflict))
	_, _, err = runMain(t.Context(), "leave", "--addr", addr)
	wantExit(t, nil, err, 1, "the last voter cannot leave")
	t.Setenv(envToken, "")
	_, _, err = runMain(t.Context(), "leave", "--addr", addr)
	wantExit(t, nil, err, 1, "unauthorized")
}

func TestMetadataCommand(t *testing.T) {
	clearEnv(t)
	f := newFakePeer()
	addr := serveFake(t, f, api.Options{Token: "tok"})

	stdout, _, err := runMain(t.Context(), "metadata", "--addr", addr)
	if want := fmt.Sprintf("server_b (%s) metadata: {}\n", addr); err != nil || stdout != want {
		t.Errorf("metadata: %v %q, want %q", err, stdout, want)
	}
	stdout, _, err = runMain(t.Context(), "meta", "set", `{"server_port": 8002, "zone": "b"}`, "--addr", addr, "--token", "tok")
	if want := fmt.Sprintf("server_b (%s) metadata: {\"server_port\":8002,\"zone\":\"b\"}\n", addr); err != nil || stdout != want {
		t.Errorf("meta set: %v %q, want %q", err, stdout, want)
	}
	if len(f.Calls().Metadata) != 1 || f.Calls().Metadata[0]["server_port"] != 8002.0 {
		t.Errorf("the peer got %v", f.Calls().Metadata)
	}
	stdout, _, err = runMain(t.Context(), "metadata", "get", "--addr", addr, "-o", "json")
	var m api.Member
	if err != nil || json.Unmarshal([]byte(stdout), &m) != nil || m.Identifier != "server_b" || m.Metadata["zone"] != "b" {
		t.Errorf("metadata get -o json: %v %q", err, stdout)
	}
	stdout, _, err = runMain(t.Context(), "metadata", "set", "{}", "--addr", addr, "--token", "tok", "-o", "json")
	m = api.Member{}
	if err != nil || json.Unmarshal([]byte(stdout), &m) != nil || len(m.Metadata) != 0 {
		t.Errorf("metadata set {} -o json: %v %q", err, stdout)
	}

	n := len(f.Calls().Metadata)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"metadata", "set"}, "set needs the new metadata"},
		{[]string{"metadata", "set", "8004"}, `"8004" is not a JSON object`},
		{[]string{"metadata", "set", `{"a": }`}, "not a JSON object"},
		{[]string{"metadata", "frob"}, `unknown action "frob"`},
		{[]string{"metadata", "get", "x"}, "get takes no argument"},
		{[]string{"metadata", "set", "{}", "x"}, `unexpected argument "x"`},
		{[]string{"metadata", "set", "{}", "--addr", addr + "," + addr}, "names 2 peers"},
	} {
		args := tc.args
		if !strings.Contains(strings.Join(args, " "), "--addr") {
			args = append(args, "--addr", addr)
		}
		_, _, err := runMain(t.Context(), args...)
		wantExit(t, tc.args, err, 2, tc.want)
	}
	if len(f.Calls().Metadata) != n {
		t.Errorf("usage errors reached the peer")
	}
	_, _, err = runMain(t.Context(), "metadata", "set", "{}", "--addr", addr)
	wantExit(t, nil, err, 1, "unauthorized")
	f.SetErr(fmt.Errorf("%w: the metadata is 70000 bytes, more than 65536", api.ErrInvalid))
	_, _, err = runMain(t.Context(), "metadata", "set", "{}", "--addr", addr, "--token", "tok")
	wantExit(t, nil, err, 1, "more than 65536")
}

func TestPeersCommandRoleAndState(t *testing.T) {
	clearEnv(t)
	f := newFakePeer()
	addr := serveFake(t, f, api.Options{Token: "tok", ProtectReads: true})
	args := []string{"peers", "--addr", addr}
	_, _, err := runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "unauthorized", "--token")

	stdout, _, err := runMain(t.Context(), "peers", "--addr", addr, "--token", "tok")
	want := `IDENTIFIER  ADDRESS         ROLE      STATE    SELF  METADATA
server_a    localhost:7001  leader    alive    no    {"server_port":8001}
server_b    localhost:7002  follower  alive    yes   -
server_c    localhost:7003  learner   suspect  no    -
`
	if err != nil || stdout != want {
		t.Errorf("peers: %v\n%s\nwant\n%s", err, stdout, want)
	}
	// A peer that reports no roles: the role comes from the flags.
	f.SetPeers(func(ms []api.Member) []api.Member {
		for i := range ms {
			ms[i].Role, ms[i].State = "", ""
		}
		return ms
	})
	stdout, _, err = runMain(t.Context(), "peers", "--addr", addr, "--token", "tok")
	if err != nil || !strings.Contains(stdout, "server_a    localhost:7001  leader    -      no") || !strings.Contains(stdout, "server_c    localhost:7003  learner   -      no") {
		t.Errorf("peers without roles: %v\n%s", err, stdout)
	}
}

func TestWatchCommandMemberEvents(t *testing.T) {
	clearEnv(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, format := range []string{"text", "json"} {
		f := newFakePeer()
		srv := httptest.NewServer(api.NewHandlerWithOptions(f, api.Options{KeepAlive: 10 * time.Millisecond}))
		addr := strings.TrimPrefix(srv.URL, "http://")
		ctx, cancel := context.WithCancel(t.Context())
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- (&Main{Stdout: &out, Stderr: &out}).Run(ctx, []string{"watch", "--addr", addr, "-o", format})
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
		leaderLine := "leader server_a at localhost:7001  (as seen by " + addr + ")"
		memberLine := "member server_d joined: 10.0.0.4:7004, follower, alive, metadata {\"server_port\":8004}  (as seen by " + addr + ")"
		if format == "json" {
			leaderLine = `"event":"leader","leader":{"identifier":"server_a"`
			memberLine = `"event":"member","type":"joined","member":{"identifier":"server_d","host":"10.0.0.4","port":7004`
		}
		waitOutput(leaderLine)
		waitFor(t, "the member subscription", func() bool { return f.Subscribers() == 1 })
		f.Emit(api.MemberEvent{Type: "joined", Time: time.Now(), Member: api.Member{Peer: api.Peer{Identifier: "server_d", Host: "10.0.0.4", Port: 7004, Metadata: map[string]any{"server_port": 8004}}, Voter: true, Role: "follower", State: "alive"}})
		waitOutput(memberLine)
		// A change of term only prints nothing; a change of leader does.
		f.Set(func(s *api.Status) { s.Term++ })
		f.Set(func(s *api.Status) { s.Leader = nil })
		if format == "json" {
			waitOutput(`"leader":null`)
		} else {
			waitOutput("no leader  (as seen by " + addr + ")")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch returned %v after Ctrl-C, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop after Ctrl-C")
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 {
			t.Errorf("watch -o %s printed %d lines, want 3 (leader, member, no leader):\n%s", format, len(lines), out.String())
		}
		for _, line := range lines {
			if format == "json" && !json.Valid([]byte(line)) {
				t.Errorf("watch -o json line %q", line)
			}
		}
		t.Logf("watch -o %s:\n%s", format, out.String())
		srv.Close()
	}
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the machine may be loaded
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runAgentUntilLeader runs a one-peer agent in this process until it leads,
// then cancels its context with cause and returns what Run returned and
// the agent's log.
func runAgentUntilLeader(t *testing.T, config string, cause error) (string, error) {
	t.Helper()
	for attempt := 0; ; attempt++ { // the free port may be taken meanwhile
		log, inUse, err := tryAgentUntilLeader(t, config, cause)
		if !inUse || attempt == 2 {
			return log, err
		}
	}
}

// tryAgentUntilLeader is one try of runAgentUntilLeader; inUse reports that
// the port was taken.
func tryAgentUntilLeader(t *testing.T, config string, cause error) (log string, inUse bool, err error) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "solo.json", fmt.Sprintf(`{"identifier": "solo", "listen_port": %d, "data_dir": %q,
		"heartbeat_interval": "10ms", "election_timeout": "50ms"%s}`, freePort(t), dir+"/data", config))
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- (&Main{Stdout: &stdout, Stderr: &stderr}).Run(ctx, []string{"agent", "--config", cfg, "--log-format", "json", "--leave-timeout", "5s"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"leadership changed","peer":"solo","state":"leader"`) {
		select {
		case err := <-done:
			if strings.Contains(stderr.String()+fmt.Sprint(err), "address already in use") {
				return stderr.String(), true, err
			}
			t.Fatalf("agent returned early: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel(nil)
			<-done
			t.Fatalf("the agent did not lead in time:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel(cause)
	select {
	case err := <-done:
		return stderr.String(), false, err
	case <-time.After(15 * time.Second):
		t.Fatalf("the agent did not stop within 15s:\n%s", stderr.String())
	}
	return "", false, nil
}

// TestAgentLeaveOnTerminate checks that with leave_on_terminate SIGTERM
// makes the agent leave (here it cannot: a peer alone is the last voter,
// so the leave fails and says so), while SIGINT, or SIGTERM without the
// option, just stops it.
func TestAgentLeaveOnTerminate(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	term := &SignalError{Signal: syscall.SIGTERM}
	log, err := runAgentUntilLeader(t, `, "leave_on_terminate": true`, term)
	if !strings.Contains(log, "agent leaving the cluster") {
		t.Errorf("SIGTERM with leave_on_terminate did not try to leave: %v\n%s", err, log)
	}
	t.Logf("leave_on_terminate alone: %v", err)
	if err == nil || ExitCode(err) != 1 || !strings.Contains(err.Error(), "leave on SIGTERM") {
		t.Errorf("the last voter leaving: %v, want exit 1 and the reason", err)
	}
	for _, tc := range []struct {
		config string
		cause  error
	}{
		{`, "leave_on_terminate": true`, &SignalError{Signal: syscall.SIGINT}},
		{`, "leave_on_terminate": true`, errors.New("some other reason")},
		{"", term},
	} {
		log, err := runAgentUntilLeader(t, tc.config, tc.cause)
		if err != nil || strings.Contains(log, "agent leaving") || !strings.Contains(log, `"msg":"agent stopped"`) {
			t.Errorf("config %q, cause %v: %v\n%s", tc.config, tc.cause, err, log)
		}
	}
}
