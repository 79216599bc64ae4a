<?php
// cubekv from PHP: every call of the KV service once, through code generated
// from thrift/kv.thrift and Debian's php-thrift. Usage:
//   php kv_example.php [HOST:PORT]        (default 127.0.0.1:9090)
// It checks each answer and exits non-zero at the first surprise.

// Debian installs the Thrift\ classes straight under /usr/lib/php (no Thrift/
// directory), so map the namespace there; Cubekv\ classes come from gen-php/
// (one file a class), found through the include path.
set_include_path(__DIR__ . '/gen-php' . PATH_SEPARATOR . get_include_path());
spl_autoload_register(function ($class) {
    $path = str_replace('\\', '/', $class) . '.php';
    if (strncmp($class, 'Thrift\\', 7) === 0) {
        $file = '/usr/lib/php/' . substr($path, 7);
    } else {
        $file = stream_resolve_include_path($path);
    }
    if ($file !== false && is_file($file)) {
        require_once $file;
    }
});

use Thrift\Transport\TSocket;
use Thrift\Transport\TFramedTransport;
use Thrift\Protocol\TBinaryProtocol;

function check($cond, $what)
{
    if (!$cond) {
        fwrite(STDERR, "unexpected: $what\n");
        exit(1);
    }
}

list($host, $port) = explode(':', $argv[1] ?? '127.0.0.1:9090');
$socket = new TSocket($host, (int)$port);
$socket->setSendTimeout(10000); // milliseconds; the library's defaults (0.1 s, 0.75 s)
$socket->setRecvTimeout(10000); // are shorter than a write waiting for a slow disk
$transport = new TFramedTransport($socket);
$kv = new \Cubekv\KVClient(new TBinaryProtocol($transport));
$transport->open();
$p = 'php/';

// put, then get the value and both indexes. Binary fields are plain strings.
$put = $kv->put(new \Cubekv\PutRequest(['key' => "{$p}greeting", 'value' => 'hello from php']));
$got = $kv->get(new \Cubekv\GetRequest(['key' => "{$p}greeting"]));
check($got->found && $got->entry->create_index == $put->create_index && $got->entry->mod_index == $put->index, 'get indexes');
echo "get: {$got->entry->value} (mod_index, create_index as put returned)\n";

// A prefix scan, three keys a page; the continuation is the next page's start.
for ($i = 0; $i < 5; $i++) {
    $kv->put(new \Cubekv\PutRequest(['key' => "{$p}k$i", 'value' => "v$i"]));
}
$keys = function ($page) {
    return implode(' ', array_map(function ($e) { return $e->key; }, $page->entries));
};
$page = $kv->scan(new \Cubekv\ScanRequest(['prefix' => "{$p}k", 'limit' => 3]));
check($page->continuation !== null, 'first page has no continuation');
echo 'scan: ', $keys($page), ", continuation\n";
$page = $kv->scan(new \Cubekv\ScanRequest(['prefix' => "{$p}k", 'limit' => 3, 'start_key' => $page->continuation]));
check($page->continuation === null, 'last page has a continuation');
echo 'scan: ', $keys($page), ", end\n";

// Compare-and-swap: a failed compare is an answer, not an exception.
$cas = $kv->cas(new \Cubekv\CASRequest(['key' => "{$p}k0", 'expected_value' => 'nope', 'value' => 'swapped']));
check(!$cas->succeeded, 'cas on a wrong value succeeded');
echo "cas: failed, current {$cas->current->value}\n";
$cas = $kv->cas(new \Cubekv\CASRequest(
    ['key' => "{$p}k0", 'expected_mod_index' => $cas->current->mod_index, 'value' => 'swapped']));
check($cas->succeeded, 'cas on the current mod_index failed');
echo "cas: succeeded\n";

// A transaction: if greeting still holds its value, write txn and read greeting.
$txn = $kv->txn(new \Cubekv\TxnRequest([
    'compares' => [new \Cubekv\Compare(['key' => "{$p}greeting", 'target' => \Cubekv\CompareTarget::VALUE,
        'op' => \Cubekv\CompareOp::EQUAL, 'value' => 'hello from php'])],
    'success' => [new \Cubekv\Op(['type' => \Cubekv\OpType::PUT, 'key' => "{$p}txn", 'value' => 'done']),
        new \Cubekv\Op(['type' => \Cubekv\OpType::GET, 'key' => "{$p}greeting"])],
    'failure' => [],
]));
check($txn->succeeded && count($txn->results) == 2, 'txn');
echo "txn: succeeded, {$txn->results[1]->entry->value}\n";

$del = $kv->delete_key(new \Cubekv\DeleteRequest(['key' => "{$p}k4"]));
check($del->deleted, 'delete found no key');
echo "delete: deleted\n";

// A key over the 4 KiB limit is refused before anything is proposed, with
// \Cubekv\InvalidArgument (\Cubekv\Timeout means "outcome unknown: retry with
// the same request_id").
try {
    $kv->put(new \Cubekv\PutRequest(['key' => str_repeat('x', 4097), 'value' => 'x']));
    check(false, 'oversize key accepted');
} catch (\Cubekv\InvalidArgument $e) {
    echo "oversize key: InvalidArgument field {$e->field}\n";
}

$st = $kv->status();
check($st->role == \Cubekv\Role::LEADER, 'status role');
echo "status: {$st->node_id} leader\n";
$transport->close();
