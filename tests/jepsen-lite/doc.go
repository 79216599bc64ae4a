// Package jepsenlite holds black-box fault tests over real kvnode processes.
//
// Every node runs in a network namespace of its own, attached by a veth pair
// to a Linux bridge that lives in a hub namespace; the test process reaches
// the nodes through one more veth pair on the same bridge. Nemeses kill,
// pause, partition (iptables DROP rules inside the node namespaces), change
// membership and move leadership while clients drive register, set and
// exactly-once counter workloads through package client. Every operation is
// recorded with invoke and completion times and checked afterwards: the
// register history with porcupine, the set for lost acknowledged adds, the
// counters for lost or duplicated increments, and every node's /digest for
// agreement. A lock scenario holds client.Lock through the same faults and
// fails when a holder whose lock reported no loss is fenced out. See README.md for profiles, flags and the results folder.
//
// The package has no non-test code; `go test ./tests/jepsen-lite` runs the
// short profile.
package jepsenlite
