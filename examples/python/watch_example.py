"""Watch a prefix of cubekv from Python: the blocking-query loop any Thrift
client can run, through code generated from thrift/kv.thrift. Usage:
  python3 watch_example.py HOST:PORT PREFIX [AFTER_INDEX [COUNT]]
It prints one line per change (index, PUT or DELETE, key, value), in index
order, and stops after COUNT changes (default: never). When the node no
longer holds the changes after AFTER_INDEX (Compacted), it re-reads the
prefix with a scan and goes on from the index the scan was served at.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen-py"))

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from cubekv.kv import KV
from cubekv.kv.ttypes import Compacted, EventType, ScanRequest, WatchRequest

host, port = sys.argv[1].rsplit(":", 1)
prefix = sys.argv[2].encode()
after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
count = int(sys.argv[4]) if len(sys.argv) > 4 else -1

WAIT_MS = 5000
socket = TSocket.TSocket(host, int(port))
socket.setTimeout(WAIT_MS + 10000)  # above the wait: the call blocks that long
transport = TTransport.TFramedTransport(socket)
kv = KV.Client(TBinaryProtocol.TBinaryProtocol(transport))
transport.open()


def resync():
    """Re-read the prefix; return the index to watch from. Pages are separate
    reads, so it is the first page's index: later changes are watched again
    even where a later page already shows them."""
    keys, start, applied = [], None, None
    while True:
        page = kv.scan(ScanRequest(prefix=prefix, start_key=start))
        keys += [e.key.decode() for e in page.entries]
        if applied is None:
            applied = page.info.applied_index
        if page.continuation is None:
            break
        start = page.continuation
    print("resync: %s at %d" % (" ".join(keys), applied), flush=True)
    return applied


seen = 0
while seen != count:
    try:
        resp = kv.watch(WatchRequest(prefix=prefix, after_index=after, timeout_ms=WAIT_MS))
    except Compacted as c:
        # The node's history starts after our index: read the state, go on from there.
        after = resync()
        continue
    for e in resp.events:
        if e.type == EventType.PUT:
            print("%d PUT %s %s" % (e.index, e.key.decode(), e.entry.value.decode()), flush=True)
        else:
            print("%d DELETE %s" % (e.index, e.key.decode()), flush=True)
        seen += 1
        if seen == count:
            break
    # Where to go on from, even when the answer was empty (the wait passed).
    after = resp.resume_index
transport.close()
