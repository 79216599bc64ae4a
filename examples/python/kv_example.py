"""cubekv from Python: every call of the KV service once, through code
generated from thrift/kv.thrift and Debian's python3-thrift. Usage:
  python3 kv_example.py [HOST:PORT]        (default 127.0.0.1:9090)
It checks each answer and exits non-zero at the first surprise.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen-py"))

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from cubekv.kv import KV
from cubekv.kv.ttypes import (CASRequest, Compare, CompareOp, CompareTarget, DeleteRequest,
                              GetRequest, InvalidArgument, Op, OpType, PutRequest, Role,
                              ScanRequest, TxnRequest)


def check(cond, what):
    if not cond:
        sys.exit("unexpected: %s" % (what,))


host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9090").rsplit(":", 1)
socket = TSocket.TSocket(host, int(port))
socket.setTimeout(10000)  # milliseconds
transport = TTransport.TFramedTransport(socket)
kv = KV.Client(TBinaryProtocol.TBinaryProtocol(transport))
transport.open()
p = b"py/"

# put, then get the value and both indexes. Binary fields are bytes.
put = kv.put(PutRequest(key=p + b"greeting", value=b"hello from python"))
got = kv.get(GetRequest(key=p + b"greeting"))
check(got.found and got.entry.create_index == put.create_index and got.entry.mod_index == put.index, got)
print("get: %s (mod_index, create_index as put returned)" % got.entry.value.decode())

# A prefix scan, three keys a page; the continuation is the next page's start.
for i in range(5):
    kv.put(PutRequest(key=p + b"k%d" % i, value=b"v%d" % i))
page = kv.scan(ScanRequest(prefix=p + b"k", limit=3))
check(page.continuation is not None, "first page has no continuation")
print("scan: %s, continuation" % " ".join(e.key.decode() for e in page.entries))
page = kv.scan(ScanRequest(prefix=p + b"k", limit=3, start_key=page.continuation))
check(page.continuation is None, "last page has a continuation")
print("scan: %s, end" % " ".join(e.key.decode() for e in page.entries))

# Compare-and-swap: a failed compare is an answer, not an exception.
cas = kv.cas(CASRequest(key=p + b"k0", expected_value=b"nope", value=b"swapped"))
check(not cas.succeeded, "cas on a wrong value succeeded")
print("cas: failed, current %s" % cas.current.value.decode())
cas = kv.cas(CASRequest(key=p + b"k0", expected_mod_index=cas.current.mod_index, value=b"swapped"))
check(cas.succeeded, "cas on the current mod_index failed")
print("cas: succeeded")

# A transaction: if greeting still holds its value, write txn and read greeting.
txn = kv.txn(TxnRequest(
    compares=[Compare(key=p + b"greeting", target=CompareTarget.VALUE, op=CompareOp.EQUAL,
                      value=b"hello from python")],
    success=[Op(type=OpType.PUT, key=p + b"txn", value=b"done"),
             Op(type=OpType.GET, key=p + b"greeting")],
    failure=[]))
check(txn.succeeded and len(txn.results) == 2, txn)
print("txn: succeeded, %s" % txn.results[1].entry.value.decode())

deleted = kv.delete_key(DeleteRequest(key=p + b"k4"))
check(deleted.deleted, "delete found no key")
print("delete: deleted")

# A key over the 4 KiB limit is refused before anything is proposed, with
# InvalidArgument (Timeout means "outcome unknown: retry with the same
# request_id").
try:
    kv.put(PutRequest(key=b"x" * 4097, value=b"x"))
    check(False, "oversize key accepted")
except InvalidArgument as e:
    print("oversize key: InvalidArgument field %s" % e.field)

st = kv.status()
check(st.role == Role.LEADER, st)
print("status: %s leader" % st.node_id)
transport.close()
