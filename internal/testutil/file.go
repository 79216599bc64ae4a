package testutil

import (
	"os"
	"testing"
)

// FlipByte inverts one byte in the middle of the file at path, the
// smallest damage a checksum must catch.
func FlipByte(tb testing.TB, path string) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b) == 0 {
		tb.Fatalf("flip a byte of %s: the file is empty", path)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}
