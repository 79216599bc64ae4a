package gossip

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cubekv/cubekv/internal/logging"
)

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
	stop    chan struct{}       // closed (under lifeMu) by Leave or Shutdown: ends the join loop

	// lifeMu serialises Start, Leave and Shutdown and guards
	// life and ml.
	lifeMu sync.Mutex
	life   lifecycle
	ml     *memberlist.Memberlist
	joinWG sync.WaitGroup // the background join loop

	// mu guards the fields below.
	mu        sync.Mutex
	metaBuf   []byte             // encoded local metadata for NodeMeta; replaced, never modified
	members   map[string]*Member // by node id
	localAddr string             // advertised gossip address, set by Start
	reapAfter time.Duration      // memberlist's GossipToTheDeadTime, set by Start
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
		logger:  c.Logger.With("component", logging.ComponentGossip),
		stop:    make(chan struct{}),
		metaBuf: buf,
		members: make(map[string]*Member),
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

// LocalAddr returns the advertised gossip address (host:port), or "" before
// Start.
func (g *Gossip) LocalAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.localAddr
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
	buf, err := encodeMeta(g.cfg.Meta, true)
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
// this node fail; call Leave first for a graceful exit) and stops the
// reconnect loop. It is idempotent.
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
