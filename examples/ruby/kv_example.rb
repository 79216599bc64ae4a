# cubekv from Ruby: every call of the KV service once, through code generated
# from thrift/kv.thrift and Debian's ruby-thrift. Usage:
#   ruby kv_example.rb [HOST:PORT]        (default 127.0.0.1:9090)
# It checks each answer and exits non-zero at the first surprise.

$LOAD_PATH.unshift File.join(__dir__, "gen-rb")
require "thrift"
require "k_v" # the KV service; brings kv_types (everything lives in module Cubekv)

def check(cond, what)
  raise "unexpected: #{what}" unless cond
end

host, port = (ARGV[0] || "127.0.0.1:9090").split(":")
socket = Thrift::Socket.new(host, port.to_i)
transport = Thrift::FramedTransport.new(socket)
kv = Cubekv::KV::Client.new(Thrift::BinaryProtocol.new(transport))
transport.open
p = "rb/"

# put, then get the value and both indexes. Binary fields are Strings
# (ASCII-8BIT encoding): force_encoding to read them as text.
put = kv.put(Cubekv::PutRequest.new(key: "#{p}greeting", value: "hello from ruby"))
got = kv.get(Cubekv::GetRequest.new(key: "#{p}greeting"))
check(got.found && got.entry.create_index == put.create_index && got.entry.mod_index == put.index, got.inspect)
puts "get: #{got.entry.value.force_encoding('UTF-8')} (mod_index, create_index as put returned)"

# A prefix scan, three keys a page; the continuation is the next page's start.
5.times { |i| kv.put(Cubekv::PutRequest.new(key: "#{p}k#{i}", value: "v#{i}")) }
page = kv.scan(Cubekv::ScanRequest.new(prefix: "#{p}k", limit: 3))
check(!page.continuation.nil?, "first page has no continuation")
puts "scan: #{page.entries.map(&:key).join(' ')}, continuation"
page = kv.scan(Cubekv::ScanRequest.new(prefix: "#{p}k", limit: 3, start_key: page.continuation))
check(page.continuation.nil?, "last page has a continuation")
puts "scan: #{page.entries.map(&:key).join(' ')}, end"

# Compare-and-swap: a failed compare is an answer, not an exception.
cas = kv.cas(Cubekv::CASRequest.new(key: "#{p}k0", expected_value: "nope", value: "swapped"))
check(!cas.succeeded, "cas on a wrong value succeeded")
puts "cas: failed, current #{cas.current.value}"
cas = kv.cas(Cubekv::CASRequest.new(key: "#{p}k0", expected_mod_index: cas.current.mod_index, value: "swapped"))
check(cas.succeeded, "cas on the current mod_index failed")
puts "cas: succeeded"

# A transaction: if greeting still holds its value, write txn and read greeting.
txn = kv.txn(Cubekv::TxnRequest.new(
  compares: [Cubekv::Compare.new(key: "#{p}greeting", target: Cubekv::CompareTarget::VALUE,
                                 op: Cubekv::CompareOp::EQUAL, value: "hello from ruby")],
  success: [Cubekv::Op.new(type: Cubekv::OpType::PUT, key: "#{p}txn", value: "done"),
            Cubekv::Op.new(type: Cubekv::OpType::GET, key: "#{p}greeting")],
  failure: []))
check(txn.succeeded && txn.results.size == 2, txn.inspect)
puts "txn: succeeded, #{txn.results[1].entry.value}"

del = kv.delete_key(Cubekv::DeleteRequest.new(key: "#{p}k4"))
check(del.deleted, "delete found no key")
puts "delete: deleted"

# A key over the 4 KiB limit is refused before anything is proposed. The
# exception is Cubekv::InvalidArgument; Cubekv::Timeout means "outcome
# unknown: retry with the same request_id".
begin
  kv.put(Cubekv::PutRequest.new(key: "x" * 4097, value: "x"))
  check(false, "oversize key accepted")
rescue Cubekv::InvalidArgument => e
  puts "oversize key: InvalidArgument field #{e.field}"
end

st = kv.status
check(st.role == Cubekv::Role::LEADER, st.inspect)
puts "status: #{st.node_id} leader"
transport.close
