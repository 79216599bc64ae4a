package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Nemesis injects one kind of fault and heals it. Inject and Heal are called
// alternately from one goroutine; Heal undoes whatever the last Inject did.
type Nemesis interface {
	// Name names the fault, e.g. "kill-leader".
	Name() string
	// Inject starts the fault.
	Inject(ctx context.Context) error
	// Heal ends it.
	Heal(ctx context.Context) error
}

// ErrNoTarget means a nemesis found no node to act on (no leader known, say).
var ErrNoTarget = errors.New("no target")

// nemesisEnv is what every nemesis acts on.
type nemesisEnv struct {
	c   *cluster
	rng *rand.Rand // used only from the nemesis goroutine
}

// pickLeader returns the current leader, waiting briefly for one.
func (e *nemesisEnv) pickLeader(ctx context.Context) (*kvnode, error) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.c.waitLeader(wctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoTarget, err)
	}
	return l, nil
}

// pickFollower returns a random node that is not the leader (any node when no leader is known).
func (e *nemesisEnv) pickFollower() *kvnode {
	l := e.c.leader()
	fs := e.c.followers(l)
	return fs[e.rng.IntN(len(fs))]
}

func (e *nemesisEnv) shuffled() []*kvnode {
	ns := append([]*kvnode(nil), e.c.nodes...)
	e.rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	return ns
}

// killNemesis kills nodes with SIGKILL and restarts them on heal.
type killNemesis struct {
	env     *nemesisEnv
	mode    string // "follower", "leader" or "all"
	victims []*kvnode
}

func (k *killNemesis) Name() string { return "kill-" + k.mode }

func (k *killNemesis) Inject(ctx context.Context) error {
	switch k.mode {
	case "leader":
		l, err := k.env.pickLeader(ctx)
		if err != nil {
			return err
		}
		k.victims = []*kvnode{l}
	case "follower":
		k.victims = []*kvnode{k.env.pickFollower()}
	default:
		k.victims = k.env.c.nodes
	}
	for _, n := range k.victims {
		n.kill()
	}
	return nil
}

func (k *killNemesis) Heal(context.Context) error {
	var errs []error
	for _, n := range k.victims {
		errs = append(errs, n.start())
	}
	k.victims = nil
	return errors.Join(errs...)
}

// pauseNemesis stops nodes with SIGSTOP and resumes them with SIGCONT.
type pauseNemesis struct {
	env     *nemesisEnv
	mode    string // "leader", "follower" or "minority"
	victims []*kvnode
}

func (p *pauseNemesis) Name() string { return "pause-" + p.mode }

func (p *pauseNemesis) Inject(ctx context.Context) error {
	switch p.mode {
	case "leader":
		l, err := p.env.pickLeader(ctx)
		if err != nil {
			return err
		}
		p.victims = []*kvnode{l}
	case "follower":
		p.victims = []*kvnode{p.env.pickFollower()}
	default:
		p.victims = p.env.shuffled()[:(len(p.env.c.nodes)-1)/2]
	}
	for _, n := range p.victims {
		if err := n.signal(syscall.SIGSTOP); err != nil {
			return err
		}
	}
	return nil
}

func (p *pauseNemesis) Heal(context.Context) error {
	var errs []error
	for _, n := range p.victims {
		errs = append(errs, n.signal(syscall.SIGCONT))
	}
	p.victims = nil
	return errors.Join(errs...)
}

// partitionNemesis cuts the network with DROP rules inside the node namespaces.
type partitionNemesis struct {
	env  *nemesisEnv
	mode string // "isolate-leader", "isolate-follower", "halves", "bridge", "asymmetric"
}

func (p *partitionNemesis) Name() string { return "partition-" + p.mode }

// cut drops every packet between a and b, both ways.
func cut(r rules, a, b []*kvnode) {
	for _, x := range a {
		for _, y := range b {
			r.dropFrom[x.id] = append(r.dropFrom[x.id], y.ip)
			r.dropTo[x.id] = append(r.dropTo[x.id], y.ip)
			r.dropFrom[y.id] = append(r.dropFrom[y.id], x.ip)
			r.dropTo[y.id] = append(r.dropTo[y.id], x.ip)
		}
	}
}

func (p *partitionNemesis) Inject(ctx context.Context) error {
	r := rules{dropFrom: map[string][]string{}, dropTo: map[string][]string{}}
	ns := p.env.shuffled()
	switch p.mode {
	case "isolate-leader":
		l, err := p.env.pickLeader(ctx)
		if err != nil {
			return err
		}
		cut(r, []*kvnode{l}, p.env.c.followers(l))
	case "isolate-follower":
		f := p.env.pickFollower()
		var rest []*kvnode
		for _, n := range p.env.c.nodes {
			if n != f {
				rest = append(rest, n)
			}
		}
		cut(r, []*kvnode{f}, rest)
	case "halves":
		// A minority of floor(n/2) nodes against the majority.
		k := len(ns) / 2
		cut(r, ns[:k], ns[k:])
	case "bridge":
		// Two halves that cannot see each other and one node that sees both.
		mid := len(ns) / 2
		cut(r, ns[:mid], ns[mid+1:])
	case "asymmetric":
		// The leader drops everything arriving from the others; they still receive from it.
		l, err := p.env.pickLeader(ctx)
		if err != nil {
			return err
		}
		for _, f := range p.env.c.followers(l) {
			r.dropFrom[l.id] = append(r.dropFrom[l.id], f.ip)
		}
	default:
		return fmt.Errorf("unknown partition %q", p.mode)
	}
	return p.env.c.net.apply(r)
}

func (p *partitionNemesis) Heal(context.Context) error { return p.env.c.net.heal() }

// clusterCall makes a Cluster call at the leader, following redirects and
// retrying until ctx ends.
func (e *nemesisEnv) clusterCall(ctx context.Context, fn func(ctx context.Context, cc *kv.ClusterClient) error) error {
	var last error
	for {
		l, err := e.pickLeader(ctx)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 70*time.Second)
			err = clusterDo(cctx, l.thriftAddr(), e.c.tls.clientTLS(), fn)
			cancel()
			if err == nil {
				return nil
			}
			var nl *kv.NotLeader
			var un *kv.Unavailable
			if !errors.As(err, &nl) && !errors.As(err, &un) && !isTransient(err) {
				return err
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster call: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// isTransient reports errors of a connection to a node that went away.
func isTransient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.EPIPE)
}

// memberNemesis removes a follower from the configuration, kills it and wipes
// its data; on heal it starts it empty and adds it back.
type memberNemesis struct {
	env    *nemesisEnv
	victim *kvnode
}

func (m *memberNemesis) Name() string { return "member-remove-add" }

func (m *memberNemesis) Inject(ctx context.Context) error {
	f := m.env.pickFollower()
	err := m.env.clusterCall(ctx, func(ctx context.Context, cc *kv.ClusterClient) error {
		_, err := cc.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: f.id})
		return err
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", f.id, err)
	}
	m.victim = f
	f.kill()
	return f.wipe()
}

func (m *memberNemesis) Heal(ctx context.Context) error {
	f := m.victim
	if f == nil {
		return nil
	}
	m.victim = nil
	f.mu.Lock()
	f.args = m.env.c.joinArgs()
	f.mu.Unlock()
	if err := f.start(); err != nil {
		return err
	}
	err := m.env.clusterCall(ctx, func(ctx context.Context, cc *kv.ClusterClient) error {
		_, err := cc.AddMember(ctx, &kv.AddMemberRequest{NodeID: f.id, RaftAddr: f.raftAddr()})
		return err
	})
	if err != nil {
		return fmt.Errorf("add %s: %w", f.id, err)
	}
	return nil
}

// transferNemesis moves leadership to a random follower.
type transferNemesis struct {
	env *nemesisEnv
}

func (tn *transferNemesis) Name() string { return "transfer-leadership" }

func (tn *transferNemesis) Inject(ctx context.Context) error {
	l, err := tn.env.pickLeader(ctx)
	if err != nil {
		return err
	}
	fs := tn.env.c.followers(l)
	target := fs[tn.env.rng.IntN(len(fs))]
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return clusterDo(cctx, l.thriftAddr(), tn.env.c.tls.clientTLS(), func(ctx context.Context, cc *kv.ClusterClient) error {
		_, err := cc.TransferLeadership(ctx, &kv.TransferLeadershipRequest{NodeID: &target.id})
		return err
	})
}

func (tn *transferNemesis) Heal(context.Context) error { return nil }

// healAll is the safety net after the last round: no rule, no stopped or dead process.
func healAll(c *cluster) error {
	var errs []error
	errs = append(errs, c.net.heal())
	for _, n := range c.nodes {
		if n.isPaused() {
			errs = append(errs, n.signal(syscall.SIGCONT))
		}
		if !n.running() {
			errs = append(errs, n.start())
		}
	}
	return errors.Join(errs...)
}
