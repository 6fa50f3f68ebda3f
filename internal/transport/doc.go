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
// then message frames. A frame is a 4-byte big-endian payload length followed
// by the payload. The hello payload is
//
//	version (1 byte, currently 1) | from ID (8 bytes BE) | to ID (8 bytes BE) | cluster name (rest, UTF-8)
//
// and a message payload is a protobuf-encoded raftpb.Message. Streams are
// one-way: the receiver never writes to the connection.
//
// Neither part holds global state; TLS is meant to be layered in by the Mux
// (terminating a ClientHello and dispatching by ALPN) and by [Config.Dial]
// on the dialing side, without changing the stream format.
package transport
