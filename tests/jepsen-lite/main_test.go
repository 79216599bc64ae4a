package jepsenlite

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// Flags (each also an environment variable, the flag winning).
var (
	flagProfile  = flag.String("jepsen.profile", "", "scenario profile: short (default) or long; env JEPSEN_PROFILE")
	flagSeed     = flag.String("jepsen.seed", "", "base seed of every random choice; env JEPSEN_SEED; default: from the clock")
	flagResults  = flag.String("jepsen.results", "results", "folder for summary.txt and failure artifacts")
	flagLogStore = flag.String("jepsen.log-store", "", "kvnode --log-store for every scenario that does not choose one (bolt or wal); env JEPSEN_LOG_STORE; default: kvnode's")
	flagEngine   = flag.String("jepsen.engine", "", "kvnode --engine for every scenario (btree, arena, hash or pebble); env JEPSEN_ENGINE; default: kvnode's")
)

// engine is the --engine every scenario runs with; "" leaves kvnode's
// default.
func engine() string {
	if *flagEngine != "" {
		return *flagEngine
	}
	return os.Getenv("JEPSEN_ENGINE")
}

// logStore is the --log-store every scenario runs with unless it names
// one itself; "" leaves kvnode's default.
func logStore() string {
	if *flagLogStore != "" {
		return *flagLogStore
	}
	return os.Getenv("JEPSEN_LOG_STORE")
}

// binaries are the kvnode builds of this run, made once on first use.
type binaries struct {
	once   sync.Once
	dir    string
	normal string
	canary string
	err    error
	took   time.Duration
}

var bins binaries

// mustBinaries builds kvnode (CGO_ENABLED=0) and the canary build (-tags canary) once per run.
func mustBinaries(t *testing.T) *binaries {
	t.Helper()
	bins.once.Do(func() {
		start := time.Now()
		bins.dir, bins.err = os.MkdirTemp("", "cubekv-jepsen-bin-")
		if bins.err != nil {
			return
		}
		bins.normal = filepath.Join(bins.dir, "kvnode")
		bins.canary = filepath.Join(bins.dir, "kvnode-canary")
		for _, b := range []struct {
			out  string
			tags []string
		}{{bins.normal, nil}, {bins.canary, []string{"-tags", "canary"}}} {
			args := append([]string{"build", "-o", b.out}, b.tags...)
			args = append(args, "github.com/cubekv/cubekv/cmd/kvnode")
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go %v: %w: %s", args, err, out)
				return
			}
		}
		bins.took = time.Since(start)
	})
	if bins.err != nil {
		t.Fatalf("build kvnode: %v", bins.err)
	}
	return &bins
}

// profile returns the profile name.
func profile() string {
	if *flagProfile != "" {
		return *flagProfile
	}
	if p := os.Getenv("JEPSEN_PROFILE"); p != "" {
		return p
	}
	return "short"
}

// baseSeed returns the seed of this run.
func baseSeed(t *testing.T) uint64 {
	t.Helper()
	s := *flagSeed
	if s == "" {
		s = os.Getenv("JEPSEN_SEED")
	}
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("bad seed %q: %v", s, err)
	}
	return v
}

// requireNetns skips the test where the suite cannot build its network,
// except under CI=true, where it fails.
func requireNetns(t *testing.T) {
	t.Helper()
	if err := netnsSupport(); err != nil {
		testutil.Unmet(t, "jepsen-lite needs root and `ip netns`: %v", err)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}
