// Package integration tests real kvnode processes on real sockets: the
// binary is built once per run, started with its own data directory and
// loopback ports, killed with SIGKILL or stopped with SIGTERM, restarted, and
// driven through the Go client, raw TCP, kvctl and the programs under examples/
// (each built from kv.thrift as its README says).
package integration
