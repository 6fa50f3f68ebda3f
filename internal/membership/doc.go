// Package membership keeps a live view of a QCluster's members — name,
// address, metadata and health — with SWIM gossip from
// github.com/hashicorp/memberlist, on the peer's single port: memberlist's
// packets are UDP datagrams on the same port number as the peer's TCP
// listener, and its streams are TCP connections routed by the
// transport.Mux (GossipPreamble). It serves masterless mode (Owner splits
// keys among live members by rendezvous hashing) and the health view of
// every mode.
//
// Usage:
//
//	ln, _ := net.Listen("tcp", "10.0.0.1:7001")
//	mux := transport.NewMux(ln, transport.MuxOptions{})
//	cfg := membership.DefaultConfig()
//	cfg.Name = "server_a"
//	cfg.Mux = mux
//	cfg.ClusterName = "orders"
//	cfg.Meta = []byte(`{"server_port":8001}`)
//	cfg.Events = func(ev membership.Event) { log.Println(ev.Type, ev.Member.Name) }
//	m, err := membership.New(cfg) // before mux.Serve
//	if err != nil { ... }
//	defer m.Shutdown()
//	go mux.Serve()
//	if _, err := m.Join(ctx, []string{"10.0.0.2:7002", "10.0.0.3:7003"}); err != nil { ... }
//	owner, _ := m.Owner("customer-42") // who works on this key
//	...
//	m.Leave(ctx) // graceful: the others see "left", not "failed"
//
// What this package adds to memberlist, and how:
//
//   - Metadata of up to MaxMetaSize (64 KiB), not memberlist's 512-byte
//     node meta: small metadata travels inline in the node meta; larger
//     metadata is announced there by SHA-256 and fetched by each peer from
//     its owner over one stream (MetaPreamble). See meta.go.
//   - Suspect and left states (and incarnations), which memberlist's
//     delegates and API do not report: the Transport watches the
//     alive/suspect/dead messages memberlist itself sends and receives,
//     and a suspicion that outlives memberlist's longest suspicion timeout
//     while memberlist still lists the member is cleared. A suspicion
//     shorter than a gossip interval may go unreported. See wire.go.
//   - Periodic rejoin of the seed addresses given to Join, so that the two
//     sides of a partition longer than the suspicion timeout merge again
//     (hashicorp/memberlist#222). See Config.RejoinInterval.
//   - Isolation of clusters by name (memberlist's packet and stream label),
//     and refusal of members that are not QCluster members.
//   - Security (see Config.TLS and Config.GossipKeys): streams (gossip and
//     metadata) dialled over TLS and accepted only from peers whose
//     verified certificate names this cluster; memberlist's AES-GCM
//     encryption of packets and streams, which the wire observer decrypts
//     too; key rotation at run time (InstallKey, UseKey, RemoveKey) that
//     avoids a data race in memberlist's Keyring.RemoveKey; and counters
//     of what was refused (Stats).
//
// Failure detection follows memberlist's bounds: a member that stops
// answering is suspected once a probe round reaches it (about one probe
// interval per other member at worst, usually much less) and declared dead
// after the suspicion timeout, SuspicionMult*max(1, log10(N))*ProbeInterval
// when other members confirm the suspicion, up to 6 times that when they
// cannot (see Config.SuspicionTimeout).
package membership
