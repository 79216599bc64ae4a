package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where every
// prerequisite is installed and a missing one is a failure.
func CI() bool { return os.Getenv("CI") == "true" }

// Unmet reports a missing prerequisite (a tool, root, a daemon): it skips
// the test with the message, except under CI=true, where it fails it, so
// that no check is skipped unnoticed in CI.
func Unmet(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		tb.Fatalf("%s (CI=true: a missing prerequisite is a failure)", msg)
	}
	tb.Skipf("skipping: %s (under CI=true this fails)", msg)
}

// LookPath returns the path of the command name, or reports it Unmet;
// install says how to get it (for example "the Debian package thrift-compiler").
func LookPath(tb testing.TB, name, install string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unmet(tb, "%s not found (%v); install %s", name, err, install)
	}
	return p
}
