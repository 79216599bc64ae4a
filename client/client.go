package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Defaults used when a Config field is zero.
const (
	// DefaultRetryTimeout bounds the retries of a request whose context has no deadline, when
	// Config.RetryTimeout is 0. It outlasts a few elections (each about 1.5-3 s).
	DefaultRetryTimeout = 15 * time.Second
	// DefaultBackoff is the wait before the first retry when Config.Backoff is 0.
	DefaultBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the wait between retries when Config.MaxBackoff is 0.
	DefaultMaxBackoff = time.Second
	// DefaultTopologyMaxAge is the age at which the cached topology is refreshed when
	// Config.TopologyMaxAge is 0.
	DefaultTopologyMaxAge = 10 * time.Second
	// DefaultTopologyRefreshInterval is the least time between two topology refreshes when
	// Config.TopologyRefreshInterval is 0.
	DefaultTopologyRefreshInterval = 100 * time.Millisecond
	// DefaultAdminRequestTimeout bounds the socket I/O of one cluster change (AddMember and the like)
	// when Config.AdminRequestTimeout is 0.
	DefaultAdminRequestTimeout = 10 * time.Minute
)

// topologyTryTimeout bounds one node's answer to a topology request, so a hung node does not stall
// discovery while others could answer. A node asks its peers for their status (one second each, in
// parallel) before it answers.
const topologyTryTimeout = 3 * time.Second

// Config configures a Client.
type Config struct {
	// Endpoints are the Thrift addresses (host:port) of any nodes of the cluster; at least one. With
	// discovery on they are the seeds the topology is first learnt from, and the fallback when no
	// known member answers; otherwise they are the only nodes requests go to (besides a leader named
	// by NotLeader).
	Endpoints []string
	// DisableDiscovery turns topology discovery off: requests go to the endpoints only, starting from
	// the last one that answered, which suits a single node or a proxy in front of the cluster.
	DisableDiscovery bool
	// SpreadLinearizableReads sends LINEARIZABLE reads round-robin to every alive member (followers
	// serve them through the leader's read index), instead of to the leader alone.
	SpreadLinearizableReads bool
	// SpreadStaleReads sends STALE reads round-robin to every alive member. Without it a STALE read is
	// served by the first of the endpoints that answers, in the order given (the node asked), and
	// goes to other members only when none of them can be reached.
	SpreadStaleReads bool
	// TopologyMaxAge is how old the cached topology may grow before a request refreshes it (in the
	// background). 0 means DefaultTopologyMaxAge.
	TopologyMaxAge time.Duration
	// TopologyRefreshInterval is the least time between the starts of two topology refreshes (at most
	// one is in flight at a time). 0 means DefaultTopologyRefreshInterval.
	TopologyRefreshInterval time.Duration
	// AdminRequestTimeout bounds the socket I/O of one cluster change (AddMember, RemoveMember,
	// PromoteMember, TransferLeadership), which may wait for a new member to catch up: such a call
	// ends at the sooner of the context's deadline and this. Dial.RequestTimeout does not apply to
	// them. 0 means DefaultAdminRequestTimeout.
	AdminRequestTimeout time.Duration
	// Dial says how to connect to a node.
	Dial transport.DialConfig
	// MaxIdlePerEndpoint is the number of idle connections kept per node. 0 means
	// transport.DefaultMaxIdlePerAddr.
	MaxIdlePerEndpoint int
	// MaxRetries caps how many times a request is retried after NotLeader (at the named leader when
	// there is one), Unavailable, a server Timeout or a broken connection. Retries are bounded by
	// time, not by a count: a request is retried until its context's deadline (RetryTimeout when the
	// context has none), so that it outlasts an election. 0 means no cap beyond that; negative means
	// no retries.
	MaxRetries int
	// RetryTimeout bounds how long a request whose context has no deadline keeps being retried
	// (attempts already sent still end on their own). 0 means DefaultRetryTimeout.
	RetryTimeout time.Duration
	// Backoff is the wait before the first retry; it doubles with each retry up to MaxBackoff, with
	// jitter (the actual wait is between half and all of it). A redirect to a named leader is not
	// delayed. 0 means DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff caps the wait between retries. 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Consistency is the default for reads; a ReadOption or ScanRequest.Consistency overrides it.
	// 0 means kv.Consistency_LINEARIZABLE.
	Consistency kv.Consistency
	// Logger receives debug records about retries. nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the configuration can be used.
func (cfg *Config) Validate() error {
	if len(cfg.Endpoints) == 0 {
		return &InvalidArgumentError{Field: "endpoints", Reason: "at least one endpoint is required"}
	}
	for i, e := range cfg.Endpoints {
		if e == "" {
			return &InvalidArgumentError{Field: fmt.Sprintf("endpoints[%d]", i), Reason: "empty address"}
		}
	}
	switch cfg.Consistency {
	case 0, kv.Consistency_LINEARIZABLE, kv.Consistency_STALE:
	default:
		return &InvalidArgumentError{Field: "consistency", Reason: fmt.Sprintf("unknown consistency %d", cfg.Consistency)}
	}
	if cfg.Backoff < 0 || cfg.MaxBackoff < 0 {
		return &InvalidArgumentError{Field: "backoff", Reason: "negative duration"}
	}
	if cfg.RetryTimeout < 0 {
		return &InvalidArgumentError{Field: "retry_timeout", Reason: "negative duration"}
	}
	if cfg.TopologyMaxAge < 0 || cfg.TopologyRefreshInterval < 0 || cfg.AdminRequestTimeout < 0 {
		return &InvalidArgumentError{Field: "topology", Reason: "negative duration"}
	}
	return nil
}

// Client talks to a cubekv cluster. Safe for concurrent use; each call borrows a pooled connection,
// and each write a session (client id and sequence) of its own.
type Client struct {
	pool        *transport.Pool // KV calls and topology requests
	adminPool   *transport.Pool // cluster changes: the same dial settings, AdminRequestTimeout
	router      *router
	sessions    sessions
	maxRetries  int // -1: no cap
	retryFor    time.Duration
	backoff     time.Duration
	maxBackoff  time.Duration
	consistency kv.Consistency
	logger      *slog.Logger
}

// New returns a client for cfg. It only allocates: connections are made on first use.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	admin := cfg.Dial
	admin.RequestTimeout = cfg.AdminRequestTimeout
	if admin.RequestTimeout == 0 {
		admin.RequestTimeout = DefaultAdminRequestTimeout
	}
	c := &Client{
		pool:        transport.NewPool(&cfg.Dial, cfg.MaxIdlePerEndpoint),
		adminPool:   transport.NewPool(&admin, 1),
		maxRetries:  cfg.MaxRetries,
		retryFor:    cfg.RetryTimeout,
		backoff:     cfg.Backoff,
		maxBackoff:  cfg.MaxBackoff,
		consistency: cfg.Consistency,
		logger:      cfg.Logger,
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = -1
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	c.retryFor = cmp.Or(c.retryFor, DefaultRetryTimeout)
	c.backoff = cmp.Or(c.backoff, DefaultBackoff)
	c.maxBackoff = cmp.Or(c.maxBackoff, DefaultMaxBackoff)
	c.consistency = cmp.Or(c.consistency, kv.Consistency_LINEARIZABLE)
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.logger = c.logger.With("component", "client")
	rc := routerConfig{
		seeds:              cfg.Endpoints,
		discovery:          !cfg.DisableDiscovery,
		spreadLinearizable: cfg.SpreadLinearizableReads,
		spreadStale:        cfg.SpreadStaleReads,
		maxAge:             cfg.TopologyMaxAge,
		minInterval:        cfg.TopologyRefreshInterval,
		fetchTimeout:       cfg.Dial.RequestTimeout,
		fetch:              c.fetchTopology,
		logger:             c.logger,
	}
	if rc.maxAge == 0 {
		rc.maxAge = DefaultTopologyMaxAge
	}
	if rc.minInterval == 0 {
		rc.minInterval = DefaultTopologyRefreshInterval
	}
	if rc.fetchTimeout <= 0 {
		rc.fetchTimeout = transport.DefaultRequestTimeout
	}
	c.router = newRouter(rc)
	return c, nil
}

// Close stops topology refreshes and closes the idle connections; calls made afterwards fail with
// ErrClosed. It is idempotent.
func (c *Client) Close() error {
	c.router.close()
	return errors.Join(c.pool.Close(), c.adminPool.Close())
}

// Get reads key. A missing key is not an error: the response has Found false.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (*kv.GetResponse, error) {
	o := readOptions{consistency: c.consistency}
	for _, opt := range opts {
		opt(&o)
	}
	req := &kv.GetRequest{Key: key, Consistency: kv.ConsistencyPtr(o.consistency)}
	var resp *kv.GetResponse
	_, err := c.invoke(ctx, c.router.start(ctx, c.router.kindFor(o.consistency)), func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.Get(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	return resp, nil
}

// Put writes value at key, exactly once even when retried (WithRequestID: even when retried by the
// caller).
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...WriteOption) (*kv.PutResponse, error) {
	o := writeOpts(opts)
	req := &kv.PutRequest{Key: key, Value: value, LeaseID: o.leaseID, TTLMs: o.ttlMs}
	if o.returnPrevious {
		req.ReturnPrevious = &o.returnPrevious
	}
	var resp *kv.PutResponse
	err := c.write(ctx, o.requestID, func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) (err error) {
		req.RequestID = id
		resp, err = kvc.Put(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put: %w", err)
	}
	return resp, nil
}

// Delete removes key, exactly once even when retried. Deleting a missing key is not an error: the
// response has Deleted false.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...WriteOption) (*kv.DeleteResponse, error) {
	o := writeOpts(opts)
	req := &kv.DeleteRequest{Key: key}
	if o.returnPrevious {
		req.ReturnPrevious = &o.returnPrevious
	}
	var resp *kv.DeleteResponse
	err := c.write(ctx, o.requestID, func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) (err error) {
		req.RequestID = id
		resp, err = kvc.DeleteKey(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	return resp, nil
}

// CAS runs a compare-and-swap. A compare that does not hold is not an error: the response has
// Succeeded false. The client fills in the request id of the request it sends (req itself is not
// modified); a caller that sets req.RequestID, e.g. to learn the outcome of an earlier write reported
// as ErrUnknownOutcome, has it used as is.
func (c *Client) CAS(ctx context.Context, req *kv.CASRequest) (*kv.CASResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("cas: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	sendReq := *req
	var resp *kv.CASResponse
	err := c.write(ctx, req.RequestID, func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) (err error) {
		sendReq.RequestID = id
		resp, err = kvc.Cas(ctx, &sendReq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cas: %w", err)
	}
	return resp, nil
}

// Scan reads one page of a range. When req.Consistency is unset, Config.Consistency is used (req
// itself is not modified). Follow ScanResponse.Continuation for further pages.
func (c *Client) Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("scan: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	sendReq := *req
	if sendReq.Consistency == nil {
		sendReq.Consistency = kv.ConsistencyPtr(c.consistency)
	}
	var resp *kv.ScanResponse
	_, err := c.invoke(ctx, c.router.start(ctx, c.router.kindFor(sendReq.GetConsistency())), func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.Scan(ctx, &sendReq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return resp, nil
}

// Txn runs an atomic transaction. Compares that do not all hold are not an error: the failure branch
// runs and the response has Succeeded false. Request ids are handled as for CAS.
func (c *Client) Txn(ctx context.Context, req *kv.TxnRequest) (*kv.TxnResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("txn: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	sendReq := *req
	// The IDL marks all three lists required; send empty lists rather than none.
	if sendReq.Compares == nil {
		sendReq.Compares = []*kv.Compare{}
	}
	if sendReq.Success == nil {
		sendReq.Success = []*kv.Op{}
	}
	if sendReq.Failure == nil {
		sendReq.Failure = []*kv.Op{}
	}
	var resp *kv.TxnResponse
	err := c.write(ctx, req.RequestID, func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) (err error) {
		sendReq.RequestID = id
		resp, err = kvc.Txn(ctx, &sendReq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("txn: %w", err)
	}
	return resp, nil
}

// Status asks one node for its view of itself and the cluster. An empty endpoint means whichever node
// the client would send a write to.
func (c *Client) Status(ctx context.Context, endpoint string) (*kv.StatusResponse, error) {
	var rt *route
	if endpoint != "" {
		rt = c.router.pinned(endpoint)
	} else {
		rt = c.router.start(ctx, toLeader)
	}
	var resp *kv.StatusResponse
	_, err := c.invoke(ctx, rt, func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.Status(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", rt.current(), err)
	}
	return resp, nil
}

func writeOpts(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// write runs one write with a request id: given when the caller chose it, else a fresh one from a
// session. Every attempt reuses the id. A session goes back to the pool only when the write's outcome
// is known; otherwise it is dropped and the error is an *UnknownOutcomeError.
func (c *Client) write(ctx context.Context, given *kv.RequestID,
	fn func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) error,
) error {
	var (
		sess *session
		id   kv.RequestID
	)
	if given != nil {
		id = *given
	} else {
		sess = c.sessions.take()
		id = sess.next()
	}
	unknown, err := c.invoke(ctx, c.router.start(ctx, toLeader), func(ctx context.Context, kvc *kv.KVClient) error {
		sendID := id // a fresh copy per attempt: the request must not share memory with the caller
		return fn(ctx, kvc, &sendID)
	})
	if err != nil && unknown {
		// Some attempt may have committed and no later one told us. Even an error that looks final
		// (say InvalidArgument from a node configured differently) does not rule that out.
		return &UnknownOutcomeError{RequestID: id, Err: err}
	}
	if sess != nil {
		c.sessions.give(sess)
	}
	return err
}

// invoke runs fn, one call of the KV service, following rt with retries. unknown reports whether some
// attempt may have been applied without the client learning its result (only meaningful for writes).
func (c *Client) invoke(ctx context.Context, rt *route, fn func(ctx context.Context, kvc *kv.KVClient) error) (unknown bool, err error) {
	return c.do(ctx, rt, callOpts{pool: c.pool}, func(ctx context.Context, conn *transport.Conn) error {
		return fn(ctx, conn.KV)
	})
}

// callOpts says how do runs one call.
type callOpts struct {
	// pool is where connections come from.
	pool *transport.Pool
	// once stops at an attempt that may have been applied instead of retrying it: for calls that carry
	// no request id, whose repetition is not harmless.
	once bool
}

// do runs fn, one call on one of a connection's clients, following rt with retries until ctx's
// deadline (or RetryTimeout from now when ctx has none). unknown reports whether some attempt may
// have been applied without the client learning its result.
func (c *Client) do(ctx context.Context, rt *route, opts callOpts, fn func(ctx context.Context, conn *transport.Conn) error) (unknown bool, err error) {
	retryUntil, ok := ctx.Deadline()
	if !ok {
		retryUntil = time.Now().Add(c.retryFor)
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		addr := rt.current()
		sent, err := c.attempt(ctx, opts.pool, addr, fn)
		kind, err := classify(err, sent)
		if opts.once && kind == outcomeRetryUnknown {
			kind = outcomeFinalUnknown
		}
		switch kind {
		case outcomeFinal:
			if err == nil {
				c.router.worked(addr)
			}
			return unknown, err
		case outcomeFinalUnknown:
			return true, err
		case outcomeRetryUnknown:
			unknown = true
		}
		// An attempt cut short by the caller's deadline says only that time ran out; the answer
		// before it (Unavailable, NotLeader, ...) says why the request did not succeed, so it is
		// the one kept, wrapped with the context's error below.
		if lastErr == nil || transport.ContextDone(ctx) == nil {
			lastErr = err
		}

		// A server Timeout came from a node that is working (likely the leader): stay there.
		stay := errors.Is(err, ErrTimeout)
		redirected := false
		var nl *NotLeaderError
		switch {
		case errors.As(err, &nl):
			redirected = rt.redirect(nl.LeaderAddr)
		case !stay:
			rt.failed()
		}
		if (c.maxRetries >= 0 && attempt >= c.maxRetries) || transport.ContextDone(ctx) != nil || !time.Now().Before(retryUntil) {
			break
		}
		if !redirected && !c.sleep(ctx, attempt, retryUntil) {
			break
		}
		if !redirected && !stay {
			// Chosen after the backoff: a refresh the failure started may have found the leader.
			rt.next()
		}
		c.logger.Debug("retrying request", "addr", rt.current(), "err", err, "count", attempt+1)
	}
	if ctxErr := transport.ContextDone(ctx); ctxErr != nil && !errors.Is(lastErr, ctxErr) {
		lastErr = fmt.Errorf("%w: last error: %w", ctxErr, lastErr)
	}
	return unknown, lastErr
}

// attempt makes one call at addr on a connection from pool.
func (c *Client) attempt(ctx context.Context, pool *transport.Pool, addr string, fn func(ctx context.Context, conn *transport.Conn) error) (sent bool, err error) {
	conn, err := pool.Get(ctx, addr)
	if err != nil {
		return false, err
	}
	sent, err = conn.Do(ctx, func(ctx context.Context) error { return fn(ctx, conn) })
	broken := conn.Broken()
	pool.Put(conn, broken)
	if err != nil && broken {
		err = fmt.Errorf("%s: %w", addr, err)
	}
	return sent, err
}

// minRetryWindow is the least time before the retry deadline worth one more attempt.
const minRetryWindow = 10 * time.Millisecond

// sleep waits before retry number attempt+1: exponential backoff with jitter, capped by MaxBackoff.
// When less than the wait remains before until, it waits half of what remains, so the last attempt
// still has time to run. It reports false when ctx ended first or too little time remains.
func (c *Client) sleep(ctx context.Context, attempt int, until time.Time) bool {
	d := c.backoff
	for i := 0; i < attempt && d < c.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.maxBackoff)
	d = d/2 + rand.N(d/2+1)
	left := time.Until(until)
	if left < minRetryWindow {
		return false
	}
	if left < 2*d {
		d = min(d, left/2)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
