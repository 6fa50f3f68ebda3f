package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

// FuzzCoreStep feeds messages chosen by the fuzzer to the peers of a
// simulated 3-peer cluster, with every invariant checked after every
// event. The network may delay, duplicate, reorder and drop messages but
// not forge a member's (the transport authenticates members), so the
// fuzzer may:
//   - replay any message a peer sent earlier, at any later time (a
//     duplicate, arbitrarily late and out of order);
//   - forge messages with arbitrary fields from senders that are not
//     members (unknown IDs, 0, the receiver itself): Core.Step must refuse
//     each, with ErrNotMember (or ErrMessageType, checked first);
//   - forge messages of types peers do not exchange, from members: Core.Step
//     must refuse each, with ErrMessageType;
//   - let time pass, partition, heal, crash and restart peers.
//
// Nothing may panic, no invariant may break, and once everything is healed
// the peers must agree on a leader holding the lease.
func FuzzCoreStep(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add([]byte("\x03\x40\x00\x00\x10\x00\x01\x20\x02\x05\x03\xff\x00\x00\x30"))
	f.Add([]byte("\x00\x00\x00\x07\x02\x03\x01\x03\x90\x00\x00\x01\x00\x00\x02\x00\x00\x03\x03\xc0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var sent []raftpb.Message
		c, err := NewCluster(Options{
			Seed: 1, Peers: 3,
			Network: Network{MinDelay: 100 * time.Microsecond, MaxDelay: 2 * time.Millisecond},
			OnSend: func(_ time.Duration, m raftpb.Message) {
				if len(sent) < 4096 {
					sent = append(sent, m)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.RunUntil(10*c.ElectionTimeout(), func() bool { _, ok := c.Agreed(); return ok }); err != nil {
			t.Fatal(err)
		}
		var refusalErr error
		refuse := func(to uint64, m raftpb.Message, want ...error) {
			c.Do(to, fmt.Sprintf("step forged %v from %d", m.Type, m.From), func(core *consensus.Core) error {
				err := core.Step(m)
				for _, w := range want {
					if errors.Is(err, w) {
						return nil
					}
				}
				if refusalErr == nil {
					refusalErr = fmt.Errorf("Step(%+v) on p%d = %v, want %v", m, to, err, want)
				}
				return nil
			})
		}
		u64 := func(i int) uint64 {
			var b [8]byte
			copy(b[:], data[min(i, len(data)):])
			return binary.LittleEndian.Uint64(b[:])
		}
		for i := 0; i+3 <= len(data) && c.Err() == nil && refusalErr == nil; i += 3 {
			op, a, b := data[i], data[i+1], data[i+2]
			to := uint64(1 + int(a)%3)
			switch op % 8 {
			case 0, 1: // replay an earlier message
				if len(sent) > 0 {
					m := sent[(int(a)<<8|int(b))%len(sent)]
					if !c.peer(m.To).crashed {
						c.Inject(m)
					}
				}
			case 2: // forged, from a non-member
				m := raftpb.Message{
					Type: raftpb.MessageType(int(b) % 26), To: to, From: []uint64{0, 4, 99, to, 1 << 40}[int(op>>3)%5],
					Term: u64(i) % 64, LogTerm: u64(i+1) % 64, Index: u64(i+2) % 128, Commit: u64(i+3) % 128,
					Reject: b&1 == 1, Context: data[i:min(i+int(a)%9, len(data))],
				}
				if b&2 == 2 {
					m.Entries = []raftpb.Entry{{Term: m.Term, Index: m.Index + 1, Data: []byte("forged")}}
				}
				refuse(to, m, consensus.ErrNotMember, consensus.ErrMessageType) // the type is checked first
			case 3: // a type peers do not exchange, from a member
				types := []raftpb.MessageType{raftpb.MsgHup, raftpb.MsgBeat, raftpb.MsgUnreachable, raftpb.MsgSnapStatus,
					raftpb.MsgCheckQuorum, raftpb.MsgTransferLeader, raftpb.MsgReadIndex, raftpb.MsgReadIndexResp,
					raftpb.MsgStorageAppend, raftpb.MsgStorageAppendResp, raftpb.MsgStorageApply, raftpb.MsgStorageApplyResp,
					raftpb.MsgForgetLeader, raftpb.MessageType(40 + int(b))}
				from := uint64(1 + (int(a)+1+int(b)%2)%3)
				m := raftpb.Message{Type: types[int(b)%len(types)], To: to, From: from, Term: u64(i) % 64, Index: u64(i+1) % 128}
				refuse(to, m, consensus.ErrMessageType)
			case 4, 5: // time passes
				_ = c.RunFor(time.Duration(a)*time.Millisecond + time.Duration(b)*10*time.Microsecond)
			case 6: // the network
				if b%2 == 0 {
					c.Heal()
				} else {
					c.Isolate(to)
				}
			case 7: // a crash, or a restart
				if p := c.peer(to); p.crashed {
					if err := c.Restart(to); err != nil {
						t.Fatal(err)
					}
				} else if b%4 == 0 {
					c.Crash(to)
				}
			}
		}
		if refusalErr != nil {
			t.Fatal(refusalErr)
		}
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
		c.Heal()
		for _, p := range c.peers {
			if p.crashed {
				if err := c.Restart(p.id); err != nil {
					t.Fatal(err)
				}
			}
		}
		ok, err := c.RunUntil(20*c.ElectionTimeout(), func() bool { _, ok := c.Agreed(); return ok })
		if err != nil {
			t.Fatal(err)
		}
		if refusalErr != nil {
			t.Fatal(refusalErr)
		}
		if !ok {
			t.Fatalf("no agreed leader 20 election timeouts after the heal\n%s", c.Trace())
		}
	})
}
