// Package nodetest runs cubekv nodes in one process for tests: a Cluster of
// node.Nodes over raft's in-memory transport and stores, a loopback
// node.Remote that reaches the other nodes' Go API the way server.Forwarder
// reaches their front doors, and a fake node.Membership standing in for
// gossip's liveness view. With them, forwarding, membership changes,
// leadership transfer, backup and restore run in-process, where a failure
// points at a line.
//
// The shape follows hashicorp/raft's testing.go (MakeCluster over
// InmemTransport and InmemStore, Connect and Disconnect for partitions) and
// Consul's testutil: every constructor takes a testing.TB, fails it on
// error, and closes what it started in tb.Cleanup.
package nodetest
