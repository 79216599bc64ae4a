package gossip

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
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

// Members returns every member the local node knows, itself included,
// sorted by ID. Dead and left members are listed until memberlist would
// reap them (GossipToTheDeadTime after they went away).
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reapLocked()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, *m)
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
	return *m, true
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

// change is what a memberlist callback reports about a member.
type change int

const (
	// changeJoin: the member became alive (NotifyJoin), first seen or back
	// after failing or leaving.
	changeJoin change = iota + 1
	// changeUpdate: an alive member's metadata or address changed
	// (NotifyUpdate).
	changeUpdate
	// changeGone: the member failed or left (NotifyLeave); its leaving
	// flag says which.
	changeGone
)

// observe records a memberlist notification about n. It runs inside
// memberlist's callbacks, under memberlist's node lock, and must not block.
func (g *Gossip) observe(kind change, n *memberlist.Node) {
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
	cur := &Member{Meta: meta, GossipAddr: addr, State: StateAlive, Since: now}
	seen := kind
	switch kind {
	case changeUpdate:
		if had && prev.State == StateAlive {
			cur.Since = prev.Since
			if prev.Meta == meta && prev.GossipAddr == addr {
				seen = 0 // only the leaving flag changed
			}
		} else {
			seen = changeJoin
		}
	case changeGone:
		cur.State = StateDead
		if leaving {
			cur.State = StateLeft
		}
	}
	g.members[name] = cur
	g.mu.Unlock()

	switch {
	case seen == changeJoin:
		g.logger.Info("member joined", "peer", name, "addr", addr)
	case seen == changeGone && leaving:
		g.logger.Info("member left", "peer", name, "addr", addr)
	case seen == changeGone:
		g.logger.Warn("member failed", "peer", name, "addr", addr)
	case seen == changeUpdate:
		g.logger.Debug("member updated", "peer", name, "addr", addr)
	}
}
