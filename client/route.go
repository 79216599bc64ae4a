package client

import (
	"slices"
	"sync"
)

// router chooses which node a request goes to. All routing decisions live here, so topology
// discovery can replace the static endpoint list later without touching the retry loop.
type router struct {
	endpoints []string // immutable after newRouter

	// mu guards preferred.
	mu        sync.Mutex
	preferred string // the last address that answered, "" before any did
}

func newRouter(endpoints []string) *router {
	return &router{endpoints: slices.Clone(endpoints)}
}

// start returns the route of one request: from the last node that answered, else the first endpoint.
func (r *router) start() *route {
	r.mu.Lock()
	addr := r.preferred
	r.mu.Unlock()
	if addr == "" {
		addr = r.endpoints[0]
	}
	return &route{r: r, addr: addr}
}

// pinned returns a route that always goes to addr.
func (r *router) pinned(addr string) *route {
	return &route{r: r, addr: addr, pinned: true}
}

// worked records that addr answered, so later requests start there.
func (r *router) worked(addr string) {
	r.mu.Lock()
	r.preferred = addr
	r.mu.Unlock()
}

// after returns the endpoint following addr in the list (wrapping around), or the first endpoint when
// addr is not in the list.
func (r *router) after(addr string) string {
	i := slices.Index(r.endpoints, addr)
	return r.endpoints[(i+1)%len(r.endpoints)]
}

// route is the path of one request through its attempts. Not safe for concurrent use.
type route struct {
	r      *router
	addr   string
	pinned bool
}

// current returns the address the next attempt goes to.
func (rt *route) current() string { return rt.addr }

// redirect moves the route to the leader a node named. It reports whether the address changed.
func (rt *route) redirect(leaderAddr string) bool {
	if rt.pinned || leaderAddr == "" || leaderAddr == rt.addr {
		return false
	}
	rt.addr = leaderAddr
	return true
}

// next moves the route on to another node after a failure.
func (rt *route) next() {
	if rt.pinned {
		return
	}
	rt.addr = rt.r.after(rt.addr)
}
