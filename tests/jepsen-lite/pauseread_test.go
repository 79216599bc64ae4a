package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// pauseReadTrials is the number of trials of TestPauseRead per profile.
func pauseReadTrials(profile string) int {
	if profile == "long" {
		return 50
	}
	return 10
}

// pauseReadResult is what one trial's read on the paused leader returned.
type pauseReadResult int

const (
	readRefused pauseReadResult = iota // an error: the old leader would not confirm
	readNew                            // the value acknowledged by the new leader
	readOld                            // the value it replaced: a stale read
)

// TestPauseRead checks that a leader paused with SIGSTOP under write load
// cannot serve a linearizable read of a value a newer leader has replaced.
// Each trial writes "old" to a key, pauses the leader, has a new leader
// acknowledge "new", then sends a LINEARIZABLE get on a connection to the
// paused leader (it waits in the socket) and resumes it. The answer must be
// an error or "new", never "old".
func TestPauseRead(t *testing.T) {
	requireNetns(t)
	b := mustBinaries(t)
	prof := profile()
	trials := pauseReadTrials(prof)
	start := time.Now()
	c := startCluster(t, newNetwork(t), t.TempDir(), clusterOpts{size: 3, bin: b.normal})
	eps := c.endpoints()

	// Write load on other keys for the whole run, through every node.
	load, err := client.New(client.Config{
		Endpoints: eps,
		Dial:      transport.DialConfig{ConnectTimeout: 500 * time.Millisecond, RequestTimeout: 3 * time.Second},
		Backoff:   20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Close()
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var loadAcks atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				ctx, cancel := context.WithTimeout(loadCtx, 3*time.Second)
				if _, err := load.Put(ctx, fmt.Appendf(nil, "pr/load/%d/%d", w, i%64), []byte("x")); err == nil {
					loadAcks.Add(1)
				}
				cancel()
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()

	counts := map[pauseReadResult]int{}
	for i := range trials {
		res, err := pauseReadTrial(t, c, i)
		if err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
		counts[res]++
		if err := c.waitAllReady(60 * time.Second); err != nil {
			t.Fatalf("trial %d: after resuming: %v", i, err)
		}
	}
	summary := fmt.Sprintf("pause-read profile %s: %d trials, %d refused, %d read the new value, %d read the old value; %d load writes acknowledged; wall %v",
		prof, trials, counts[readRefused], counts[readNew], counts[readOld], loadAcks.Load(), time.Since(start).Round(time.Second))
	t.Log(summary)
	if err := os.MkdirAll(*flagResults, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(*flagResults, "pause-read.txt"), []byte(summary+"\n"), 0o644)
	}
	if counts[readOld] > 0 {
		t.Errorf("%d of %d linearizable reads on a resumed leader returned the value a newer leader had replaced", counts[readOld], trials)
	}
}

// pauseReadTrial runs one trial on key pr/<i>; see TestPauseRead.
func pauseReadTrial(t *testing.T, c *cluster, i int) (pauseReadResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := fmt.Appendf(nil, "pr/%d", i)
	leader, err := c.waitLeader(ctx)
	if err != nil {
		return 0, err
	}
	var others []string
	for _, n := range c.followers(leader) {
		others = append(others, n.thriftAddr())
	}
	writer, err := client.New(client.Config{Endpoints: others, Dial: transport.DialConfig{ConnectTimeout: 500 * time.Millisecond}})
	if err != nil {
		return 0, err
	}
	defer writer.Close()
	if _, err := writer.Put(ctx, key, []byte("old")); err != nil {
		return 0, fmt.Errorf("put old: %w", err)
	}

	// A connection to the leader, opened and used before the pause.
	rc, err := dialRaw(ctx, leader.thriftAddr())
	if err != nil {
		return 0, err
	}
	defer rc.close()
	stale := kv.ConsistencyPtr(kv.Consistency_STALE)
	if _, err := rc.get(&kv.GetRequest{Key: key, Consistency: stale}); err != nil {
		return 0, fmt.Errorf("warm-up read on %s: %w", leader.id, err)
	}

	if err := leader.signal(syscall.SIGSTOP); err != nil {
		return 0, err
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = leader.signal(syscall.SIGCONT)
		}
	}()
	// The other two elect a leader and acknowledge the new value.
	if _, err := writer.Put(ctx, key, []byte("new")); err != nil {
		return 0, fmt.Errorf("put new while %s is paused: %w", leader.id, err)
	}
	// The read waits in the paused leader's socket.
	if err := rc.send(&kv.GetRequest{Key: key, Consistency: kv.ConsistencyPtr(kv.Consistency_LINEARIZABLE)}); err != nil {
		return 0, fmt.Errorf("send read to paused %s: %w", leader.id, err)
	}
	resumed = true
	if err := leader.signal(syscall.SIGCONT); err != nil {
		return 0, err
	}
	resp, err := rc.recv(15 * time.Second)
	switch {
	case err != nil:
		t.Logf("trial %d: %s refused the read: %v", i, leader.id, err)
		return readRefused, nil
	case resp.GetFound() && string(resp.GetEntry().GetValue()) == "new":
		t.Logf("trial %d: %s read the new value (served by %s)", i, leader.id, resp.GetInfo().GetNodeID())
		return readNew, nil
	case resp.GetFound() && string(resp.GetEntry().GetValue()) == "old":
		t.Logf("trial %d: %s read the OLD value at applied index %d", i, leader.id, resp.GetInfo().GetAppliedIndex())
		return readOld, nil
	default:
		return 0, fmt.Errorf("read on %s returned found=%v value %q", leader.id, resp.GetFound(), resp.GetEntry().GetValue())
	}
}

// rawConn is one Thrift connection whose call is split in two: send the
// request, and later receive the answer, so that a request can be left
// waiting in a paused server's socket.
type rawConn struct {
	nc    net.Conn
	proto thrift.TProtocol
	cl    *thrift.TStandardClient
	seq   int32
}

func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tcfg := transport.TConfiguration(0, 0, 0)
	tf, err := transport.NewTransportFactory("", tcfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	pf, err := transport.NewProtocolFactory("", tcfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	trans, err := tf.GetTransport(thrift.NewStreamTransportRW(nc))
	if err != nil {
		nc.Close()
		return nil, err
	}
	proto := pf.GetProtocol(trans)
	return &rawConn{nc: nc, proto: proto, cl: thrift.NewTStandardClient(proto, proto)}, nil
}

func (r *rawConn) close() { _ = r.nc.Close() }

// send writes a get request; it returns once the request is in the socket.
func (r *rawConn) send(req *kv.GetRequest) error {
	r.seq++
	_ = r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return r.cl.Send(context.Background(), r.proto, r.seq, "get", &kv.KVGetArgs{Req: req})
}

// recv reads the answer to the last request sent.
func (r *rawConn) recv(timeout time.Duration) (*kv.GetResponse, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(timeout))
	var res kv.KVGetResult
	if err := r.cl.Recv(context.Background(), r.proto, r.seq, "get", &res); err != nil {
		return nil, err
	}
	switch {
	case res.Success != nil:
		return res.Success, nil
	case res.NotLeader != nil:
		return nil, res.NotLeader
	case res.Unavailable != nil:
		return nil, res.Unavailable
	case res.Timeout != nil:
		return nil, res.Timeout
	case res.Invalid != nil:
		return nil, res.Invalid
	}
	return nil, errors.New("empty answer")
}

// get sends a request and waits for its answer.
func (r *rawConn) get(req *kv.GetRequest) (*kv.GetResponse, error) {
	if err := r.send(req); err != nil {
		return nil, err
	}
	return r.recv(5 * time.Second)
}
