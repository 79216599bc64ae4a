package integration

import (
	"flag"
	"os"
	"testing"
)

// Flags of this package's long tests.
var (
	flagProfile   = flag.String("integration.profile", "", "test profile: short (default) or long, which also runs the tests that take many minutes; env INTEGRATION_PROFILE")
	flagLargeKeys = flag.Int("integration.large-keys", 10_000_000, "keys TestPebble_TenMillionKeysUnderGOMEMLIMIT loads")
)

// longProfile reports whether the long profile was chosen (the flag
// winning over the environment).
func longProfile() bool {
	p := *flagProfile
	if p == "" {
		p = os.Getenv("INTEGRATION_PROFILE")
	}
	return p == "long"
}

// skipUnlessLong skips t in the short profile, naming the command that
// runs it.
func skipUnlessLong(t *testing.T, command string) {
	t.Helper()
	if !longProfile() {
		t.Skipf("long profile only: %s", command)
	}
}
