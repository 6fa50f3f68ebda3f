package qcluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/transport"
)

// TestGarbageOnThePortChangesNothing throws bad bytes at the leader's port
// while the cluster runs: the leader keeps its leadership (same term) and
// its API keeps answering, with bounded memory.
func TestGarbageOnThePortChangesNothing(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	term := leader.Term()
	addr := leader.Addr()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var open []net.Conn
	// Random bytes, many times.
	for range 50 {
		c := dial()
		buf := make([]byte, 1+rng.IntN(4096))
		for i := range buf {
			buf[i] = byte(rng.UintN(256))
		}
		c.Write(buf)
		c.Close()
	}
	// A raft preamble followed by a 2 GiB length prefix.
	c := dial()
	c.Write([]byte(transport.RaftPreamble))
	c.Write([]byte{0x7f, 0xff, 0xff, 0xff})
	// A raft stream that claims another cluster's identity (hello with a
	// sender nobody knows, addressed to the leader, cluster "other").
	c = dial()
	hello := []byte{transport.HelloVersion}
	hello = binary.BigEndian.AppendUint64(hello, 0xdeadbeef)
	hello = binary.BigEndian.AppendUint64(hello, NodeID(leader.cfg.Identifier))
	hello = append(hello, "other-cluster"...)
	c.Write([]byte(transport.RaftPreamble))
	c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(hello))))
	c.Write(hello)
	// Half-open connections that send nothing, and a slowloris HTTP request
	// that never finishes its headers: kept open during the checks below.
	for range 20 {
		open = append(open, dial())
	}
	slow := dial()
	slow.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: "))
	open = append(open, slow)

	// The API still answers, and leadership did not move.
	client := &http.Client{Timeout: 2 * time.Second}
	for i := range 20 {
		resp, err := client.Get("http://" + addr + "/v1/status")
		if err != nil {
			t.Fatalf("status request %d: %v", i, err)
		}
		var st struct {
			IsLeader bool   `json:"is_leader"`
			Term     uint64 `json:"term"`
		}
		err = json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.Term != term {
			t.Fatalf("term moved from %d to %d under garbage", term, st.Term)
		}
	}
	waitFor(t, 2*time.Second, "leader to hold its lease", leader.IsLeader)
	if leader.Term() != term {
		t.Fatalf("term moved from %d to %d under garbage", term, leader.Term())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if p, err := tc.peers[(tc.index(leader)+1)%3].WaitForLeader(ctx); err != nil || p.Identifier != leader.cfg.Identifier {
		t.Fatalf("follower lost the leader: %v %v", p, err)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB under garbage", grew>>20)
	}
	for _, c := range open {
		c.Close()
	}
}
