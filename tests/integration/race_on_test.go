//go:build race

package integration

// raceBuild makes the kvnode under test a race-detector build when the tests
// themselves run with -race.
const raceBuild = true
