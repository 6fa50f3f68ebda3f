package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/proccluster"
)

// TestOutsiderAttacks replays, against three real agents started from
// plain configs (loopback, no TLS, no token), what a stranger on the
// network could send: raft frames that once killed the leader or made the
// stranger a voter, frames that once cleared a follower's lease guard, and
// cross-site POSTs a web page can make. The agents must keep running with
// the same voters, leader, term and metadata, and count every refusal.
func TestOutsiderAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs agent processes; skipped with -short")
	}
	bin := qclusterBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	// A long election timeout: no election may happen by accident while
	// the test checks that the attacks caused none.
	cl, err := proccluster.Start(ctx, proccluster.Options{
		Command:         []string{bin, "agent"},
		Peers:           3,
		Dir:             t.TempDir(),
		Heartbeat:       100 * time.Millisecond,
		ElectionTimeout: 2 * time.Second,
		RequestTimeout:  2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	logsOnFailure(t, cl)

	agreed, err := cl.WaitAgreed(ctx, cl.Peers, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	leader, term := agreed.Leader, agreed.Term
	var follower *proccluster.Peer
	for _, p := range cl.Peers {
		if p != leader && follower == nil {
			follower = p
		}
	}
	before := snapshotPeers(t, ctx, leader)

	intruder := qcluster.NodeID("intruder")
	addRec, _ := json.Marshal(map[string]any{"identifier": "intruder", "host": "127.0.0.1", "port": 1})
	addCC, _ := (&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: intruder, Context: addRec}).Marshal()
	mdEntry, _ := json.Marshal(map[string]any{"op": "metadata", "identifier": follower.ID, "metadata": map[string]any{"pwned": true}})
	mdEntry = append([]byte{'R'}, mdEntry...)

	raftAttacks := []struct {
		name   string
		target *proccluster.Peer
		msg    raftpb.Message
	}{
		{"empty MsgProp", leader, raftpb.Message{Type: raftpb.MsgProp}},
		{"forged ConfChange", leader, raftpb.Message{Type: raftpb.MsgProp,
			Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Data: addCC}}}},
		{"forged metadata", leader, raftpb.Message{Type: raftpb.MsgProp,
			Entries: []raftpb.Entry{{Type: raftpb.EntryNormal, Data: mdEntry}}}},
		{"forged append at a higher term", follower, raftpb.Message{Type: raftpb.MsgApp, Term: term + 100,
			LogTerm: 0, Index: 0, Commit: 1 << 40,
			Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Term: term + 100, Index: 1 << 30, Data: addCC}}}},
		{"MsgForgetLeader", follower, raftpb.Message{Type: raftpb.MsgForgetLeader, Term: term}},
		{"MsgTimeoutNow", follower, raftpb.Message{Type: raftpb.MsgTimeoutNow, Term: term}},
		{"MsgHup", follower, raftpb.Message{Type: raftpb.MsgHup}},
	}
	for _, a := range raftAttacks {
		t.Logf("raft attack: %s -> %s", a.name, a.target.ID)
		// As a stranger, and as a stranger claiming to be the leader's
		// peer on a forged stream: both are outsiders without TLS.
		m := a.msg
		m.From, m.To = intruder, qcluster.NodeID(a.target.ID)
		sendRaw(t, a.target.Addr(), m)
	}
	// Every frame must be refused and counted.
	waitUntil(t, ctx, "raft refusals counted", func() (bool, string) {
		n := metricSum(t, ctx, leader, "qcluster_raft_messages_refused_total") +
			metricSum(t, ctx, follower, "qcluster_raft_messages_refused_total")
		return n >= float64(len(raftAttacks)), fmt.Sprintf("refused %v of %d", n, len(raftAttacks))
	})

	// A web page on another site can POST text/plain without a preflight.
	webAttacks := []struct {
		path, contentType, origin string
		target                    *proccluster.Peer
	}{
		{"/v1/self/leave", "text/plain", "http://evil.example", follower},
		{"/v1/leader/resign", "text/plain", "http://evil.example", leader},
		{"/v1/leader/resign", "application/x-www-form-urlencoded", "", leader},
		{"/v1/leader/resign", "application/json", "http://evil.example", leader},
		{"/v1/self/metadata", "application/json", "null", follower},
	}
	for _, a := range webAttacks {
		method := http.MethodPost
		if a.path == "/v1/self/metadata" {
			method = http.MethodPut
		}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+a.target.Addr()+a.path,
			strings.NewReader(`{"metadata":{"pwned":true}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", a.contentType)
		if a.origin != "" {
			req.Header.Set("Origin", a.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, a.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s %s (Content-Type %s, Origin %q): %s %s, want 403 or 415", method, a.path, a.contentType, a.origin, resp.Status, body)
		}
		var e api.Error
		if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
			t.Errorf("%s %s: refusal body %q is not the API's JSON error", method, a.path, body)
		}
	}
	waitUntil(t, ctx, "API refusals counted", func() (bool, string) {
		n := metricSum(t, ctx, leader, "qcluster_api_requests_refused_total") +
			metricSum(t, ctx, follower, "qcluster_api_requests_refused_total")
		return n >= float64(len(webAttacks)), fmt.Sprintf("refused %v of %d", n, len(webAttacks))
	})

	// Nothing changed: every agent runs, with the same leader, term,
	// voters and metadata.
	for _, p := range cl.Peers {
		if !p.Running() {
			t.Fatalf("%s is no longer running:\n%s", p.ID, p.LogTail(30))
		}
	}
	after, err := cl.WaitAgreed(ctx, cl.Peers, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Leader != leader || after.Term != term {
		t.Errorf("leadership changed: %s in term %d, was %s in term %d", after.Leader, after.Term, leader, term)
	}
	for _, p := range cl.Peers {
		st, err := p.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"server_a", "server_b", "server_c"}; !slices.Equal(st.Voters, want) {
			t.Errorf("%s: voters %v, want %v", p.ID, st.Voters, want)
		}
		if got := snapshotPeers(t, ctx, p); got != before {
			t.Errorf("%s: members changed:\n got %s\nwant %s", p.ID, got, before)
		}
	}
}

// sendRaw opens a raft stream to addr as an outsider would, byte by byte
// from the wire format (preamble, hello frame, message frame), and closes
// it once the peer has had the chance to read the message.
func sendRaw(t *testing.T, addr string, m raftpb.Message) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := bufio.NewWriter(conn)
	w.WriteString("QCRAFT1\n")
	var hello []byte
	hello = append(hello, 3) // version (transport.HelloVersion)
	hello = binary.BigEndian.AppendUint64(hello, m.From)
	hello = binary.BigEndian.AppendUint64(hello, m.To)
	w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(hello))))
	w.Write(hello)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	w.Write(b)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// The receiver never writes on a raft stream: wait until it closes the
	// stream or a short while passes, then hang up.
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var one [1]byte
	conn.Read(one[:])
}

// metricSum scrapes p's /metrics and sums every sample of the named metric.
func metricSum(t *testing.T, ctx context.Context, p *proccluster.Peer, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.ID, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// snapshotPeers returns p's GET /v1/peers members (identifier, address,
// metadata) as a comparable string.
func snapshotPeers(t *testing.T, ctx context.Context, p *proccluster.Peer) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/v1/peers", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /v1/peers: %v", p.ID, err)
	}
	defer resp.Body.Close()
	var out api.PeerList
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: GET /v1/peers: %v", p.ID, err)
	}
	type member struct {
		Identifier, Host string
		Port             int
		Metadata         map[string]any
	}
	var ms []member
	for _, m := range out.Peers {
		ms = append(ms, member{m.Identifier, m.Host, m.Port, m.Metadata})
	}
	b, _ := json.Marshal(ms)
	return string(b)
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %s", what, state)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
