//go:build !canary

package node

// canaryBuild reports whether this binary was built with the canary tag,
// which alone allows Config.UnsafeLocalReads.
const canaryBuild = false
