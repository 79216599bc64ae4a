// Command fill writes new keys into a cubekv node until it can no longer
// take them: the capacity measurement of bench/capacity.sh. Keys are
// --key-size digits, 0, 1, 2, ... (as kvctl bench load writes them), each
// written once by one of --clients workers; every --step keys it prints a
// JSON line with the keys written so far and the step's rate. It stops,
// printing why, when a step's rate falls below --min-rate-frac of the best
// step's, when more than 1% of a step's puts fail (a node that was killed
// fails them all), at --max-keys, or at --duration.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/loadgen"
)

type step struct {
	Keys    int64   `json:"keys"`
	Rate    float64 `json:"keys_per_s"`
	Errors  int64   `json:"errors"`
	Elapsed float64 `json:"elapsed_s"`
}

type result struct {
	Keys   int64  `json:"keys_acked"`
	Stop   string `json:"stop"`
	Steps  int    `json:"steps"`
	Errors int64  `json:"errors"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:9090", "comma-separated Thrift addresses")
	clients := flag.Int("clients", 64, "concurrent writers")
	keySize := flag.Int("key-size", 16, "key length in bytes")
	valueSize := flag.Int("value-size", 100, "value length in bytes")
	stepKeys := flag.Int64("step", 100_000, "keys per progress step")
	maxKeys := flag.Int64("max-keys", 50_000_000, "stop after this many keys")
	minFrac := flag.Float64("min-rate-frac", 0.1, "stop when a step's rate falls below this fraction of the best step's")
	duration := flag.Duration("duration", 10*time.Minute, "stop after this long")
	timeout := flag.Duration("timeout", 10*time.Second, "time limit of one put, retries included")
	stall := flag.Duration("stall", 30*time.Second, "stop when no put succeeds for this long")
	flag.Parse()

	c, err := client.New(client.Config{Endpoints: strings.Split(*endpoints, ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fill:", err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	var next, acked, failed atomic.Int64
	stopped := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopped) }) }
	value := make([]byte, *valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for {
				select {
				case <-stopped:
					return
				case <-ctx.Done():
					return
				default:
				}
				i := next.Add(1) - 1
				if i >= *maxKeys {
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, *timeout)
				_, err := c.Put(pctx, loadgen.Key(int(i), *keySize), value)
				pcancel()
				if err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "fill: first failed put:", err)
					}
					continue
				}
				acked.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	enc := json.NewEncoder(os.Stdout)
	start := time.Now()
	var res result
	best := 0.0
	lastKeys, lastErr, lastAt := int64(0), int64(0), start
	seen, seenAt := int64(0), start
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
loop:
	for {
		select {
		case <-done:
			res.Stop = "max-keys"
			if ctx.Err() != nil {
				res.Stop = "duration"
			}
			break loop
		case <-t.C:
		}
		k, e := acked.Load(), failed.Load()
		if k != seen {
			seen, seenAt = k, time.Now()
		} else if time.Since(seenAt) > *stall {
			res.Stop = "stalled"
			break loop
		}
		if k+e-lastKeys-lastErr < *stepKeys {
			continue
		}
		now := time.Now()
		s := step{Keys: k, Rate: float64(k-lastKeys) / now.Sub(lastAt).Seconds(), Errors: e - lastErr, Elapsed: now.Sub(start).Seconds()}
		_ = enc.Encode(s)
		res.Steps++
		best = max(best, s.Rate)
		switch {
		case float64(s.Errors) > 0.01*float64(k+e-lastKeys-lastErr):
			res.Stop = "errors"
		case s.Rate < *minFrac*best:
			res.Stop = "rate"
		}
		lastKeys, lastErr, lastAt = k, e, now
		if res.Stop != "" {
			stop()
			break
		}
	}
	stop()
	cancel()
	<-done
	res.Keys, res.Errors = acked.Load(), failed.Load()
	_ = enc.Encode(res)
}
