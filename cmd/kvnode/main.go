// Command kvnode runs one cubekv node: a Raft member with its storage engine
// and a Thrift front door. With no flags it is a single-node cluster on
// 127.0.0.1 (Thrift on :9090) keeping its data in ./kvnode-data.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/console"
	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/server"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/transport"
)

// Set with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvnode:", err)
		os.Exit(exitCode(err))
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "migrate-log" {
		return migrateLog(args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "kvnode %s (commit %s, built %s)\n", version, commit, date)
		return nil
	}
	logger, err := createLogger(cfg, stderr)
	if err != nil {
		return err
	}
	// Every flag is checked before anything starts, so a bad setting never
	// leaves a half-started node (or a restart loop under a supervisor).
	if err := cfg.validate(); err != nil {
		return err
	}
	// The data dir lock comes before anything else starts (datadir.go).
	lock, err := openDataDir(cfg, logger)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if cfg.ForceNewCluster {
		return forceNewCluster(cfg, logger, stdout)
	}
	if err := checkAddrsFree(cfg); err != nil {
		return err
	}
	if err := lock.WritePID(); err != nil {
		return fmt.Errorf("write %s/LOCK: %w", cfg.DataDir, err)
	}
	if err := recordIdentity(cfg, logger); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The generated Thrift processors start a goroutine, two contexts and
	// a ticker per call to notice a client that hung up mid-request (a
	// process-wide setting of the thrift library). Handlers here are bounded
	// by --request-timeout anyway; the check cost up to 9% of a busy
	// leader's CPU (docs/performance.md).
	thrift.ServerConnectivityCheckInterval = 0
	// The store lives in the heap. Go's default GOGC=100 lets the heap
	// grow to twice the live data before collecting. GOGC in the
	// environment (and GOMEMLIMIT) still rule.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent(cfg.Engine))
	}

	certs, err := createCerts(cfg)
	if err != nil {
		return err
	}
	if certs != nil {
		go certs.Watch(ctx, cfg.TLSReloadInterval, logger)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					certs.ReloadAndLog(logger)
				}
			}
		}()
	}
	cfg.certs = certs

	m, err := newMetrics()
	if err != nil {
		return err
	}
	m.dataDir, m.lowSpace = cfg.DataDir, cfg.LowSpaceWarning
	cfg.metrics = m

	// Gossip is created first (the node's topology reads it) but started
	// only once the front door serves: a node never waits for gossip.
	var nodeRef atomic.Pointer[node.Node]
	g, err := createGossip(cfg, logger, func() map[string]string {
		if n := nodeRef.Load(); n != nil {
			return n.GossipPeers()
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Shutdown runs the stack in reverse: the leader hands over first (below),
	// then the steps run in this order, each after the one before ends:
	//  1. front doors: the Thrift server (no new requests; open ones end),
	//     then the admin server;
	//  2. gossip leave: peers record this node as left, not failed;
	//  3. node: Raft shuts down, then its transport and its stores;
	//  4. gossip: memberlist stops;
	//  5. peer connections: the pool the forwarder dialled the leader with.
	// A start that fails half way runs the steps pushed so far, in the same
	// order.
	var stack closers
	pool := transport.NewPool(&transport.DialConfig{
		Transport: cfg.ThriftTransport,
		Protocol:  cfg.ThriftProtocol,
		// Forwarded requests wait for the leader's own request timeout.
		RequestTimeout: cfg.RequestTimeout + 2*time.Second,
		TLS:            cfg.tlsConfig(),
	}, 64)
	stack.push("peer connections", pool.Close)
	stack.push("gossip", func() error { return shutdownGossip(g) })
	// The node resolves ids to Thrift addresses for its peer client, which
	// it starts using inside Open, before createNode returns.
	peers := server.NewPeerClient(pool, nodeDirectory{&nodeRef})
	n, err := createNode(cfg, logger, g, peers, &nodeRef)
	if err != nil {
		return errors.Join(err, stack.close())
	}
	stack.push("node", n.Close)
	// Leave is a no-op before gossip starts, so it is pushed here, where it
	// runs after the front doors close and before the node does.
	stack.push("gossip leave", func() error {
		if g != nil {
			if err := g.Leave(2 * time.Second); err != nil && !errors.Is(err, gossip.ErrNotStarted) {
				logger.Warn("gossip leave", "err", err)
			}
		}
		return nil
	})
	srv, err := createThriftServer(cfg, n, peers, g, logger)
	if err != nil {
		return errors.Join(err, stack.close())
	}
	// The admin server is created after the Thrift server but closes right
	// after it: one step closes both, admin being set once it exists.
	var admin *adminServer
	stack.push("front doors", func() error {
		err := srv.Close()
		if admin != nil {
			err = errors.Join(err, admin.close())
		}
		return err
	})
	if err := m.watch(n, srv); err != nil {
		return errors.Join(err, stack.close())
	}
	if admin, err = createAdmin(cfg, n, logger.With("component", logging.ComponentAdmin)); err != nil {
		return errors.Join(err, stack.close())
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve() }()
	if admin != nil {
		go func() { serveErr <- admin.serve() }()
	}
	if g != nil {
		if err := g.Start(); err != nil {
			err = fmt.Errorf("start gossip on %s: %w", cfg.GossipAddr, err)
			return errors.Join(err, stack.close())
		}
	}
	logger.Info("kvnode started", "addr", srv.Addr().String(), "version", version)
	spaceDone := make(chan struct{})
	defer close(spaceDone)
	go watchFreeSpace(spaceDone, cfg, logger)

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		logger.Error("server stopped", "err", err)
	}
	// A leader hands over first, so a restart is not a write outage while
	// the others notice it is gone.
	handOver(n, logger)
	shutdownErr := stack.close()
	if shutdownErr != nil {
		logger.Error("shutdown", "err", shutdownErr)
	} else {
		logger.Info("shutdown complete")
	}
	return errors.Join(err, shutdownErr)
}

func createLogger(cfg *config, w io.Writer) (*slog.Logger, error) {
	level, ok := logging.ParseLevel(cfg.LogLevel)
	if !ok {
		return nil, fmt.Errorf("%w: --log-level %q", errUsage, cfg.LogLevel)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return nil, fmt.Errorf("%w: --log-format must be text or json, got %q", errUsage, cfg.LogFormat)
	}
	return logging.New(w, cfg.LogFormat == "json", level).With("node_id", cfg.ID), nil
}

// forceNewCluster runs the one-shot recovery and exits: a flag left in a
// unit file must not force the configuration again on every start.
func forceNewCluster(cfg *config, logger *slog.Logger, stdout io.Writer) error {
	nc, err := cfg.nodeConfig()
	if err != nil {
		return err
	}
	nc.Logger = logger
	if err := node.ForceNewCluster(nc); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is now the only voter of the cluster in %s; start kvnode without --force-new-cluster, then add members with kvctl member add\n", cfg.ID, cfg.DataDir)
	return nil
}

// handOver transfers leadership to another voter when this node leads a
// cluster of several voters, waiting at most a few seconds.
func handOver(n *node.Node, logger *slog.Logger) {
	if n.Status().Role != node.RoleLeader {
		return
	}
	servers, _, err := n.Configuration()
	if err != nil {
		return
	}
	voters := 0
	for _, s := range servers {
		if s.Suffrage == node.SuffrageVoter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if leader, err := n.TransferLeadership(ctx, ""); err != nil {
		logger.Warn("leadership hand-over before shutdown failed", "err", err)
	} else {
		logger.Info("handed leadership over before shutdown", "leader", leader)
	}
}

// createCerts loads the TLS files when any is given; mutual TLS needs all
// three.
func createCerts(cfg *config) (*transport.Certs, error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" && cfg.TLSCA == "" {
		return nil, nil
	}
	if cfg.TLSReloadInterval <= 0 {
		return nil, fmt.Errorf("%w: --tls-reload-interval must be positive", errUsage)
	}
	certs, err := transport.LoadCerts(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return certs, nil
}

// createGossip builds the gossip member from the flags without starting it.
// expected returns the nodes gossip must keep rejoining.
func createGossip(cfg *config, logger *slog.Logger, expected func() map[string]string) (*gossip.Gossip, error) {
	if cfg.GossipAddr == "" {
		return nil, nil
	}
	gc := gossip.DefaultConfig()
	gc.Meta = gossip.Meta{
		ID:         cfg.ID,
		ThriftAddr: cfg.thriftAdvertise(),
		RaftAddr:   cfg.RaftAddr,
		AdminAddr:  cfg.AdminAddr,
		Version:    version,
	}
	if cfg.RaftAdvertise != "" {
		gc.Meta.RaftAddr = cfg.RaftAdvertise
	}
	gc.BindAddr = cfg.GossipAddr
	gc.AdvertiseAddr = cfg.GossipAdvertise
	gc.Join = cfg.joinList()
	gc.Expected = expected
	gc.PeersFile = filepath.Join(cfg.DataDir, "gossip", "peers.json")
	// The front door already serves when gossip starts; joining goes on in
	// the background.
	gc.StartJoinTimeout = 0
	gc.Logger = logger
	if cfg.GossipKeyFile != "" {
		key, err := gossip.LoadKeyFile(cfg.GossipKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		gc.SecretKey = key
	}
	if err := gc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	g, err := gossip.New(gc)
	if err != nil {
		return nil, fmt.Errorf("new gossip: %w", err)
	}
	return g, nil
}

func shutdownGossip(g *gossip.Gossip) error {
	if g == nil {
		return nil
	}
	return g.Shutdown()
}

// nodeDirectory is the node, as the directory of Thrift addresses, once
// ref is set: the peer client must exist before the node does.
type nodeDirectory struct{ ref *atomic.Pointer[node.Node] }

func (d nodeDirectory) ThriftAddr(id string) string {
	if n := d.ref.Load(); n != nil {
		return n.ThriftAddr(id)
	}
	return ""
}

// createNode opens the node; ref is set to it before Open starts Raft, so
// the forwarder and gossip can resolve addresses through it from then on.
func createNode(cfg *config, logger *slog.Logger, g *gossip.Gossip, remote node.Remote, ref *atomic.Pointer[node.Node]) (*node.Node, error) {
	nc, err := cfg.nodeConfig()
	if err != nil {
		return nil, err
	}
	nc.Logger = logger
	nc.Remote = remote
	if lr, ok := remote.(node.LeaseRemote); ok {
		nc.LeaseRemote = lr
	}
	nc.SkipStartChecks = true // openDataDir ran node.Preflight
	nc.Observer = cfg.metrics
	if cfg.certs != nil {
		nc.RaftTLS = cfg.certs.PeerTLSConfig()
	}
	if g != nil {
		nc.Membership = g
	}
	n, err := node.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	ref.Store(n)
	if err := n.Open(); err != nil {
		return nil, errors.Join(fmt.Errorf("open node: %w", err), n.Close())
	}
	return n, nil
}

func createThriftServer(cfg *config, n *node.Node, peers *server.PeerClient, g *gossip.Gossip, logger *slog.Logger) (*transport.Server, error) {
	sc, err := cfg.serverConfig()
	if err != nil {
		return nil, err
	}
	sc.TLS = cfg.tlsConfig()
	hc, err := cfg.handlerConfig()
	if err != nil {
		return nil, err
	}
	hc.Logger = logger
	hc.Observe = cfg.metrics.observeRequest
	h := server.New(n, hc)
	if err := cfg.metrics.watches(h, n); err != nil {
		return nil, err
	}
	var keyring server.Keyring
	if g != nil {
		keyring = g
	}
	cluster := server.NewCluster(h, n, peers, keyring)
	cfg.front = console.Front{KV: h, Cluster: cluster}
	proc := server.NewProcessor(h, cluster, server.NewInternal(h, n, keyring))
	srv, err := transport.NewServer(sc, proc, logger.With("component", logging.ComponentTransport))
	if err != nil {
		return nil, fmt.Errorf("new thrift server: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("listen thrift %s: %w", sc.Addr, err)
	}
	return srv, nil
}

// gcPercent is the GC target when GOGC is not set. The arena engine keeps
// its records in pointer-free slabs the collector never scans, so a cycle
// costs about the same at any key count and a tight 10 keeps the heap close
// to the data (at 1M keys: 30 MiB less RSS than 25 for 2.1% of CPU in GC
// under a put load instead of 0.9%); the btree and hash engines make every
// key a heap object the collector marks, so they trade headroom for GC work
// at 50 (docs/performance.md, "Memory").
func gcPercent(engine string) int {
	if engine == "" {
		engine = storage.KindDefault
	}
	if engine == storage.KindArena {
		return 10
	}
	return 50
}

// shutdownTimeout bounds the admin server's graceful shutdown.
const shutdownTimeout = 5 * time.Second
