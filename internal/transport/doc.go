// Package transport carries QCluster's peer-to-peer traffic over the single
// TCP port every peer listens on.
//
// It has two parts:
//
//   - [Mux] splits one [net.Listener] by the first bytes of each connection:
//     a connection that starts with a registered preamble (such as
//     [RaftPreamble]) goes to that preamble's handler, anything else (an HTTP
//     request) goes to [Mux.HTTPListener] with the peeked bytes replayed.
//   - [Transport] moves raft messages between peers: one outbound stream per
//     peer, fed by a bounded queue and a single writer goroutine, with
//     reconnection and exponential backoff; inbound streams are accepted
//     through the Mux and delivered to the raft node.
//
// A raft stream on the wire is the 8-byte [RaftPreamble], one hello frame and
// then message frames and snapshot frames. A frame is a 4-byte big-endian
// payload length followed by the payload. The hello payload is
//
//	version (1 byte, [HelloVersion], currently 3) | from ID (8 bytes BE) | to ID (8 bytes BE) | cluster name (rest, UTF-8)
//
// and a message payload is a protobuf-encoded raftpb.Message (whose first
// byte is never 0). A MsgSnap whose encoding is larger than
// [Config.SnapshotChunkSize] (1 MiB) is sent as snapshot frames instead,
// interleaved with the stream's other messages:
//
//	0 (1 byte) | sequence number (4 bytes BE, from 0) | body
//
// where frame 0's body is the snapshot's data length (8 bytes BE, not 0)
// and the MsgSnap encoded without its Snapshot.Data, and the next frames'
// bodies are the data, in order, non-empty, up to exactly that length; the
// receiver then delivers the MsgSnap whole. Streams are one-way: the
// receiver never writes to the connection.
//
// # Goodbye, reset, and a peer whose process is gone
//
// A writer that closes its stream deliberately ([Transport.Close],
// [Transport.RemovePeer], [Transport.SetPeer] with a new address) first
// sends a goodbye frame, a frame of length 0 (the 4 bytes 0 0 0 0; no
// message encodes to nothing), and then closes the connection. Every
// other close (a write that timed out or failed, a stream the reader
// ended, a goodbye that could not be written within 200ms, Close while a
// write is under way) is a reset: SO_LINGER 0 on the TCP connection,
// under TLS too, so the reader sees ECONNRESET. A live writer therefore
// never ends a stream with a clean end of stream; the kernel of a process
// that died (kill -9, a panic, an out-of-memory kill) does. When an
// authenticated inbound stream ends cleanly at a frame boundary without a
// goodbye, the reader probes the peer: a plain TCP connect to its
// address (within Config.DialTimeout: the refusal takes a round trip),
// repeated while it is accepted or reset after pauses of
// 1, 2, 4, 8, 16 and 32ms (a killed process's listener may outlive its
// streams by a moment, and reset the connects in its backlog when it
// closes), and only if a connect is refused (ECONNREFUSED) is
// [Config.PeerGone] called. [Transport.StreamEnds] counts the goodbyes,
// resets, ends without a goodbye and the probes' outcomes.
//
// Version 2 closed its streams cleanly without a goodbye, which a reader
// of version 3 would take for a crash; versions 1 (a MsgSnap as one frame
// of up to 64 MiB) and 2 are not spoken: a peer talks to peers of its own
// version only, and refuses another version's hello.
//
// # Security
//
// With [MuxOptions.TLS] the Mux accepts only TLS 1.3 (see package pki for
// the configurations): it terminates TLS within the preamble deadline and
// routes by ALPN protocol — [ALPNPeer] for QCluster's streams, which then
// carry their preamble inside TLS and need a verified client certificate,
// anything else to the HTTP listener as a *tls.Conn. With [Config.TLS] the
// Transport dials TLS, checks that the server's certificate names the peer
// it meant to reach, and accepts an inbound stream only if the client
// certificate names the node its hello claims. For a member, whose
// identifier [Config.Identifier] knows, the certificate must name exactly
// that identifier; only for another node (one joining) is the
// certificate's identifier mapped to a node ID with [Config.NodeID], a
// 64-bit hash. The stream format is the same with and without TLS.
//
// Without TLS, the hello's cluster name (compared exactly: an empty name
// only matches an empty name) keeps two clusters on one network from
// merging by mistake; it authenticates nothing.
//
// Limits, each counted when hit ([Mux.Stats], [Transport.Refusals]): open
// connections per remote IP address ([MuxOptions.MaxConnsPerIP], default
// 64), the TLS handshake and preamble deadline
// ([MuxOptions.PreambleTimeout], 5s), the hello deadline (5s), the frame
// size ([Config.MaxFrameSize], 8 MiB, snapshot frames included, with a
// receive buffer that grows only as bytes arrive), the stall of a started
// frame ([Config.FrameTimeout], 10s), and for snapshots in reassembly
// (Refusals.BadSnapshot): one at a time per stream, in sequence, no more
// data than announced, the data of all of them within
// [Config.MaxSnapshotSize] (256 MiB, reserved when a snapshot announces
// its size), and each next frame within FrameTimeout, even while other
// messages keep coming.
//
// Neither part holds global state.
package transport
