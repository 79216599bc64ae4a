// cubekv from Java: every call of the KV service once, through code generated
// from thrift/kv.thrift and Debian's libthrift-java. Usage:
//   java -cp ... KVExample [HOST:PORT]        (default 127.0.0.1:9090)
// It checks each answer and exits non-zero at the first surprise.

import io.cubekv.kv.*;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.thrift.protocol.TBinaryProtocol;
import org.apache.thrift.transport.TSocket;
import org.apache.thrift.transport.TTransport;
import org.apache.thrift.transport.layered.TFramedTransport; // .layered since Thrift 0.14

public class KVExample {
  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static String s(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }

  static void check(boolean cond, String what) {
    if (!cond) {
      System.err.println("unexpected: " + what);
      System.exit(1);
    }
  }

  static String keys(ScanResponse page) {
    List<String> out = new ArrayList<>();
    for (Entry e : page.getEntries()) {
      out.add(s(e.getKey()));
    }
    return String.join(" ", out);
  }

  public static void main(String[] args) throws Exception {
    String[] hp = (args.length > 0 ? args[0] : "127.0.0.1:9090").split(":");
    TTransport transport = new TFramedTransport(new TSocket(hp[0], Integer.parseInt(hp[1]), 10_000));
    KV.Client kv = new KV.Client(new TBinaryProtocol(transport));
    transport.open();
    String p = "java/";

    // put, then get the value and both indexes. Binary fields are set as byte[]
    // (or ByteBuffer) and read with getX() as byte[] (bufferForX() for a ByteBuffer).
    PutResponse put = kv.put(new PutRequest().setKey(b(p + "greeting")).setValue(b("hello from java")));
    GetResponse got = kv.get(new GetRequest().setKey(b(p + "greeting")));
    check(got.isFound() && got.getEntry().getCreate_index() == put.getCreate_index()
        && got.getEntry().getMod_index() == put.getIndex(), got.toString());
    System.out.println("get: " + s(got.getEntry().getValue()) + " (mod_index, create_index as put returned)");

    // A prefix scan, three keys a page; the continuation is the next page's start.
    for (int i = 0; i < 5; i++) {
      kv.put(new PutRequest().setKey(b(p + "k" + i)).setValue(b("v" + i)));
    }
    ScanResponse page = kv.scan(new ScanRequest().setPrefix(b(p + "k")).setLimit(3));
    check(page.isSetContinuation(), "first page has no continuation");
    System.out.println("scan: " + keys(page) + ", continuation");
    page = kv.scan(new ScanRequest().setPrefix(b(p + "k")).setLimit(3).setStart_key(page.getContinuation()));
    check(!page.isSetContinuation(), "last page has a continuation");
    System.out.println("scan: " + keys(page) + ", end");

    // Compare-and-swap: a failed compare is an answer, not an exception.
    CASResponse cas = kv.cas(new CASRequest().setKey(b(p + "k0")).setExpected_value(b("nope")).setValue(b("swapped")));
    check(!cas.isSucceeded(), "cas on a wrong value succeeded");
    System.out.println("cas: failed, current " + s(cas.getCurrent().getValue()));
    cas = kv.cas(new CASRequest().setKey(b(p + "k0"))
        .setExpected_mod_index(cas.getCurrent().getMod_index()).setValue(b("swapped")));
    check(cas.isSucceeded(), "cas on the current mod_index failed");
    System.out.println("cas: succeeded");

    // A transaction: if greeting still holds its value, write txn and read greeting.
    TxnResponse txn = kv.txn(new TxnRequest(
        Arrays.asList(new Compare().setKey(b(p + "greeting")).setTarget(CompareTarget.VALUE)
            .setOp(CompareOp.EQUAL).setValue(b("hello from java"))),
        Arrays.asList(new Op().setType(OpType.PUT).setKey(b(p + "txn")).setValue(b("done")),
            new Op().setType(OpType.GET).setKey(b(p + "greeting"))),
        new ArrayList<>()));
    check(txn.isSucceeded() && txn.getResultsSize() == 2, txn.toString());
    System.out.println("txn: succeeded, " + s(txn.getResults().get(1).getEntry().getValue()));

    DeleteResponse del = kv.delete_key(new DeleteRequest().setKey(b(p + "k4")));
    check(del.isDeleted(), "delete found no key");
    System.out.println("delete: deleted");

    // A key over the 4 KiB limit is refused before anything is proposed, with
    // InvalidArgument (io.cubekv.kv.Timeout means "outcome unknown: retry with
    // the same request_id").
    try {
      kv.put(new PutRequest().setKey(new byte[4097]).setValue(b("x")));
      check(false, "oversize key accepted");
    } catch (InvalidArgument e) {
      System.out.println("oversize key: InvalidArgument field " + e.getField());
    }

    StatusResponse st = kv.status();
    check(st.getRole() == Role.LEADER, st.toString());
    System.out.println("status: " + st.getNode_id() + " leader");
    transport.close();
  }
}
