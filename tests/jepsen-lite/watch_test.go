package jepsenlite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// The watch check. Every scenario runs one watcher per node (a Go client whose endpoints start at
// that node; it moves to the others when that node fails and resumes after the last index it
// delivered) on the scenario's whole prefix, from index 0, through every fault. At the end the
// committed history of the prefix is read with a LINEARIZABLE watch from index 0 on every node
// (the one reaching furthest back is the reference), cross-checked against every acknowledged
// write and the final state, and each watcher's sequence must equal it over the indexes the
// watcher covered: no gap, no duplicate, no reordering. A canary watcher that drops one event must
// be caught.

// watchHistoryFlags keep every change in memory for the whole run, so the reference reaches back
// to index 0 on any node that did not restart from a snapshot.
var watchHistoryFlags = []string{"--watch-history-bytes", fmt.Sprint(256 << 20)}

// watchEvent is one event as a watcher recorded it.
type watchEvent struct {
	Index int64
	Type  string // "PUT", "DELETE" or "RESYNC"
	Key   string
	Value string
}

func (e watchEvent) String() string {
	return fmt.Sprintf("%d %s %s=%s", e.Index, e.Type, e.Key, e.Value)
}

// watchLog is what one watcher received. Safe for concurrent use.
type watchLog struct {
	name string
	skip int // the canary drops the skip-th event it receives (1-based); 0: none

	mu       sync.Mutex
	events   []watchEvent
	received int
	failed   error // a WatchFailed event's error
}

func (l *watchLog) add(e client.WatchEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := watchEvent{Index: e.Index, Type: e.Type.String(), Key: string(e.Key)}
	switch e.Type {
	case client.WatchFailed:
		l.failed = e.Err
		return
	case client.WatchPut:
		ev.Value = string(e.Entry.Value)
	}
	if e.Type != client.WatchResync {
		l.received++
		if l.received == l.skip {
			return // the canary's bug
		}
	}
	l.events = append(l.events, ev)
}

func (l *watchLog) snapshot() []watchEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// lastIndex is the index of the last event received (dropped or not).
func (l *watchLog) lastIndex() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 {
		return 0
	}
	return l.events[len(l.events)-1].Index
}

// watchers are a scenario's watchers.
type watchers struct {
	logs   []*watchLog
	canary *watchLog
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// canarySkip is the event the canary watcher drops.
const canarySkip = 25

// startWatchers starts one watcher per endpoint, and the canary on the first.
func startWatchers(t *testing.T, wl *workload, endpoints []string, prefix string) *watchers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel}
	start := func(l *watchLog, first int) {
		cl := wl.newClient(endpoints, first, 0, pinned)
		ch, err := cl.Watch(ctx, []byte(prefix), 0, client.WithPrefix(), client.WithWatchWait(2*time.Second))
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			for e := range ch {
				l.add(e)
			}
		}()
	}
	for i := range endpoints {
		l := &watchLog{name: fmt.Sprintf("watcher@%d", i+1)}
		ws.logs = append(ws.logs, l)
		start(l, i)
	}
	ws.canary = &watchLog{name: "canary", skip: canarySkip}
	start(ws.canary, 0)
	return ws
}

// stop ends every watcher once each has received events up to index last (or timeout passed).
func (ws *watchers) stop(last int64, timeout time.Duration) []string {
	var problems []string
	deadline := time.Now().Add(timeout)
	for _, l := range append(slices.Clone(ws.logs), ws.canary) {
		for l.lastIndex() < last && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polled with a deadline
		}
		if got := l.lastIndex(); got < last {
			problems = append(problems, fmt.Sprintf("watch: %s stopped at index %d, the history goes to %d", l.name, got, last))
		}
	}
	ws.cancel()
	ws.wg.Wait()
	for _, l := range ws.logs {
		if l.failed != nil {
			problems = append(problems, fmt.Sprintf("watch: %s failed: %v", l.name, l.failed))
		}
	}
	return problems
}

// watchResult is one watcher's sequence compared with the reference.
type watchResult struct {
	Checked  int // reference events over the indexes the watcher covered
	Gaps     int // reference events it never delivered
	Dups     int // events delivered more than once
	Reorders int // events delivered before one of a lower index, or an index's events in another order
	Phantoms int // events at a covered index the history does not have
	Resyncs  int
}

// checkWatch compares got, a watcher's sequence, with ref, the committed history of (floor, last].
// The watcher covers every index in (floor, last] except those a resync skipped (from its last
// event before the resync up to the resync's index).
func checkWatch(ref []watchEvent, floor, last int64, got []watchEvent) watchResult {
	var r watchResult
	type span struct{ lo, hi int64 } // (lo, hi]
	var skipped []span
	byIndex := map[int64][]watchEvent{}
	var prev int64
	for _, e := range got {
		if e.Type == "RESYNC" {
			r.Resyncs++
			skipped = append(skipped, span{prev, e.Index})
			prev = max(prev, e.Index)
			continue
		}
		if e.Index < prev {
			r.Reorders++
		}
		prev = max(prev, e.Index)
		byIndex[e.Index] = append(byIndex[e.Index], e)
	}
	covered := func(idx int64) bool {
		if idx <= floor || idx > last {
			return false
		}
		for _, s := range skipped {
			if idx > s.lo && idx <= s.hi {
				return false
			}
		}
		return true
	}
	refByIndex := map[int64][]watchEvent{}
	for _, e := range ref {
		refByIndex[e.Index] = append(refByIndex[e.Index], e)
	}
	for idx, want := range refByIndex {
		if !covered(idx) {
			continue
		}
		r.Checked += len(want)
		have := byIndex[idx]
		count := map[watchEvent]int{}
		for _, e := range have {
			count[e]++
		}
		gaps := 0
		for _, e := range want {
			if count[e] > 0 {
				count[e]--
			} else {
				gaps++
			}
		}
		r.Gaps += gaps
		for e, n := range count {
			if n > 0 && slices.Contains(want, e) {
				r.Dups += n
			} else {
				r.Phantoms += n
			}
		}
		if len(have) == len(want) && gaps == 0 && !slices.Equal(have, want) {
			r.Reorders++
		}
	}
	for idx, have := range byIndex {
		if _, ok := refByIndex[idx]; !ok && covered(idx) {
			r.Phantoms += len(have)
		}
	}
	return r
}

// referenceHistory reads the committed history of prefix up to index last with LINEARIZABLE watches
// from index 0 on every node, and returns the one reaching furthest back: its events and the floor
// it starts after (0 unless every node restarted from a snapshot since the start).
func referenceHistory(ctx context.Context, endpoints []string, prefix string, last int64, tlsCfg *tls.Config) ([]watchEvent, int64, error) {
	var (
		best      []watchEvent
		bestFloor int64 = -1
		errs      []error
	)
	for _, addr := range endpoints {
		events, floor, err := historyFrom(ctx, addr, prefix, last, tlsCfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if bestFloor < 0 || floor < bestFloor {
			best, bestFloor = events, floor
		}
	}
	if bestFloor < 0 {
		return nil, 0, fmt.Errorf("reference history: %w", errors.Join(errs...))
	}
	return best, bestFloor, nil
}

func historyFrom(ctx context.Context, addr, prefix string, last int64, tlsCfg *tls.Config) ([]watchEvent, int64, error) {
	conn, err := transport.Dial(ctx, addr, &transport.DialConfig{TLS: tlsCfg, RequestTimeout: 30 * time.Second})
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	var (
		out   []watchEvent
		after int64
		floor int64
	)
	for after < last {
		var resp *kv.WatchResponse
		_, err := conn.Call(ctx, func(ctx context.Context, c *kv.KVClient) (err error) {
			resp, err = c.Watch(ctx, &kv.WatchRequest{Prefix: []byte(prefix), AfterIndex: after, TimeoutMs: new(int32(0))})
			return err
		})
		var gone *kv.Compacted
		if errors.As(err, &gone) {
			if len(out) > 0 {
				return nil, 0, fmt.Errorf("history compacted while reading it: %v", gone)
			}
			floor, after = gone.OldestIndex-1, gone.OldestIndex-1
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		for _, e := range resp.Events {
			ev := watchEvent{Index: e.Index, Type: e.Type.String(), Key: string(e.Key)}
			if e.Entry != nil {
				ev.Value = string(e.Entry.Value)
			}
			if e.Index <= last {
				out = append(out, ev)
			}
		}
		if resp.ResumeIndex <= after {
			return nil, 0, fmt.Errorf("watch from %d made no progress (resume %d, want %d)", after, resp.ResumeIndex, last)
		}
		after = resp.ResumeIndex
	}
	return out, floor, nil
}

// crossCheck checks the reference against the history: every acknowledged write above the floor
// is in it, as written, at its index; and each key's last change there is its final value.
func crossCheck(ref []watchEvent, floor int64, h []op, final map[string]string) (acked int, problems []string) {
	type at struct {
		idx int64
		key string
	}
	refAt := map[at]watchEvent{}
	lastOf := map[string]watchEvent{}
	for _, e := range ref {
		refAt[at{e.Index, e.Key}] = e
		lastOf[e.Key] = e
	}
	missing := 0
	for _, o := range h {
		if o.Outcome != outcomeOK || o.Index <= floor {
			continue
		}
		value := ""
		switch {
		case o.Kind == kindWrite, o.Kind == kindCAS && o.Success, o.Kind == kindIncr && o.Success:
			value = string(encode(o.Value))
		case o.Kind == kindAdd:
			value = "1"
		default:
			continue
		}
		acked++
		if e, ok := refAt[at{o.Index, o.Key}]; !ok || e.Type != "PUT" || e.Value != value {
			if missing++; missing <= 5 {
				problems = append(problems, fmt.Sprintf("watch reference: acknowledged write %s=%s at %d is %v", o.Key, value, o.Index, e))
			}
		}
	}
	if missing > 5 {
		problems = append(problems, fmt.Sprintf("watch reference: %d acknowledged writes missing in all", missing))
	}
	var keys []string
	for k := range lastOf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := lastOf[k]
		v, ok := final[k]
		switch {
		case e.Type == "PUT" && (!ok || v != e.Value):
			problems = append(problems, fmt.Sprintf("watch reference: %s last changed to %q at %d, final state has %q (present %v)", k, e.Value, e.Index, v, ok))
		case e.Type == "DELETE" && ok:
			problems = append(problems, fmt.Sprintf("watch reference: %s deleted at %d, final state has %q", k, e.Index, v))
		}
	}
	for k := range final {
		if _, ok := lastOf[k]; !ok && floor == 0 {
			problems = append(problems, fmt.Sprintf("watch reference: %s is in the final state but was never changed", k))
		}
	}
	return acked, problems
}

// finalState scans prefix on the node at addr.
func finalState(ctx context.Context, cl *client.Client, prefix string) (map[string]string, error) {
	out := map[string]string{}
	var start []byte
	for {
		resp, err := cl.Scan(ctx, &kv.ScanRequest{Prefix: []byte(prefix), StartKey: start})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Entries {
			out[string(e.Key)] = string(e.Value)
		}
		if resp.Continuation == nil {
			return out, nil
		}
		start = resp.Continuation
	}
}

// watchRow is a scenario's line of the watch table.
type watchRow struct {
	Watchers                            int
	Reference                           int   // events in the reference
	Floor                               int64 // the reference starts after it
	Acked                               int   // acknowledged writes found in the reference
	Checked, Gaps, Dups, Reorders, Phan int
	Resyncs                             int
	CanaryGaps                          int
}

// checkWatchers runs the whole watch check of a scenario and fills its row.
func checkWatchers(ctx context.Context, ws *watchers, wl *workload, endpoints []string, prefix string, last int64, tlsCfg *tls.Config, h []op) (watchRow, []string) {
	var row watchRow
	ref, floor, err := referenceHistory(ctx, endpoints, prefix, last, tlsCfg)
	if err != nil {
		ws.stop(0, 0)
		return row, []string{err.Error()}
	}
	row.Reference, row.Floor = len(ref), floor
	refLast := int64(0)
	if len(ref) > 0 {
		refLast = ref[len(ref)-1].Index
	}
	problems := ws.stop(refLast, 60*time.Second)
	final, err := finalState(ctx, wl.newClient(endpoints, 0, 5, pinned), prefix)
	if err != nil {
		problems = append(problems, fmt.Sprintf("watch: final scan: %v", err))
	} else {
		acked, p := crossCheck(ref, floor, h, final)
		row.Acked = acked
		problems = append(problems, p...)
	}
	for _, l := range ws.logs {
		r := checkWatch(ref, floor, last, l.snapshot())
		row.Watchers++
		row.Checked += r.Checked
		row.Gaps += r.Gaps
		row.Dups += r.Dups
		row.Reorders += r.Reorders
		row.Phan += r.Phantoms
		row.Resyncs += r.Resyncs
		if r.Gaps+r.Dups+r.Reorders+r.Phantoms > 0 {
			problems = append(problems, fmt.Sprintf("watch: %s: %d gaps, %d duplicates, %d reorders, %d phantoms over %d events", l.name, r.Gaps, r.Dups, r.Reorders, r.Phantoms, r.Checked))
		}
	}
	cr := checkWatch(ref, floor, last, ws.canary.snapshot())
	row.CanaryGaps = cr.Gaps
	if cr.Gaps != 1 || cr.Dups+cr.Reorders+cr.Phantoms != 0 {
		problems = append(problems, fmt.Sprintf("watch canary: it dropped its event %d; the checker found %d gaps, %d duplicates, %d reorders, %d phantoms (want exactly 1 gap)",
			canarySkip, cr.Gaps, cr.Dups, cr.Reorders, cr.Phantoms))
	}
	return row, problems
}

// watchTable renders the watch columns of the summary.
func watchTable(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nwatch: %-12s %8s %7s %8s %8s %5s %4s %7s %7s %7s %6s\n", "scenario", "watchers", "ref-ev", "floor", "checked", "gaps", "dup", "reorder", "resyncs", "acked", "canary")
	var tot watchRow
	for _, r := range rows {
		w := r.Watch
		canary := "missed"
		if w.CanaryGaps == 1 {
			canary = "caught"
		}
		fmt.Fprintf(&b, "watch: %-12s %8d %7d %8d %8d %5d %4d %7d %7d %7d %6s\n", r.Scenario, w.Watchers, w.Reference, w.Floor, w.Checked, w.Gaps, w.Dups, w.Reorders, w.Resyncs, w.Acked, canary)
		tot.Checked += w.Checked
		tot.Gaps += w.Gaps
		tot.Dups += w.Dups
		tot.Reorders += w.Reorders
		tot.Resyncs += w.Resyncs
		tot.Acked += w.Acked
	}
	fmt.Fprintf(&b, "watch: %-12s %8s %7s %8s %8d %5d %4d %7d %7d %7d\n", "TOTAL", "", "", "", tot.Checked, tot.Gaps, tot.Dups, tot.Reorders, tot.Resyncs, tot.Acked)
	return b.String()
}

// TestChecker_WatchFlagsBrokenSequences feeds the watch checker hand-broken sequences.
func TestChecker_WatchFlagsBrokenSequences(t *testing.T) {
	p := func(idx int64, k, v string) watchEvent { return watchEvent{Index: idx, Type: "PUT", Key: k, Value: v} }
	d := func(idx int64, k string) watchEvent { return watchEvent{Index: idx, Type: "DELETE", Key: k} }
	ref := []watchEvent{p(2, "a", "1"), p(3, "b", "1"), d(3, "a"), p(5, "c", "2"), p(7, "a", "3")}
	cases := []struct {
		name string
		got  []watchEvent
		want watchResult
	}{
		{"equal", ref, watchResult{Checked: 5}},
		{"gap", []watchEvent{ref[0], ref[1], ref[2], ref[4]}, watchResult{Checked: 5, Gaps: 1}},
		{"duplicate index", []watchEvent{ref[0], ref[1], ref[2], ref[1], ref[2], ref[3], ref[4]}, watchResult{Checked: 5, Dups: 2}},
		{"reordered across indexes", []watchEvent{ref[0], ref[3], ref[1], ref[2], ref[4]}, watchResult{Checked: 5, Reorders: 2}},
		{"reordered within an index", []watchEvent{ref[0], ref[2], ref[1], ref[3], ref[4]}, watchResult{Checked: 5, Reorders: 1}},
		{"phantom", []watchEvent{ref[0], ref[1], ref[2], p(4, "x", "9"), ref[3], ref[4]}, watchResult{Checked: 5, Phantoms: 1}},
		{"resync skips what it says", []watchEvent{ref[0], {Index: 5, Type: "RESYNC"}, ref[4]}, watchResult{Checked: 2, Resyncs: 1}},
		{"a late start covers nothing before", []watchEvent{ref[4]}, watchResult{Checked: 5, Gaps: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkWatch(ref, 0, 7, tc.got); got != tc.want {
				t.Fatalf("checkWatch = %+v, want %+v", got, tc.want)
			}
		})
	}
	// Indexes at or below the reference's floor are not checked.
	if got := checkWatch(ref[3:], 4, 7, []watchEvent{ref[3], ref[4]}); got != (watchResult{Checked: 2}) {
		t.Fatalf("above the floor: %+v", got)
	}

	h := []op{
		{Kind: kindWrite, Key: "a", Value: 1, Index: 2, Outcome: outcomeOK},
		{Kind: kindAdd, Key: "b", Index: 3, Outcome: outcomeOK},
		{Kind: kindWrite, Key: "z", Value: 4, Index: 4, Outcome: outcomeUnknown},
	}
	ref2 := []watchEvent{p(2, "a", "1"), p(3, "b", "1")}
	if acked, problems := crossCheck(ref2, 0, h, map[string]string{"a": "1", "b": "1"}); acked != 2 || len(problems) != 0 {
		t.Fatalf("consistent: acked %d problems %v", acked, problems)
	}
	if _, problems := crossCheck(ref2[:1], 0, h, map[string]string{"a": "1", "b": "1"}); len(problems) != 2 {
		t.Fatalf("a missing acknowledged write and a key never changed: %v", problems)
	}
	if _, problems := crossCheck(ref2, 0, h, map[string]string{"a": "9", "b": "1"}); len(problems) != 1 {
		t.Fatalf("final state differs: %v", problems)
	}
}
