// Package console is cubekv's web console: a single page (plain HTML, CSS
// and JavaScript embedded with go:embed, no build step, nothing fetched from
// the network at run time) and the JSON API behind it, mounted by kvnode on
// its admin port under /ui/.
//
// # What it serves
//
//	GET  /ui/                  the page and its static files
//	GET  /ui/api/cluster       every member (role, term, applied index, last
//	                           contact, gossip state, suffrage, version), the
//	                           leader, and per member a short history of ops/s
//	                           and p99 latency read from its /metrics
//	GET  /ui/api/keys          one page of a prefix, split into folders on a
//	                           separator, with the scan continuation
//	GET  /ui/api/key           one key's entry
//	POST /ui/api/key           create (CAS on mod index 0), edit (CAS on the
//	                           mod index the page read) or delete (CAS delete)
//	GET  /ui/api/watch         a long poll of a prefix's changes after an index
//	GET  /ui/api/leases        the leases with their TTLs
//
// Every call goes through the node's own Thrift front door: the Backend is
// the *server.Handler and *server.ClusterHandler the Thrift processor calls
// (Front joins them), so a write from the console passes the same
// validation, limits, forwarding to the leader and metrics as any client's.
// Other members' /metrics are read with one raw HTTP/1.1 request each, with
// the node's own TLS configuration when TLS is on. Writes are
// refused (403) unless the console was built with Writable set (kvnode
// --ui-write), and must carry the X-Cubekv-Console header, which a cross-site
// form cannot send. A CAS that loses is answered 409 with the entry that won;
// the page shows it and never retries on its own.
//
// Every response carries a strict Content-Security-Policy (script-src
// 'self', no inline script or style, connect-src 'self'); the page has no
// inline script. With TLS on, the admin port already requires a client
// certificate, and so does the console.
//
// # Concurrency
//
// A Console is safe for concurrent use. Cluster samples are taken at most
// once per SampleEvery, by whichever request finds them stale; the other
// requests wait for it and share the result.
package console
