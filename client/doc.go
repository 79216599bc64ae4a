// Package client is the Go client for cubekv. It owns routing requests to the cluster (starting from
// the last node that answered and following NotLeader redirects), retries with exponential backoff
// and jitter within the caller's deadline, exactly-once writes (every write carries a kv.RequestID
// taken from a pool of sessions, and every retry of a write reuses it), and the mapping of the Thrift
// exceptions to the errors callers test with errors.Is and errors.As.
package client
