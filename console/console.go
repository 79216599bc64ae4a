package console

import (
	"bufio"
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every console response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// headerWrite must be present on a write: a cross-site form cannot set it.
const headerWrite = "X-Cubekv-Console"

// Backend is what the console asks of the cluster: the node's own Thrift
// front door, the very handlers the Thrift processor calls (kvnode passes
// its *server.Handler and *server.ClusterHandler), so every request gets the
// same validation, limits, forwarding to the leader and metrics as a Thrift
// client's. Its methods must be safe for concurrent use and return the
// front door's errors (kv exceptions such as *kv.InvalidArgument).
type Backend interface {
	Topology(ctx context.Context) (*kv.Topology, error)
	Get(ctx context.Context, req *kv.GetRequest) (*kv.GetResponse, error)
	Cas(ctx context.Context, req *kv.CASRequest) (*kv.CASResponse, error)
	Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error)
	Watch(ctx context.Context, req *kv.WatchRequest) (*kv.WatchResponse, error)
	ListLeases(ctx context.Context, req *kv.LeaseListRequest) (*kv.LeaseListResponse, error)
}

// Front joins the two front-door handlers into a Backend.
type Front struct {
	KV interface {
		Get(ctx context.Context, req *kv.GetRequest) (*kv.GetResponse, error)
		Cas(ctx context.Context, req *kv.CASRequest) (*kv.CASResponse, error)
		Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error)
		Watch(ctx context.Context, req *kv.WatchRequest) (*kv.WatchResponse, error)
		ListLeases(ctx context.Context, req *kv.LeaseListRequest) (*kv.LeaseListResponse, error)
	}
	Cluster interface {
		Topology(ctx context.Context) (*kv.Topology, error)
	}
}

func (f Front) Topology(ctx context.Context) (*kv.Topology, error) { return f.Cluster.Topology(ctx) }
func (f Front) Get(ctx context.Context, r *kv.GetRequest) (*kv.GetResponse, error) {
	return f.KV.Get(ctx, r)
}
func (f Front) Cas(ctx context.Context, r *kv.CASRequest) (*kv.CASResponse, error) {
	return f.KV.Cas(ctx, r)
}
func (f Front) Scan(ctx context.Context, r *kv.ScanRequest) (*kv.ScanResponse, error) {
	return f.KV.Scan(ctx, r)
}
func (f Front) Watch(ctx context.Context, r *kv.WatchRequest) (*kv.WatchResponse, error) {
	return f.KV.Watch(ctx, r)
}
func (f Front) ListLeases(ctx context.Context, r *kv.LeaseListRequest) (*kv.LeaseListResponse, error) {
	return f.KV.ListLeases(ctx, r)
}

// Config configures a Console.
type Config struct {
	Backend Backend
	// Writable allows create, edit and delete (kvnode --ui-write).
	Writable bool
	// TLS, when set, is the configuration other members' admin ports are
	// dialled with to read their /metrics (the node's own certificate as
	// the client's); nil: plain HTTP.
	TLS *tls.Config
	// SampleEvery bounds how often the cluster is sampled; 0: 1 s.
	SampleEvery time.Duration
	// Samples kept per member for the sparklines; 0: 60.
	Samples int
}

// Console serves the web console. Create it with New.
type Console struct {
	cfg Config

	mu      sync.Mutex // guards the fields below, and serialises sampling
	last    time.Time
	snap    *clusterView
	history map[string]*memberHistory
}

// New returns a Console for cfg.
func New(cfg Config) *Console {
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = time.Second
	}
	if cfg.Samples <= 0 {
		cfg.Samples = 60
	}
	return &Console{cfg: cfg, history: make(map[string]*memberHistory)}
}

// Handler returns the console's handler; it expects paths starting with
// /ui/ (mount it at "/ui/").
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServer(http.FS(sub))))
	mux.HandleFunc("GET /ui/api/cluster", c.cluster)
	mux.HandleFunc("GET /ui/api/keys", c.keys)
	mux.HandleFunc("GET /ui/api/key", c.getKey)
	mux.HandleFunc("POST /ui/api/key", c.writeKey)
	mux.HandleFunc("GET /ui/api/watch", c.watch)
	mux.HandleFunc("GET /ui/api/leases", c.leases)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// statusFor maps a front-door error to an HTTP status.
func statusFor(err error) int {
	var inv *kv.InvalidArgument
	var compacted *kv.Compacted
	var lnf *kv.LeaseNotFound
	switch {
	case errors.As(err, &inv):
		return http.StatusBadRequest
	case errors.As(err, &compacted):
		return http.StatusGone
	case errors.As(err, &lnf):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	default:
		return http.StatusBadGateway
	}
}

// ---- cluster view ----

type memberHistory struct {
	requests float64 // last cubekv_requests_total
	buckets  []bucket
	at       time.Time
	ops      []float64
	p99      []float64 // milliseconds; -1 when no request in the interval
}

type bucket struct {
	le    float64
	count float64
}

type memberView struct {
	*kv.Member
	Role      string    `json:"role"`
	Answering bool      `json:"answering"`
	Error     string    `json:"error,omitempty"`
	Ops       []float64 `json:"ops"`
	P99       []float64 `json:"p99_ms"`
	Suffr     string    `json:"suffrage_name"`
	Gossip    string    `json:"gossip_name"`
}

type clusterView struct {
	ServedBy string        `json:"served_by"`
	LeaderID string        `json:"leader_id"`
	Term     int64         `json:"term"`
	Writable bool          `json:"writable"`
	Members  []*memberView `json:"members"`
	Error    string        `json:"error,omitempty"`
}

func (c *Console) cluster(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap == nil || time.Since(c.last) >= c.cfg.SampleEvery {
		c.snap = c.sample(r.Context())
		c.last = time.Now()
	}
	writeJSON(w, http.StatusOK, c.snap)
}

// sample asks the topology and every member's /metrics, in parallel, each
// bounded so that a member that stops answering is seen within a second.
func (c *Console) sample(ctx context.Context) *clusterView {
	view := &clusterView{Writable: c.cfg.Writable}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	topo, err := c.cfg.Backend.Topology(tctx)
	cancel()
	if err != nil {
		view.Error = err.Error()
		return view
	}
	view.ServedBy, view.LeaderID, view.Term = topo.ServedBy, topo.LeaderID, topo.Term
	type scraped struct {
		total   float64
		buckets []bucket
		err     error
	}
	got := make([]scraped, len(topo.Members))
	var wg sync.WaitGroup
	for i, m := range topo.Members {
		if m.AdminAddr == "" {
			got[i].err = errors.New("no admin address known")
			continue
		}
		wg.Add(1)
		go func(i int, addr string) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
			defer cancel()
			got[i].total, got[i].buckets, got[i].err = c.scrape(sctx, addr)
		}(i, m.AdminAddr)
	}
	wg.Wait()
	now := time.Now()
	seen := make(map[string]bool)
	for i, m := range topo.Members {
		seen[m.NodeID] = true
		mv := &memberView{Member: m, Role: "follower", Suffr: "", Gossip: m.GossipState.String()}
		if m.Suffrage != nil {
			mv.Suffr = m.Suffrage.String()
		}
		if m.Leader {
			mv.Role = "leader"
		} else if m.Suffrage == nil {
			mv.Role = "gossip only"
		} else if *m.Suffrage != kv.Suffrage_VOTER {
			mv.Role = "nonvoter"
		}
		h := c.history[m.NodeID]
		if h == nil {
			h = &memberHistory{}
			c.history[m.NodeID] = h
		}
		s := got[i]
		mv.Answering = s.err == nil && m.GossipState == kv.GossipState_ALIVE
		if s.err != nil {
			mv.Error = s.err.Error()
		} else {
			if !h.at.IsZero() && s.total >= h.requests {
				dt := now.Sub(h.at).Seconds()
				h.ops = push(h.ops, (s.total-h.requests)/dt, c.cfg.Samples)
				h.p99 = push(h.p99, quantile(diffBuckets(s.buckets, h.buckets), 0.99)*1000, c.cfg.Samples)
			}
			h.requests, h.buckets, h.at = s.total, s.buckets, now
		}
		mv.Ops, mv.P99 = append([]float64{}, h.ops...), append([]float64{}, h.p99...)
		view.Members = append(view.Members, mv)
	}
	for id := range c.history {
		if !seen[id] {
			delete(c.history, id)
		}
	}
	return view
}

func push(s []float64, v float64, max int) []float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = -1
	}
	s = append(s, math.Round(v*100)/100)
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}

// scrape reads a member's /metrics: the total of cubekv_requests_total and
// the cumulative buckets of cubekv_request_duration_seconds, summed over
// their labels. It speaks one HTTP/1.1 request on its own connection rather
// than through net/http's client, which kvnode does not otherwise link
// (about 400 KiB of binary).
func (c *Console) scrape(ctx context.Context, addr string) (float64, []bucket, error) {
	var conn net.Conn
	var err error
	if c.cfg.TLS != nil {
		host, _, _ := net.SplitHostPort(addr)
		d := &tls.Dialer{Config: transport.ForHost(c.cfg.TLS, host)}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: "+addr+"\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format for the two families the
// sparklines use (watches left out of the latency).
func parseMetrics(r io.Reader) (float64, []bucket, error) {
	var total float64
	byLE := make(map[float64]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		switch {
		case strings.HasPrefix(name, "cubekv_requests_total"):
			total += v
		case strings.HasPrefix(name, "cubekv_request_duration_seconds_bucket{") && !strings.Contains(name, `method="watch"`):
			// A watch blocks until there is a change by design: its
			// duration is not latency.
			i := strings.Index(name, `le="`)
			if i < 0 {
				continue
			}
			rest := name[i+4:]
			le, err := strconv.ParseFloat(rest[:strings.IndexByte(rest, '"')], 64)
			if err != nil {
				continue
			}
			byLE[le] += v
		}
	}
	if err := sc.Err(); err != nil {
		return 0, nil, err
	}
	out := make([]bucket, 0, len(byLE))
	for le, n := range byLE {
		out = append(out, bucket{le, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return total, out, nil
}

// diffBuckets is now minus before, bucket by bucket (both cumulative).
func diffBuckets(now, before []bucket) []bucket {
	prev := make(map[float64]float64, len(before))
	for _, b := range before {
		prev[b.le] = b.count
	}
	out := make([]bucket, len(now))
	for i, b := range now {
		out[i] = bucket{b.le, b.count - prev[b.le]}
	}
	return out
}

// quantile estimates q from cumulative buckets by linear interpolation, as
// Prometheus' histogram_quantile does; -1 when there is no observation.
func quantile(bs []bucket, q float64) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return -1
	}
	rank := q * bs[len(bs)-1].count
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			if b.count == below {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}
