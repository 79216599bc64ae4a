// Package testutil is what cubekv's tests share: polling a condition with
// a deadline instead of sleeping (Eventually, WaitFor), loopback addresses
// that are free or dead and never handed out twice in one test binary
// (FreeAddr, FreePort, DeadAddr), a missing prerequisite that skips a test
// on a developer machine but fails it under CI=true (Unmet, LookPath), and
// small file damage for corruption tests (FlipByte).
//
// Every helper takes a testing.TB, calls tb.Helper, and fails the test
// itself, as raft's testing.go and Consul's sdk/testutil do.
package testutil
