// Package deploy holds the tests of cubekv's deployment files in deploy/:
// cross-built kvnode and kvctl under qemu-user (ARMv7 and arm64), the systemd
// unit checked by systemd-analyze, the FROM scratch image and the
// three-node docker compose file, and deploy/install.sh in --dry-run mode.
//
// The tests need external tools (qemu-arm-static, qemu-aarch64-static,
// systemd-analyze, docker with compose, bash). Outside CI a test whose tool
// is missing is skipped with a message naming the Debian package; with
// CI=true a missing tool is a failure (.ci/run installs them).
package deploy
