package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pythonClient is a Python program using code generated from kv.thrift by
// the thrift compiler and Debian's python3-thrift library: it writes, reads,
// scans and does a compare-and-swap against a running node, then prints a
// summary the test checks.
const pythonClient = `
import sys
from thrift.transport import TSocket, TTransport
from thrift.protocol import TBinaryProtocol
from cubekv.kv import KV
from cubekv.kv.ttypes import PutRequest, GetRequest, ScanRequest, CASRequest, InvalidArgument

host, port = sys.argv[1].rsplit(":", 1)
sock = TTransport.TFramedTransport(TSocket.TSocket(host, int(port)))
client = KV.Client(TBinaryProtocol.TBinaryProtocol(sock))
sock.open()
put = client.put(PutRequest(key=b"py/greeting", value=b"hello from python"))
got = client.get(GetRequest(key=b"py/greeting"))
assert got.found and got.entry.value == b"hello from python", got
assert got.entry.mod_index == put.index, (got, put)
for i in range(5):
    client.put(PutRequest(key=b"py/k%d" % i, value=b"v%d" % i))
page = client.scan(ScanRequest(prefix=b"py/k", limit=3))
keys = [e.key.decode() for e in page.entries]
cas = client.cas(CASRequest(key=b"py/k0", expected_value=b"nope", value=b"x"))
try:
    client.put(PutRequest(key=b"", value=b"x"))
    print("empty key accepted")
    sys.exit(1)
except InvalidArgument as e:
    invalid = e.field
print("ok", got.entry.value.decode(), ",".join(keys), page.continuation is not None, cas.succeeded, cas.current.value.decode(), invalid)
sock.close()
`

// TestPythonClient_GeneratedCodeTalksToKVNode drives a node from Python
// through code generated from kv.thrift: the interface works from another
// language with the default framed transport and binary protocol.
func TestPythonClient_GeneratedCodeTalksToKVNode(t *testing.T) {
	thriftBin, err := exec.LookPath("thrift")
	py := "/usr/bin/python3"
	_, pyErr := os.Stat("/usr/lib/python3/dist-packages/thrift/__init__.py")
	switch {
	case err == nil && pyErr == nil:
	case os.Getenv("CI") == "true": // .ci/run installs both: missing is a failure
		t.Fatalf("thrift compiler or python3-thrift missing under CI (thrift: %v, python3-thrift: %v)", err, pyErr)
	default: // a developer machine without them
		t.Skipf("needs the thrift compiler and Debian's python3-thrift (thrift: %v, python3-thrift: %v)", err, pyErr)
	}
	gen := t.TempDir()
	if out, err := exec.Command(thriftBin, "--gen", "py", "-out", gen, "../../thrift/kv.thrift").CombinedOutput(); err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	script := filepath.Join(gen, "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newProc(t, "n1")
	p.start()
	cmd := exec.Command(py, script, p.thriftAddr)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+gen)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	want := "ok hello from python py/k0,py/k1,py/k2 True False v0 key"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("python client printed %q, want %q", got, want)
	}
}
