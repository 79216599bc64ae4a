package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// example is one program under examples/ and the commands of its README: how to generate its
// client code from kv.thrift, build it and run it.
type example struct {
	dir      string // folder under examples/
	prefix   string // the prefix of every key the program writes
	greeting string // the value it writes at PREFIX/greeting
	// packages are the Debian packages the README installs, for the skip message.
	packages string
	// probes are commands that succeed when the toolchain and the Thrift library are installed.
	probes [][]string
	// steps generate the client code and build the program, in the example's folder.
	steps [][]string
	// run runs the program; the argument "ADDR" becomes the node's Thrift address.
	run []string
}

// javaClasspath is what the Java example needs besides its own classes (Debian's libthrift-java).
const javaClasspath = "/usr/share/java/thrift.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar"

var examples = map[string]example{
	"python": {
		dir: "python", prefix: "py/", greeting: "hello from python",
		packages: "thrift-compiler python3-thrift python3-six",
		// Debian's python3 (not whichever comes first on PATH): python3-thrift is installed for it.
		// The protocol module imports six, which python3-thrift does not depend on.
		probes: [][]string{{"/usr/bin/python3", "-c", "import thrift.protocol.TBinaryProtocol"}},
		steps:  [][]string{{"thrift", "--gen", "py", "../../thrift/kv.thrift"}},
		run:    []string{"/usr/bin/python3", "kv_example.py", "ADDR"},
	},
	"ruby": {
		dir: "ruby", prefix: "rb/", greeting: "hello from ruby",
		packages: "thrift-compiler ruby ruby-thrift",
		probes:   [][]string{{"ruby", "-e", "require 'thrift'"}},
		steps:    [][]string{{"thrift", "--gen", "rb", "../../thrift/kv.thrift"}},
		run:      []string{"ruby", "kv_example.rb", "ADDR"},
	},
	"perl": {
		dir: "perl", prefix: "pl/", greeting: "hello from perl",
		packages: "thrift-compiler libthrift-perl libbit-vector-perl libclass-accessor-perl",
		probes:   [][]string{{"perl", "-MThrift", "-MBit::Vector", "-MClass::Accessor", "-e", "1"}},
		steps:    [][]string{{"thrift", "--gen", "perl", "../../thrift/kv.thrift"}},
		run:      []string{"perl", "kv_example.pl", "ADDR"},
	},
	"php": {
		dir: "php", prefix: "php/", greeting: "hello from php",
		packages: "thrift-compiler php-cli php-thrift",
		probes:   [][]string{{"php", "-r", "exit(is_file('/usr/lib/php/Transport/TSocket.php') ? 0 : 1);"}},
		steps:    [][]string{{"thrift", "--gen", "php", "../../thrift/kv.thrift"}},
		run:      []string{"php", "kv_example.php", "ADDR"},
	},
	"java": {
		dir: "java", prefix: "java/", greeting: "hello from java",
		packages: "thrift-compiler default-jdk-headless libthrift-java",
		probes:   [][]string{{"javac", "-version"}, {"ls", "/usr/share/java/thrift.jar", "/usr/share/java/slf4j-api.jar", "/usr/share/java/slf4j-nop.jar"}},
		steps: [][]string{
			{"thrift", "--gen", "java:generated_annotations=suppress", "../../thrift/kv.thrift"},
			{"javac", "-nowarn", "-d", "classes", "-cp", javaClasspath, "-sourcepath", "gen-java", "KVExample.java"},
		},
		run: []string{"java", "-cp", "classes:" + javaClasspath, "KVExample", "ADDR"},
	},
	"cpp": {
		dir: "cpp", prefix: "cpp/", greeting: "hello from c++",
		packages: "thrift-compiler g++ libthrift-dev libboost-dev",
		probes:   [][]string{{"g++", "--version"}, {"ls", "/usr/include/thrift/Thrift.h", "/usr/include/boost/version.hpp"}},
		steps: [][]string{
			{"thrift", "--gen", "cpp:no_skeleton", "../../thrift/kv.thrift"},
			{"g++", "-std=c++17", "-I", "gen-cpp", "-o", "kv_example", "kv_example.cpp", "gen-cpp/KV.cpp", "gen-cpp/kv_types.cpp", "-lthrift"},
		},
		run: []string{"./kv_example", "ADDR"},
	},
}

// runExample runs one example as its README says, in a copy of its folder beside a copy of the
// committed kv.thrift (so no client code generated earlier in the checkout is used): generate,
// build, then run it against a real node. The program does a put, a get, a prefix scan over two
// pages, a failed and a successful CAS, a transaction, a delete, an oversize key and status. The
// test checks what it printed and, through the Go client, what it left in the store. Without the
// toolchain it skips, except under CI=true, where .ci/run installs it.
func runExample(t *testing.T, lang string) {
	ex := examples[lang]
	var missing []string
	if _, err := exec.LookPath("thrift"); err != nil {
		missing = append(missing, "thrift compiler")
	}
	for _, probe := range ex.probes {
		if out, err := exec.Command(probe[0], probe[1:]...).CombinedOutput(); err != nil {
			missing = append(missing, fmt.Sprintf("%q failed (%v: %s)", strings.Join(probe, " "), err, strings.TrimSpace(lastLines(string(out), 3))))
		}
	}
	if len(missing) > 0 { // .ci/run installs them
		testutil.Unmet(t, "%s example needs Debian's %s: %s", lang, ex.packages, strings.Join(missing, "; "))
	}

	root := t.TempDir()
	dir := filepath.Join(root, "examples", ex.dir)
	copyFiles(t, filepath.Join("..", "..", "examples", ex.dir), dir)
	copyFiles(t, filepath.Join("..", "..", "thrift"), filepath.Join(root, "thrift"), "kv.thrift")
	ctx := ctxTimeout(t, 5*time.Minute)
	for _, step := range ex.steps {
		mustExec(ctx, t, dir, step...)
	}

	p := newProc(t, "n1")
	p.start()
	run := make([]string, len(ex.run))
	for i, a := range ex.run {
		run[i] = strings.ReplaceAll(a, "ADDR", p.thriftAddr)
	}
	stdout := mustExec(ctx, t, dir, run...)
	pre := ex.prefix
	want := strings.Join([]string{
		"get: " + ex.greeting + " (mod_index, create_index as put returned)",
		fmt.Sprintf("scan: %sk0 %sk1 %sk2, continuation", pre, pre, pre),
		fmt.Sprintf("scan: %sk3 %sk4, end", pre, pre),
		"cas: failed, current v0",
		"cas: succeeded",
		"txn: succeeded, " + ex.greeting,
		"delete: deleted",
		"oversize key: InvalidArgument field key",
		"status: n1 leader",
	}, "\n")
	if got := strings.TrimSpace(stdout); got != want {
		t.Fatalf("%s example printed:\n%s\nwant:\n%s", lang, got, want)
	}

	// What the program did is in the store ("" means deleted).
	c := mustClient(t, p.thriftAddr)
	for key, value := range map[string]string{"greeting": ex.greeting, "k0": "swapped", "k3": "v3", "txn": "done", "k4": ""} {
		got, err := c.Get(ctxTimeout(t, 5*time.Second), []byte(pre+key))
		if err != nil {
			t.Fatalf("get %s%s: %v", pre, key, err)
		}
		switch {
		case value == "" && got.Found:
			t.Errorf("%s%s = %q after the example deleted it", pre, key, got.Entry.Value)
		case value != "" && (!got.Found || string(got.GetEntry().GetValue()) != value):
			t.Errorf("%s%s: found %v value %q, want %q", pre, key, got.Found, got.GetEntry().GetValue(), value)
		}
	}
}

// copyFiles copies the files directly in src (only those named, when names are given) into dst,
// which it creates. Subfolders are left out: they hold generated code and builds.
func copyFiles(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mustExec runs argv in dir and returns its standard output; it fails the test with both outputs
// when the command fails.
func mustExec(ctx context.Context, t *testing.T, dir string, argv ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, stdout.String(), lastLines(stderr.String(), 40))
	}
	return stdout.String()
}

func TestExample_Python(t *testing.T) { runExample(t, "python") }
func TestExample_Ruby(t *testing.T)   { runExample(t, "ruby") }
func TestExample_Perl(t *testing.T)   { runExample(t, "perl") }
func TestExample_PHP(t *testing.T)    { runExample(t, "php") }
func TestExample_Java(t *testing.T)   { runExample(t, "java") }
func TestExample_Cpp(t *testing.T)    { runExample(t, "cpp") }
