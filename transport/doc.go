// Package transport carries cubekv's bytes: it knows nothing of keys or Raft state.
//
// It owns:
//   - the Thrift front door's socket server (Server, ServerConfig): our own accept loop over a
//     thrift.TProcessor, with hard limits on frame and message size, the number of open connections,
//     idle and per-request read time, and write time; one goroutine per connection; a panic or a
//     transport or protocol error closes only that connection;
//   - the Thrift protocol and transport factories and configuration shared by both ends
//     (NewProtocolFactory, NewTransportFactory, TConfiguration);
//   - the client side: dialed connections (Conn, DialConfig), their pool (Pool), and ContextDone,
//     the deadline test a caller's retry loop shares with Conn.Do;
//   - the Raft stream layer (TCPStreamLayer, NewRaftTransport): TCP, optionally TLS, under raft's
//     NetworkTransport, wrapped in RaftTransport, which closes an append pipeline whose send has
//     been stuck for the transport timeout (a raft v1.7.3 hang after a follower rejects appends).
package transport
