package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlist never probes a member it has declared dead, and forgets it
// after GossipToTheDeadTime. Two halves of a partition that each declared
// the other dead therefore never meet again on their own, and a node that
// restarts with a seed list naming only itself, or a removed node, stays
// alone. serf adds a reconnect loop and a snapshot of known members for
// this; the reconnect loop below does the same for this package:
//
//   - Until another member is alive, it joins the seeds: Config.Join and
//     the addresses in Config.PeersFile, never this node's own address.
//   - Always, it joins every expected member (Config.Expected, the Raft
//     configuration in kvnode) that is not alive, and every member that
//     failed (dead, not left) and has not been reaped.
//
// Each target is tried in its own goroutine, so one unreachable address
// (a connect that hangs until memberlist's TCP timeout) delays no other,
// with per-target backoff from JoinRetryInterval doubling to JoinRetryMax.
// A join that reaches a node which had declared this one dead makes that
// node refute it (memberlist raises the incarnation), and both sides see
// each other alive again. The loop logs once when a target becomes
// unreachable and once when it is reached again, never per attempt.

// target is one address the reconnect loop is trying to join.
type target struct {
	id       string        // node id when known, "" for a seed
	delay    time.Duration // wait after the next failure
	next     time.Time     // earliest next attempt
	inflight bool
	failing  bool // an attempt failed and no later one succeeded (logged once)
}

// attemptResult is the outcome of one join attempt of addr.
type attemptResult struct {
	addr string
	err  error
}

// seeds returns Config.Join and the peers file's addresses, without the
// local address, deduplicated.
func (g *Gossip) seeds(local string) []string {
	var out []string
	add := func(a string) {
		if a != "" && !sameAddr(a, local) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range g.cfg.Join {
		add(a)
	}
	peers, err := readPeersFile(g.cfg.PeersFile)
	if err != nil {
		g.logger.Warn("ignoring unreadable gossip peers file", "path", g.cfg.PeersFile, "err", err)
	}
	for _, p := range peers {
		if p.ID != g.cfg.Meta.ID {
			add(p.Addr)
		}
	}
	return out
}

// sameAddr reports whether two host:port strings name the same endpoint
// (after resolving names and normalising IP literals).
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	ta, err1 := net.ResolveTCPAddr("tcp", a)
	tb, err2 := net.ResolveTCPAddr("tcp", b)
	return err1 == nil && err2 == nil && ta.Port == tb.Port && ta.IP.Equal(tb.IP)
}

// wanted returns the addresses to join now (address -> node id, "" for a
// seed) and whether another member is alive.
func (g *Gossip) wanted(seeds []string) (map[string]string, bool) {
	var expected map[string]string
	if g.cfg.Expected != nil {
		expected = g.cfg.Expected()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked()
	local := g.localAddr
	out := make(map[string]string)
	others := false
	for id, m := range g.members {
		if id == g.cfg.Meta.ID {
			continue
		}
		switch m.State {
		case StateAlive:
			others = true
		case StateDead:
			out[m.GossipAddr] = id
		}
	}
	for id, addr := range expected {
		if id == g.cfg.Meta.ID || addr == "" || sameAddr(addr, local) {
			continue
		}
		if m, ok := g.members[id]; ok && m.State == StateAlive {
			continue
		}
		out[addr] = id
	}
	if !others {
		for _, a := range seeds {
			if _, ok := out[a]; !ok {
				out[a] = ""
			}
		}
	}
	return out, others
}

// reconnectLoop runs until g.stop is closed; joined is closed the first
// time another member is alive.
func (g *Gossip) reconnectLoop(ml *memberlist.Memberlist, seeds []string, joined chan<- struct{}) {
	defer g.joinWG.Done()
	tick := time.NewTicker(g.cfg.JoinRetryInterval)
	defer tick.Stop()
	targets := make(map[string]*target)
	results := make(chan attemptResult)
	announced := false
	var lastPeers []peerRecord
	for {
		want, others := g.wanted(seeds)
		if others && !announced {
			announced = true
			g.logger.Info("joined gossip pool", "count", g.NumAlive()-1)
			close(joined)
		}
		now := time.Now()
		for addr, t := range targets {
			if _, ok := want[addr]; !ok && !t.inflight {
				if t.failing {
					g.logger.Info("gossip peer reachable again", "peer", t.id, "addr", addr)
				}
				delete(targets, addr)
			}
		}
		for addr, id := range want {
			t, ok := targets[addr]
			if !ok {
				t = &target{id: id, delay: g.cfg.JoinRetryInterval, next: now}
				targets[addr] = t
			}
			if t.inflight || now.Before(t.next) {
				continue
			}
			t.inflight = true
			g.joinWG.Add(1)
			go func(addr string) {
				defer g.joinWG.Done()
				_, err := ml.Join([]string{addr})
				select {
				case results <- attemptResult{addr: addr, err: err}:
				case <-g.stop:
				}
			}(addr)
		}
		if peers := g.alivePeers(); !slices.Equal(peers, lastPeers) {
			if err := writePeersFile(g.cfg.PeersFile, peers); err != nil {
				g.logger.Warn("cannot keep gossip peers file", "path", g.cfg.PeersFile, "err", err)
			}
			lastPeers = peers
		}

		select {
		case <-g.stop:
			return
		case <-tick.C:
		case r := <-results:
			t := targets[r.addr]
			t.inflight = false
			if r.err != nil {
				if !t.failing {
					g.logger.Warn("gossip peer unreachable, retrying in the background",
						"peer", t.id, "addr", r.addr, "err", r.err)
				}
				t.failing = true
				t.next = time.Now().Add(t.delay)
				t.delay = min(2*t.delay, g.cfg.JoinRetryMax)
				continue
			}
			if t.failing {
				g.logger.Info("gossip peer reachable again", "peer", t.id, "addr", r.addr)
			}
			// Joined: the target leaves the list once the member is seen
			// alive; until then retry at the shortest interval.
			t.failing = false
			t.delay = g.cfg.JoinRetryInterval
			t.next = time.Now().Add(t.delay)
		}
	}
}

// peerRecord is one line of the peers file.
type peerRecord struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// alivePeers returns the alive members other than this node, sorted by id.
func (g *Gossip) alivePeers() []peerRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []peerRecord
	for id, m := range g.members {
		if id != g.cfg.Meta.ID && m.State == StateAlive {
			out = append(out, peerRecord{ID: id, Addr: m.GossipAddr})
		}
	}
	slices.SortFunc(out, func(a, b peerRecord) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// peersFile is the JSON document kept at Config.PeersFile.
type peersFile struct {
	Peers []peerRecord `json:"peers"`
}

// readPeersFile returns the peers kept at path; a missing file or an empty
// path is no peers and no error.
func readPeersFile(path string) ([]peerRecord, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f peersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return f.Peers, nil
}

// writePeersFile replaces the file at path with peers (write to a temporary
// file, then rename). An empty list is not written, so a node that is alone
// for a while keeps the addresses it last knew. Empty path: no-op.
func writePeersFile(path string, peers []peerRecord) error {
	if path == "" || len(peers) == 0 {
		return nil
	}
	b, err := json.MarshalIndent(peersFile{Peers: peers}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
