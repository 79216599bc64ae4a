// cubekv from C++: every call of the KV service once, through code generated
// from thrift/kv.thrift and Debian's libthrift-dev. Usage:
//   ./kv_example [HOST:PORT]        (default 127.0.0.1:9090)
// It checks each answer and exits non-zero at the first surprise.

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h> // TFramedTransport
#include <thrift/transport/TSocket.h>

#include "KV.h" // generated: namespace cubekv::kv

using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TSocket;
namespace kv = cubekv::kv;

static void check(bool cond, const std::string& what) {
  if (!cond) {
    std::cerr << "unexpected: " << what << std::endl;
    std::exit(1);
  }
}

static std::string keys(const kv::ScanResponse& page) {
  std::string out;
  for (const auto& e : page.entries) {
    out += (out.empty() ? "" : " ") + e.key;
  }
  return out;
}

int main(int argc, char** argv) {
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1:9090";
  auto colon = addr.rfind(':');
  auto socket = std::make_shared<TSocket>(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)));
  auto transport = std::make_shared<TFramedTransport>(socket);
  kv::KVClient client(std::make_shared<TBinaryProtocol>(transport));
  transport->open();
  const std::string p = "cpp/";

  // put, then get the value and both indexes. Binary fields are std::string
  // (bytes, not necessarily text). Set fields with __set_x so optional ones
  // are marked as set; read __isset.x before an optional field.
  kv::PutRequest putReq;
  putReq.__set_key(p + "greeting");
  putReq.__set_value("hello from c++");
  kv::PutResponse put;
  client.put(put, putReq);
  kv::GetRequest getReq;
  getReq.__set_key(p + "greeting");
  kv::GetResponse got;
  client.get(got, getReq);
  check(got.found && got.entry.create_index == put.create_index && got.entry.mod_index == put.index, "get indexes");
  std::cout << "get: " << got.entry.value << " (mod_index, create_index as put returned)" << std::endl;

  // A prefix scan, three keys a page; the continuation is the next page's start.
  for (int i = 0; i < 5; i++) {
    kv::PutRequest r;
    r.__set_key(p + "k" + std::to_string(i));
    r.__set_value("v" + std::to_string(i));
    kv::PutResponse ignored;
    client.put(ignored, r);
  }
  kv::ScanRequest scanReq;
  scanReq.__set_prefix(p + "k");
  scanReq.__set_limit(3);
  kv::ScanResponse page;
  client.scan(page, scanReq);
  check(page.__isset.continuation, "first page has no continuation");
  std::cout << "scan: " << keys(page) << ", continuation" << std::endl;
  scanReq.__set_start_key(page.continuation);
  kv::ScanResponse last; // a fresh one: reading into a struct does not clear its __isset flags
  client.scan(last, scanReq);
  check(!last.__isset.continuation, "last page has a continuation");
  std::cout << "scan: " << keys(last) << ", end" << std::endl;

  // Compare-and-swap: a failed compare is an answer, not an exception.
  kv::CASRequest casReq;
  casReq.__set_key(p + "k0");
  casReq.__set_expected_value("nope");
  casReq.__set_value("swapped");
  kv::CASResponse cas;
  client.cas(cas, casReq);
  check(!cas.succeeded, "cas on a wrong value succeeded");
  std::cout << "cas: failed, current " << cas.current.value << std::endl;
  kv::CASRequest casReq2;
  casReq2.__set_key(p + "k0");
  casReq2.__set_expected_mod_index(cas.current.mod_index);
  casReq2.__set_value("swapped");
  client.cas(cas, casReq2);
  check(cas.succeeded, "cas on the current mod_index failed");
  std::cout << "cas: succeeded" << std::endl;

  // A transaction: if greeting still holds its value, write txn and read greeting.
  kv::Compare cmp;
  cmp.__set_key(p + "greeting");
  cmp.__set_target(kv::CompareTarget::VALUE);
  cmp.__set_op(kv::CompareOp::EQUAL);
  cmp.__set_value("hello from c++");
  kv::Op write, read;
  write.__set_type(kv::OpType::PUT);
  write.__set_key(p + "txn");
  write.__set_value("done");
  read.__set_type(kv::OpType::GET);
  read.__set_key(p + "greeting");
  kv::TxnRequest txnReq;
  txnReq.__set_compares({cmp});
  txnReq.__set_success({write, read});
  kv::TxnResponse txn;
  client.txn(txn, txnReq);
  check(txn.succeeded && txn.results.size() == 2, "txn");
  std::cout << "txn: succeeded, " << txn.results[1].entry.value << std::endl;

  kv::DeleteRequest delReq;
  delReq.__set_key(p + "k4");
  kv::DeleteResponse del;
  client.delete_key(del, delReq);
  check(del.deleted, "delete found no key");
  std::cout << "delete: deleted" << std::endl;

  // A key over the 4 KiB limit is refused before anything is proposed, with
  // kv::InvalidArgument (kv::Timeout means "outcome unknown: retry with the
  // same request_id").
  try {
    kv::PutRequest big;
    big.__set_key(std::string(4097, 'x'));
    big.__set_value("x");
    client.put(put, big);
    check(false, "oversize key accepted");
  } catch (const kv::InvalidArgument& e) {
    std::cout << "oversize key: InvalidArgument field " << e.field << std::endl;
  }

  kv::StatusResponse st;
  client.status(st);
  check(st.role == kv::Role::LEADER, "status role");
  std::cout << "status: " << st.node_id << " leader" << std::endl;
  transport->close();
  return 0;
}
