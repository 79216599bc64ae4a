//go:build canary

package node

// canaryBuild reports whether this binary was built with the canary tag,
// which alone allows Config.UnsafeLocalReads. Such binaries exist only to
// prove that the linearizability checker catches stale reads.
const canaryBuild = true
