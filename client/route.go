package client

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// routeKind says which nodes may serve a request.
type routeKind int

const (
	// toLeader: writes, cluster changes and (unless spread) linearizable reads go to the leader, and
	// fall back to the other members and the seeds when it cannot be reached.
	toLeader routeKind = iota + 1
	// toAny: reads that any member serves are spread round-robin over the alive members.
	toAny
	// toEndpoint: STALE reads (unless spread) go to the node asked: the first of the endpoints that
	// answers, in the order given, then any other member.
	toEndpoint
)

// topologyFetcher asks the first of addrs that answers for the cluster's topology. It must honour
// ctx.
type topologyFetcher func(ctx context.Context, addrs []string) (*kv.Topology, error)

// routerConfig is what a router needs; see Config for the meaning of each field.
type routerConfig struct {
	seeds              []string
	discovery          bool
	spreadLinearizable bool
	spreadStale        bool
	maxAge             time.Duration // a view older than this is refreshed
	minInterval        time.Duration // least time between the starts of two refreshes
	fetchTimeout       time.Duration // bound of one background refresh
	fetch              topologyFetcher
	logger             *slog.Logger
}

// view is one answer of Cluster.topology, reduced to what routing needs. Immutable once built.
type view struct {
	topo       *kv.Topology
	leaderAddr string            // the leader's Thrift address, "" when unknown
	alive      []string          // Thrift addresses of members gossip reports alive, in node id order
	others     []string          // Thrift addresses of the other members (suspect, dead, left, unknown)
	byID       map[string]string // node id -> Thrift address, for members that have one
}

// newView builds the routing view of t. A member without a Thrift address (never seen in gossip)
// cannot be routed to and is left out.
func newView(t *kv.Topology) *view {
	v := &view{topo: t, byID: make(map[string]string, len(t.Members))}
	for _, m := range t.Members {
		if m == nil || m.ThriftAddr == "" {
			continue
		}
		v.byID[m.NodeID] = m.ThriftAddr
		if m.NodeID == t.LeaderID || (t.LeaderID == "" && m.Leader) {
			v.leaderAddr = m.ThriftAddr
		}
		if m.GossipState == kv.GossipState_ALIVE {
			v.alive = append(v.alive, m.ThriftAddr)
		} else {
			v.others = append(v.others, m.ThriftAddr)
		}
	}
	return v
}

// router chooses which node each request goes to, and keeps the cached view of the cluster it
// chooses from. All routing decisions live here.
//
// With discovery on, the view is fetched lazily, on the first request, from the seeds; it is
// refreshed in the background when a request fails (NotLeader, Unavailable, a broken connection or a
// failed dial) and when it is older than maxAge, with at most one refresh in flight and at most one
// starting per minInterval. A refresh asks the known members first and the seeds last, so the seeds
// stay a fallback when no member answers. Without a view (discovery off, or no node answered
// topology yet) requests go to the last node that answered, else to the seeds in order.
type router struct {
	cfg    routerConfig
	ctx    context.Context // ends at close; bounds background refreshes
	cancel context.CancelFunc
	rr     atomic.Uint64 // round-robin position of spread requests

	// mu guards every field below.
	mu          sync.Mutex
	view        *view
	fetchedAt   time.Time     // when view was installed
	stale       bool          // a request failed since view was installed
	leaderAddr  string        // the best known leader address: from the view or a later redirect
	preferred   string        // the last address that answered, "" before any did
	refreshing  chan struct{} // closed when the refresh in flight ends; nil when none is
	lastRefresh time.Time     // when the last refresh started
	deferred    bool          // a refresh asked for too soon after the last is scheduled
	closed      bool
}

func newRouter(cfg routerConfig) *router {
	cfg.seeds = slices.Clone(cfg.seeds)
	ctx, cancel := context.WithCancel(context.Background())
	return &router{cfg: cfg, ctx: ctx, cancel: cancel}
}

// close stops background refreshes. It is idempotent.
func (r *router) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
}

// start returns the route of one request of the given kind. With discovery on it first makes sure a
// view exists: the first request waits (within ctx) for the first refresh; a later one that finds the
// view stale or old only starts a refresh in the background.
func (r *router) start(ctx context.Context, kind routeKind) *route {
	if r.cfg.discovery {
		r.ensure(ctx)
	}
	rt := &route{r: r, kind: kind}
	if kind == toAny {
		rt.offset = int(r.rr.Add(1) - 1)
	}
	rt.addr = rt.pick()
	return rt
}

// pinned returns a route that always goes to addr.
func (r *router) pinned(addr string) *route {
	return &route{r: r, kind: toLeader, addr: addr, pinned: true}
}

// ensure starts a refresh when the view is missing, stale or old, and waits for it (or ctx) when there
// is no view at all.
func (r *router) ensure(ctx context.Context) {
	r.mu.Lock()
	v := r.view
	var wait chan struct{}
	if v == nil || r.stale || time.Since(r.fetchedAt) > r.cfg.maxAge {
		wait = r.refreshLocked()
	}
	r.mu.Unlock()
	if v != nil || wait == nil {
		return
	}
	select {
	case <-wait:
	case <-ctx.Done():
	}
}

// refreshLocked starts a background refresh unless one is in flight, and returns the channel closed
// when the refresh in flight ends (nil when none is). When the last refresh started less than
// minInterval ago it schedules one for when the interval is over instead. Called with mu held.
func (r *router) refreshLocked() chan struct{} {
	if r.refreshing != nil || r.closed {
		return r.refreshing
	}
	if wait := r.cfg.minInterval - time.Since(r.lastRefresh); !r.lastRefresh.IsZero() && wait > 0 {
		if !r.deferred {
			r.deferred = true
			time.AfterFunc(wait, r.deferredRefresh)
		}
		return nil
	}
	done := make(chan struct{})
	r.refreshing = done
	r.lastRefresh = time.Now()
	addrs := r.fetchOrderLocked()
	go func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.fetchTimeout)
		defer cancel()
		topo, err := r.cfg.fetch(ctx, addrs)
		r.mu.Lock()
		if err == nil {
			r.installLocked(topo)
		}
		r.refreshing = nil
		r.mu.Unlock()
		close(done)
		if err != nil {
			r.cfg.logger.Debug("topology refresh failed", "err", err, "count", len(addrs))
		}
	}()
	return done
}

// deferredRefresh runs a refresh scheduled by refreshLocked, unless a view installed since made it
// unnecessary.
func (r *router) deferredRefresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deferred = false
	if r.view == nil || r.stale {
		r.refreshLocked()
	}
}

// fetchOrder returns the addresses a topology request tries, in order: the leader, the alive
// members, the other members, then the seeds.
func (r *router) fetchOrder() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetchOrderLocked()
}

// fetchOrderLocked is fetchOrder with mu held.
func (r *router) fetchOrderLocked() []string {
	out := make([]string, 0, len(r.cfg.seeds)+4)
	out = appendNew(out, r.leaderAddr)
	if v := r.view; v != nil {
		out = appendNew(out, v.alive...)
		out = appendNew(out, v.others...)
	}
	return appendNew(out, r.cfg.seeds...)
}

// install makes t the current view.
func (r *router) install(t *kv.Topology) {
	r.mu.Lock()
	r.installLocked(t)
	r.mu.Unlock()
}

// installLocked is install with mu held.
func (r *router) installLocked(t *kv.Topology) {
	v := newView(t)
	r.view = v
	r.fetchedAt = time.Now()
	r.stale = false
	r.leaderAddr = v.leaderAddr
}

// topology returns the cached topology, nil before one was fetched.
func (r *router) topology() *kv.Topology {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view == nil {
		return nil
	}
	return r.view.topo
}

// leader returns the best known leader address, "" when none is known.
func (r *router) leader() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaderAddr
}

// leaderChanged records that nodeID became leader (a leadership transfer finished) and starts a
// refresh.
func (r *router) leaderChanged(nodeID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view != nil {
		if addr, ok := r.view.byID[nodeID]; ok {
			r.leaderAddr = addr
		}
	}
	r.stale = true
	if r.cfg.discovery {
		r.refreshLocked()
	}
}

// worked records that addr answered, so requests start there while there is no view.
func (r *router) worked(addr string) {
	r.mu.Lock()
	r.preferred = addr
	r.mu.Unlock()
}

// failed records that a request to addr failed in a way that may mean the view is wrong: the node is
// down, unavailable, or no longer the leader. leaderAddr is the leader the node named, if any.
func (r *router) failed(addr, leaderAddr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case leaderAddr != "":
		r.leaderAddr = leaderAddr
	case addr == r.leaderAddr:
		r.leaderAddr = ""
	}
	if addr == r.preferred {
		r.preferred = ""
	}
	r.stale = true
	if r.cfg.discovery {
		r.refreshLocked()
	}
}

// candidates returns the addresses a route of kind may use, best first; offset rotates the alive
// members of a spread route.
func (r *router) candidates(kind routeKind, offset int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.cfg.seeds)+4)
	v := r.view
	if kind == toEndpoint {
		out = appendNew(out, r.cfg.seeds...)
	}
	if kind == toAny && v != nil && len(v.alive) > 0 {
		n := len(v.alive)
		for i := range n {
			out = appendNew(out, v.alive[(offset+i)%n])
		}
	}
	out = appendNew(out, r.leaderAddr)
	if v == nil {
		out = appendNew(out, r.preferred)
	} else {
		out = appendNew(out, v.alive...)
		out = appendNew(out, v.others...)
	}
	return appendNew(out, r.cfg.seeds...)
}

// kindFor returns the route kind of a read at consistency c.
func (r *router) kindFor(c kv.Consistency) routeKind {
	switch {
	case c == kv.Consistency_STALE && r.cfg.spreadStale:
		return toAny
	case c == kv.Consistency_STALE:
		return toEndpoint
	case r.cfg.spreadLinearizable:
		return toAny
	}
	return toLeader
}

// appendNew appends the non-empty addresses of addrs that out does not hold yet.
func appendNew(out []string, addrs ...string) []string {
	for _, a := range addrs {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// route is the path of one request through its attempts. Not safe for concurrent use.
type route struct {
	r      *router
	kind   routeKind
	offset int      // rotation of the alive members for a spread route
	addr   string   // where the next attempt goes
	tried  []string // addresses this route has failed at since it last started over
	pinned bool
}

// current returns the address the next attempt goes to.
func (rt *route) current() string { return rt.addr }

// pick returns the best candidate this route has not tried, starting over when it has tried them
// all.
func (rt *route) pick() string {
	cands := rt.r.candidates(rt.kind, rt.offset)
	for _, a := range cands {
		if !slices.Contains(rt.tried, a) {
			return a
		}
	}
	rt.tried = rt.tried[:0]
	return cands[0]
}

// redirect moves the route to the leader a node named, and tells the router. It reports whether the
// address changed.
func (rt *route) redirect(leaderAddr string) bool {
	if rt.pinned {
		return false
	}
	rt.r.failed(rt.addr, leaderAddr)
	if leaderAddr == "" || leaderAddr == rt.addr {
		return false
	}
	rt.addr = leaderAddr
	return true
}

// failed tells the router the attempt at the current address failed (see router.failed).
func (rt *route) failed() {
	if rt.pinned {
		return
	}
	rt.r.failed(rt.addr, "")
}

// next moves the route on to another node after a failure, choosing from the router's view as it is
// now (a refresh may have changed it since the attempt).
func (rt *route) next() {
	if rt.pinned {
		return
	}
	rt.tried = append(rt.tried, rt.addr)
	rt.addr = rt.pick()
}
