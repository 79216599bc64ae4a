//go:build !race

package jepsenlite

// raceBuild reports whether the test binary has the race detector (the
// kvnode binaries never do: they are built with CGO_ENABLED=0).
const raceBuild = false
