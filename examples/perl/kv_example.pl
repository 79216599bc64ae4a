#!/usr/bin/perl
# cubekv from Perl: every call of the KV service once, through code generated
# from thrift/kv.thrift and Debian's libthrift-perl. Usage:
#   perl kv_example.pl [HOST:PORT]        (default 127.0.0.1:9090)
# It checks each answer and dies at the first surprise.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/gen-perl";

use Thrift::Socket;
use Thrift::FramedTransport;
use Thrift::BinaryProtocol;
use Cubekv::KV;    # the KV service; brings Cubekv::Types

sub check { my ($cond, $what) = @_; die "unexpected: $what\n" unless $cond; }

my ($host, $port) = split /:/, ($ARGV[0] // '127.0.0.1:9090');
my $socket    = Thrift::Socket->new($host, $port);
$socket->setSendTimeout(10_000);    # milliseconds; the library's defaults (0.1 s, 0.75 s)
$socket->setRecvTimeout(10_000);    # are shorter than a write waiting for a slow disk
my $transport = Thrift::FramedTransport->new($socket);
my $kv        = Cubekv::KVClient->new(Thrift::BinaryProtocol->new($transport));
$transport->open();
my $p = 'pl/';

# put, then get the value and both indexes. Binary fields are plain byte strings.
my $put = $kv->put(Cubekv::PutRequest->new({ key => "${p}greeting", value => 'hello from perl' }));
my $got = $kv->get(Cubekv::GetRequest->new({ key => "${p}greeting" }));
check($got->found && $got->entry->create_index == $put->create_index && $got->entry->mod_index == $put->index, 'get indexes');
print 'get: ', $got->entry->value, " (mod_index, create_index as put returned)\n";

# A prefix scan, three keys a page; the continuation is the next page's start.
$kv->put(Cubekv::PutRequest->new({ key => "${p}k$_", value => "v$_" })) for 0 .. 4;
my $page = $kv->scan(Cubekv::ScanRequest->new({ prefix => "${p}k", limit => 3 }));
check(defined $page->continuation, 'first page has no continuation');
print 'scan: ', join(' ', map { $_->key } @{ $page->entries }), ", continuation\n";
$page = $kv->scan(Cubekv::ScanRequest->new({ prefix => "${p}k", limit => 3, start_key => $page->continuation }));
check(!defined $page->continuation, 'last page has a continuation');
print 'scan: ', join(' ', map { $_->key } @{ $page->entries }), ", end\n";

# Compare-and-swap: a failed compare is an answer, not an exception.
my $cas = $kv->cas(Cubekv::CASRequest->new({ key => "${p}k0", expected_value => 'nope', value => 'swapped' }));
check(!$cas->succeeded, 'cas on a wrong value succeeded');
print 'cas: failed, current ', $cas->current->value, "\n";
$cas = $kv->cas(Cubekv::CASRequest->new(
    { key => "${p}k0", expected_mod_index => $cas->current->mod_index, value => 'swapped' }));
check($cas->succeeded, 'cas on the current mod_index failed');
print "cas: succeeded\n";

# A transaction: if greeting still holds its value, write txn and read greeting.
my $txn = $kv->txn(Cubekv::TxnRequest->new({
    compares => [ Cubekv::Compare->new({ key => "${p}greeting", target => Cubekv::CompareTarget::VALUE,
                                         op => Cubekv::CompareOp::EQUAL, value => 'hello from perl' }) ],
    success  => [ Cubekv::Op->new({ type => Cubekv::OpType::PUT, key => "${p}txn", value => 'done' }),
                  Cubekv::Op->new({ type => Cubekv::OpType::GET, key => "${p}greeting" }) ],
    failure  => [],
}));
check($txn->succeeded && @{ $txn->results } == 2, 'txn');
print 'txn: succeeded, ', $txn->results->[1]->entry->value, "\n";

my $del = $kv->delete_key(Cubekv::DeleteRequest->new({ key => "${p}k4" }));
check($del->deleted, 'delete found no key');
print "delete: deleted\n";

# A key over the 4 KiB limit is refused before anything is proposed: the call
# dies with a Cubekv::InvalidArgument (Cubekv::Timeout means "outcome unknown:
# retry with the same request_id").
eval { $kv->put(Cubekv::PutRequest->new({ key => 'x' x 4097, value => 'x' })); 1 }
    and die "unexpected: oversize key accepted\n";
my $err = $@;
check(ref $err && $err->isa('Cubekv::InvalidArgument'), "oversize key: $err");
print 'oversize key: InvalidArgument field ', $err->field, "\n";

my $st = $kv->status();
check($st->role == Cubekv::Role::LEADER, 'status role');
print 'status: ', $st->node_id, " leader\n";
$transport->close();
