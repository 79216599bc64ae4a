package gossip

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cubekv/cubekv/internal/logging"
)

// State is a member's liveness as seen by the local node.
type State int

// Member states. StateSuspect is defined but never reported (see the
// package documentation).
const (
	StateAlive State = iota + 1
	StateSuspect
	StateDead
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return fmt.Sprintf("state(%d)", int(s))
	}
}

// Member is one node of the gossip pool as seen by the local node.
type Member struct {
	Meta
	GossipAddr string    // host:port of the member's memberlist
	State      State     // liveness
	Since      time.Time // when the local node saw State change
}

// EventType says what happened to a member.
type EventType int

// Event types.
const (
	// EventJoin: a member became alive, first seen or back after failing
	// or leaving. The local node reports its own join at Start.
	EventJoin EventType = iota + 1
	// EventUpdate: an alive member's metadata or gossip address changed.
	EventUpdate
	// EventLeave: a member left gracefully (its state is StateLeft).
	EventLeave
	// EventFailed: a member was declared dead (its state is StateDead).
	EventFailed
)

// String returns "join", "update", "leave" or "failed".
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	default:
		return fmt.Sprintf("event(%d)", int(t))
	}
}

// Event reports a change of one member; Member is its view right after it.
type Event struct {
	Type   EventType
	Member Member
}

type lifecycle int

const (
	lifeNew lifecycle = iota
	lifeRunning
	lifeLeft
	lifeShutdown
)

// Gossip runs this node's memberlist and tracks the pool's members. All
// methods are safe for concurrent use.
//
// Locking: lifeMu may be held while calling into memberlist; memberlist's
// callbacks (delegate below) run under memberlist's own node lock and take
// only mu. The order is therefore lifeMu, then memberlist's locks, then mu,
// and nothing calls memberlist while holding mu.
type Gossip struct {
	cfg     Config              // immutable after New, defaults applied
	logger  *slog.Logger        // immutable
	keyring *memberlist.Keyring // nil without SecretKey; has its own lock
	events  chan Event          // sent to only under mu; closed by Shutdown under mu
	stop    chan struct{}       // closed (under lifeMu) by Leave or Shutdown: ends the join loop
	dropped atomic.Uint64       // events dropped because the buffer was full

	// lifeMu serialises Start, UpdateMeta, Leave and Shutdown and guards
	// life and ml.
	lifeMu sync.Mutex
	life   lifecycle
	ml     *memberlist.Memberlist
	joinWG sync.WaitGroup // the background join loop

	// mu guards the fields below.
	mu        sync.Mutex
	meta      Meta               // local metadata as last set
	metaBuf   []byte             // encoded local metadata for NodeMeta; replaced, never modified
	members   map[string]*member // by node id
	localAddr string             // advertised gossip address, set by Start
	reapAfter time.Duration      // memberlist's GossipToTheDeadTime, set by Start
	closed    bool               // events is closed
}

// member is a Member plus the leaving flag from its metadata.
type member struct {
	Member
	leaving bool
}

// New checks cfg and allocates a Gossip; it does no I/O.
func New(cfg *Config) (*Gossip, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", ErrBadConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	buf, err := encodeMeta(c.Meta, false)
	if err != nil {
		return nil, err
	}
	g := &Gossip{
		cfg:     c,
		logger:  c.Logger.With("component", logging.ComponentGossip, "node_id", c.Meta.ID),
		events:  make(chan Event, c.EventBuffer),
		stop:    make(chan struct{}),
		meta:    c.Meta,
		metaBuf: buf,
		members: make(map[string]*member),
	}
	if c.SecretKey != nil {
		kr, err := memberlist.NewKeyring(nil, c.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		g.keyring = kr
	}
	return g, nil
}

// Start creates the memberlist, binding its TCP and UDP listeners, and
// starts the reconnect loop (reconnect.go), which joins Config.Join and the
// peers file's addresses until another member is alive, then keeps
// rejoining expected and failed members. Start waits up to
// Config.StartJoinTimeout for the first join; if none succeeds it logs a
// warning and returns nil, and joining goes on in the background.
func (g *Gossip) Start() error {
	g.lifeMu.Lock()
	switch g.life {
	case lifeRunning, lifeLeft:
		g.lifeMu.Unlock()
		return ErrAlreadyStarted
	case lifeShutdown:
		g.lifeMu.Unlock()
		return ErrShutdown
	}
	mc := g.cfg.memberlistConfig()
	mc.Name = g.cfg.Meta.ID
	if g.cfg.Tune != nil {
		g.cfg.Tune(mc)
	}
	d := &delegate{g: g}
	mc.Name = g.cfg.Meta.ID
	mc.Delegate = d
	mc.Events = d
	mc.Alive = nil
	mc.Merge = nil
	mc.Keyring = g.keyring
	mc.SecretKey = nil
	mc.Logger = logging.StdLog(g.logger)
	mc.LogOutput = nil

	g.mu.Lock()
	g.reapAfter = mc.GossipToTheDeadTime
	g.mu.Unlock()

	ml, err := memberlist.Create(mc)
	if err != nil {
		g.lifeMu.Unlock()
		return fmt.Errorf("start gossip on %s: %w", g.cfg.BindAddr, err)
	}
	// Nothing updates the local node yet, so its address is stable here.
	local := ml.LocalNode().Address()
	g.mu.Lock()
	g.localAddr = local
	g.mu.Unlock()
	g.ml = ml
	g.life = lifeRunning

	seeds := g.seeds(local)
	joined := make(chan struct{})
	g.joinWG.Add(1)
	go g.reconnectLoop(ml, seeds, joined)
	g.lifeMu.Unlock()
	g.logger.Info("gossip started", "addr", local)

	if len(seeds) == 0 || g.cfg.StartJoinTimeout <= 0 {
		return nil
	}
	t := time.NewTimer(g.cfg.StartJoinTimeout)
	defer t.Stop()
	select {
	case <-joined:
	case <-g.stop:
	case <-t.C:
		g.logger.Warn("no gossip peer reachable yet, joining in the background",
			"peer", strings.Join(seeds, ","), "duration", g.cfg.StartJoinTimeout)
	}
	return nil
}

// Join contacts addrs (gossip host:port addresses) and merges state with
// them; it returns how many answered. It fails with ErrJoinFailed when
// none did.
func (g *Gossip) Join(addrs []string) (int, error) {
	g.lifeMu.Lock()
	ml, life := g.ml, g.life
	g.lifeMu.Unlock()
	switch life {
	case lifeNew:
		return 0, ErrNotStarted
	case lifeLeft:
		return 0, ErrLeft
	case lifeShutdown:
		return 0, ErrShutdown
	}
	n, err := ml.Join(addrs)
	if n == 0 {
		return 0, fmt.Errorf("join %s: %w: %w", strings.Join(addrs, ","), ErrJoinFailed, err)
	}
	return n, nil
}

// Members returns every member the local node knows, itself included,
// sorted by ID. Dead and left members are listed until memberlist would
// reap them (GossipToTheDeadTime after they went away).
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m.Member)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Member returns the member with the given id.
func (g *Gossip) Member(id string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked()
	m, ok := g.members[id]
	if !ok {
		return Member{}, false
	}
	return m.Member, true
}

// NumAlive returns how many members, the local node included, are alive.
func (g *Gossip) NumAlive() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.members {
		if m.State == StateAlive {
			n++
		}
	}
	return n
}

// reapLocked forgets dead and left members older than reapAfter, as
// memberlist does; the local node is always kept. g.mu must be held.
func (g *Gossip) reapLocked() {
	for id, m := range g.members {
		if id != g.cfg.Meta.ID && (m.State == StateDead || m.State == StateLeft) &&
			time.Since(m.Since) > g.reapAfter {
			delete(g.members, id)
		}
	}
}

// Events returns the channel of member events. It is buffered
// (Config.EventBuffer); when it is full the oldest event is dropped so that
// memberlist is never blocked, and DroppedEvents counts the drops. It is
// closed by Shutdown.
func (g *Gossip) Events() <-chan Event {
	return g.events
}

// DroppedEvents returns how many events were dropped because the Events
// buffer was full.
func (g *Gossip) DroppedEvents() uint64 {
	return g.dropped.Load()
}

// LocalAddr returns the advertised gossip address (host:port), or "" before
// Start.
func (g *Gossip) LocalAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.localAddr
}

// UpdateMeta replaces the local metadata and re-gossips it, waiting up to
// Config.BroadcastTimeout for the broadcast to go out (ErrTimeout
// otherwise; the update still propagates). The ID cannot change. Before
// Start it only records m.
func (g *Gossip) UpdateMeta(m Meta) error {
	if m.ID != g.cfg.Meta.ID {
		return fmt.Errorf("%w: meta id %q differs from node id %q", ErrBadConfig, m.ID, g.cfg.Meta.ID)
	}
	buf, err := encodeMeta(m, false)
	if err != nil {
		return err
	}
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch g.life {
	case lifeLeft:
		return ErrLeft
	case lifeShutdown:
		return ErrShutdown
	}
	g.mu.Lock()
	g.meta = m
	g.metaBuf = buf
	g.mu.Unlock()
	if g.life == lifeNew {
		return nil
	}
	if err := g.ml.UpdateNode(g.cfg.BroadcastTimeout); err != nil {
		return fmt.Errorf("update meta: %w: %v", ErrTimeout, err)
	}
	return nil
}

// Leave announces a graceful departure: it re-gossips the metadata with a
// leaving flag (so peers record StateLeft rather than StateDead), then
// broadcasts memberlist's leave. timeout bounds the whole call; zero or
// negative means Config.BroadcastTimeout. The node keeps answering gossip
// until Shutdown. Calling Leave again is a no-op.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch g.life {
	case lifeNew:
		return ErrNotStarted
	case lifeLeft:
		return nil
	case lifeShutdown:
		return ErrShutdown
	}
	if timeout <= 0 {
		timeout = g.cfg.BroadcastTimeout
	}
	deadline := time.Now().Add(timeout)
	g.closeStopLocked()
	g.life = lifeLeft

	g.mu.Lock()
	buf, err := encodeMeta(g.meta, true)
	if err == nil {
		g.metaBuf = buf
	}
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if err := g.ml.UpdateNode(timeout / 2); err != nil {
		// Peers that miss the flag will record a failure instead of a leave.
		g.logger.Warn("leave announcement not confirmed", "err", err)
	}
	// memberlist waits without bound for a zero timeout.
	if err := g.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("leave: %w: %v", ErrTimeout, err)
	}
	g.logger.Info("left gossip pool")
	return nil
}

// Shutdown stops the memberlist without a leave broadcast (peers will see
// this node fail; call Leave first for a graceful exit), stops the join
// loop and closes the Events channel. It is idempotent.
func (g *Gossip) Shutdown() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.life == lifeShutdown {
		return nil
	}
	g.closeStopLocked()
	var err error
	if g.ml != nil {
		err = g.ml.Shutdown()
	}
	g.joinWG.Wait()
	g.life = lifeShutdown
	g.mu.Lock()
	g.closed = true
	close(g.events)
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("shutdown gossip: %w", err)
	}
	return nil
}

// closeStopLocked closes g.stop once; g.lifeMu must be held.
func (g *Gossip) closeStopLocked() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
}

// emitLocked queues ev without blocking, dropping the oldest queued event
// when the buffer is full. g.mu must be held: the callbacks are the only
// senders, so after one receive there is room.
func (g *Gossip) emitLocked(ev Event) {
	if g.closed {
		return
	}
	for {
		select {
		case g.events <- ev:
			return
		default:
		}
		select {
		case <-g.events:
			g.dropped.Add(1)
		default:
		}
	}
}

// observe records a memberlist notification about n. It runs inside
// memberlist's callbacks, under memberlist's node lock, and must not block.
func (g *Gossip) observe(kind EventType, n *memberlist.Node) {
	name, addr := n.Name, n.Address()
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		g.logger.Warn("ignoring undecodable member metadata", "peer", name, "addr", addr, "err", err)
		meta, leaving = Meta{}, false
	}
	meta.ID = name
	now := time.Now()

	g.mu.Lock()
	prev, had := g.members[name]
	cur := &member{Member: Member{Meta: meta, GossipAddr: addr, State: StateAlive, Since: now}, leaving: leaving}
	emit := kind
	switch kind {
	case EventUpdate:
		if had && prev.State == StateAlive {
			cur.Since = prev.Since
			if prev.Meta == meta && prev.GossipAddr == addr {
				emit = 0 // only the leaving flag changed
			}
		} else {
			emit = EventJoin
		}
	case EventLeave:
		cur.State = StateDead
		emit = EventFailed
		if leaving {
			cur.State = StateLeft
			emit = EventLeave
		}
	}
	g.members[name] = cur
	if emit != 0 {
		g.emitLocked(Event{Type: emit, Member: cur.Member})
	}
	g.mu.Unlock()

	switch emit {
	case EventJoin:
		g.logger.Info("member joined", "peer", name, "addr", addr)
	case EventLeave:
		g.logger.Info("member left", "peer", name, "addr", addr)
	case EventFailed:
		g.logger.Warn("member failed", "peer", name, "addr", addr)
	case EventUpdate:
		g.logger.Debug("member updated", "peer", name, "addr", addr)
	}
}

// delegate implements memberlist.Delegate and memberlist.EventDelegate for
// a Gossip. memberlist calls the event methods one at a time, under its node
// lock; they only record and queue, never block.
type delegate struct {
	g *Gossip
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NodeMeta returns the encoded local metadata; its size was checked when it
// was set.
func (d *delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaBuf) > limit {
		return nil // unreachable: encodeMeta enforces memberlist.MetaMaxSize
	}
	return d.g.metaBuf
}

// NotifyMsg ignores user messages: cubekv sends none.
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts returns nothing: cubekv has no user broadcasts.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState returns nothing: all state travels in the node metadata.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote user state: there is none.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin records a member that became alive.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.g.observe(EventJoin, n) }

// NotifyUpdate records a member's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.observe(EventUpdate, n) }

// NotifyLeave records a member that failed or left.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.g.observe(EventLeave, n) }
