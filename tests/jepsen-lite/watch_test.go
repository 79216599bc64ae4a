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
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// The watch check. Every scenario runs two watchers per node, one LINEARIZABLE and one STALE (a Go
// client whose endpoints start at that node; it moves to the others when that node fails and resumes
// after the last index it delivered), on the scenario's whole prefix, from index 0, through every
// fault. At the end every node's history of the prefix is read with a LINEARIZABLE and a STALE
// watch from the node's own floor, and every pair must be identical over the indexes both cover.
// The LINEARIZABLE one reaching furthest back is the reference: each of its events must be
// explained by an operation the workload attempted, every acknowledged change must be in it, and
// folding it over the keys must give the final state. Each watcher's sequence must equal it over
// the indexes the watcher covered: no gap, no duplicate, no reordering, and no resync while the
// reference starts at index 0. A canary watcher that drops one event must be caught.

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

// startWatchers starts two watchers per endpoint, one LINEARIZABLE and one STALE, and the canary
// (LINEARIZABLE) on the first.
func startWatchers(t *testing.T, wl *workload, endpoints []string, prefix string) *watchers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel}
	start := func(l *watchLog, first int, c kv.Consistency) {
		cl := wl.newClient(endpoints, first, 0, pinned)
		ch, err := cl.Watch(ctx, []byte(prefix), 0, client.WithPrefix(), client.WithWatchWait(2*time.Second), client.WithWatchConsistency(c))
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
		for _, c := range []kv.Consistency{kv.Consistency_LINEARIZABLE, kv.Consistency_STALE} {
			l := &watchLog{name: fmt.Sprintf("watcher@%d/%s", i+1, strings.ToLower(c.String()))}
			ws.logs = append(ws.logs, l)
			start(l, i, c)
		}
	}
	ws.canary = &watchLog{name: "canary", skip: canarySkip}
	start(ws.canary, 0, kv.Consistency_LINEARIZABLE)
	return ws
}

// stop ends every watcher once each has received events up to index last (or timeout passed).
func (ws *watchers) stop(last int64, timeout time.Duration) []string {
	var problems []string
	deadline := time.Now().Add(timeout)
	for _, l := range append(slices.Clone(ws.logs), ws.canary) {
		_ = testutil.Poll(time.Until(deadline), func() error {
			if got := l.lastIndex(); got < last {
				return fmt.Errorf("at index %d", got)
			}
			return nil
		})
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

// nodeHistory is the committed history of the prefix as one node served it: (Floor, last].
type nodeHistory struct {
	Name   string // the node's endpoint and the watch's consistency
	Floor  int64  // the node's history starts after it (0 unless it restarted from a snapshot)
	Events []watchEvent
}

// nodeHistories reads the history of prefix up to index last on every node, twice: with a
// LINEARIZABLE and with a STALE watch, each from the node's own floor (its Compacted answer), paging
// by resume index. A node that cannot answer is an error: after the digests agreed, all can.
func nodeHistories(ctx context.Context, endpoints []string, prefix string, last int64, tlsCfg *tls.Config) ([]nodeHistory, error) {
	var (
		out  []nodeHistory
		errs []error
	)
	for i, addr := range endpoints {
		for _, c := range []kv.Consistency{kv.Consistency_LINEARIZABLE, kv.Consistency_STALE} {
			name := fmt.Sprintf("n%d/%s", i+1, strings.ToLower(c.String()))
			events, floor, err := historyFrom(ctx, addr, prefix, last, c, tlsCfg)
			if err != nil {
				errs = append(errs, fmt.Errorf("history of %s (%s): %w", name, addr, err))
				continue
			}
			out = append(out, nodeHistory{Name: name, Floor: floor, Events: events})
		}
	}
	return out, errors.Join(errs...)
}

// reference is the LINEARIZABLE history reaching furthest back (the first such, on a tie).
func reference(hs []nodeHistory) (nodeHistory, bool) {
	var best nodeHistory
	found := false
	for _, h := range hs {
		if strings.HasSuffix(h.Name, "/linearizable") && (!found || h.Floor < best.Floor) {
			best, found = h, true
		}
	}
	return best, found
}

// compareHistories checks every pair of node histories over the indexes both cover, (the higher
// floor, last]: they must be identical there. It returns the events compared, summed over the
// pairs, and a problem per pair that differs.
func compareHistories(hs []nodeHistory) (compared int, problems []string) {
	above := func(events []watchEvent, floor int64) []watchEvent {
		i := sort.Search(len(events), func(i int) bool { return events[i].Index > floor })
		return events[i:]
	}
	for i := range hs {
		for j := i + 1; j < len(hs); j++ {
			a, b := hs[i], hs[j]
			lo := max(a.Floor, b.Floor)
			ea, eb := above(a.Events, lo), above(b.Events, lo)
			n := min(len(ea), len(eb))
			compared += n
			k := 0
			for k < n && ea[k] == eb[k] {
				k++
			}
			if k == n && len(ea) == len(eb) {
				continue
			}
			var da, db any = "(end)", "(end)"
			if k < len(ea) {
				da = ea[k]
			}
			if k < len(eb) {
				db = eb[k]
			}
			problems = append(problems, fmt.Sprintf("watch: histories of %s and %s differ after %d (%d and %d events): event %d is %v on %s, %v on %s",
				a.Name, b.Name, lo, len(ea), len(eb), k, da, a.Name, db, b.Name))
		}
	}
	return compared, problems
}

// historyFrom pages through the history of prefix on the node at addr up to index last, from the
// oldest index the node holds, at consistency c. It returns the events and the floor they start after.
func historyFrom(ctx context.Context, addr, prefix string, last int64, c kv.Consistency, tlsCfg *tls.Config) ([]watchEvent, int64, error) {
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
		_, err := conn.Call(ctx, func(ctx context.Context, kc *kv.KVClient) (err error) {
			resp, err = kc.Watch(ctx, &kv.WatchRequest{Prefix: []byte(prefix), AfterIndex: after, TimeoutMs: new(int32(0)), Consistency: kv.ConsistencyPtr(c)})
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

// attempt is one change the workload tried to make, as the reference must explain it.
type attempt struct {
	ok    bool  // acknowledged: the change is at index
	index int64 // ok: where it committed
	after int64 // unknown: it committed, if at all, above this index (acknowledged before it began)
	used  bool  // matched to a reference event
}

// ackBounds answers, for a time t, the highest index of a change acknowledged before t: an operation
// invoked at t cannot commit at or below it.
type ackBounds struct {
	ret []int64 // completion times, ascending
	idx []int64 // idx[i]: the highest index among the first i+1 completions
}

func newAckBounds(h []op) ackBounds {
	var acks []op
	for _, o := range h {
		if o.Outcome == outcomeOK && o.Index > 0 && changes(o) {
			acks = append(acks, o)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Return < acks[j].Return })
	var b ackBounds
	var hi int64
	for _, o := range acks {
		hi = max(hi, o.Index)
		b.ret = append(b.ret, o.Return)
		b.idx = append(b.idx, hi)
	}
	return b
}

func (b ackBounds) before(t int64) int64 {
	i := sort.Search(len(b.ret), func(i int) bool { return b.ret[i] >= t })
	if i == 0 {
		return 0
	}
	return b.idx[i-1]
}

// changes reports whether o, acknowledged, changed its key.
func changes(o op) bool {
	switch o.Kind {
	case kindWrite, kindAdd:
		return true
	case kindCAS, kindIncr, kindDelete:
		return o.Success
	}
	return false
}

// putValue is the value a write-like operation stores ("" for an operation that stores none).
func putValue(o op) string {
	switch o.Kind {
	case kindWrite, kindCAS, kindIncr:
		return string(encode(o.Value))
	case kindAdd:
		return "1"
	}
	return ""
}

// crossResult is what crossCheck found.
type crossResult struct {
	Acked   int // acknowledged changes above the floor, each found in the reference as made
	Deletes int // DELETE events in the reference, each matched to an attempted delete
	Puts    int // PUT events in the reference, each matched to an attempted write
}

// crossCheck checks the reference, the committed history of (floor, last], against the workload's
// history and the final state:
//   - every PUT is an attempted write of that key and value (a register write, a CAS, a set add, a
//     counter increment), and every DELETE an attempted delete of that key, that was not reported
//     failed: an acknowledged one exactly at the index it returned, an unknown one above every
//     index acknowledged before it was invoked; each attempt explains at most one event;
//   - every acknowledged change above the floor (a write, a successful CAS or increment, an add, a
//     delete that found its key) is in it, as made, at its index, and a delete that found nothing
//     left no event there;
//   - folding it over the keys gives the final state (every key, when it starts at index 0; the
//     keys it changes, otherwise).
func crossCheck(ref []watchEvent, floor int64, h []op, final map[string]string) (crossResult, []string) {
	var r crossResult
	var problems []string
	counts := map[string]int{}
	report := func(kind, msg string) {
		if counts[kind]++; counts[kind] <= 5 {
			problems = append(problems, "watch reference: "+msg)
		}
	}
	bounds := newAckBounds(h)
	type keyValue struct{ key, value string }
	puts := map[keyValue][]*attempt{}
	dels := map[string][]*attempt{}
	type at struct {
		idx int64
		key string
	}
	refAt := map[at]watchEvent{}
	for _, e := range ref {
		refAt[at{e.Index, e.Key}] = e
	}
	for _, o := range h {
		if o.Outcome == outcomeFail {
			continue
		}
		a := &attempt{ok: o.Outcome == outcomeOK, index: o.Index}
		if !a.ok {
			a.after = bounds.before(o.Call)
		}
		switch o.Kind {
		case kindWrite, kindAdd, kindCAS, kindIncr:
			if a.ok && !changes(o) {
				continue // a CAS whose compare failed changed nothing
			}
			kv := keyValue{o.Key, putValue(o)}
			puts[kv] = append(puts[kv], a)
		case kindDelete:
			if a.ok && !o.Success {
				if e, found := refAt[at{o.Index, o.Key}]; found && o.Index > floor {
					report("nothing-deleted", fmt.Sprintf("delete of %s at %d found no key, but the history has %v there", o.Key, o.Index, e))
				}
				continue
			}
			dels[o.Key] = append(dels[o.Key], a)
		default:
			continue
		}
		if !a.ok || o.Index <= floor {
			continue
		}
		r.Acked++
		want := watchEvent{Index: o.Index, Type: "PUT", Key: o.Key, Value: putValue(o)}
		if o.Kind == kindDelete {
			want = watchEvent{Index: o.Index, Type: "DELETE", Key: o.Key}
		}
		if e, found := refAt[at{o.Index, o.Key}]; !found || e != want {
			r.Acked--
			report("missing", fmt.Sprintf("acknowledged %v is %v", want, e))
		}
	}
	// match finds the attempt that explains an event at idx: the acknowledged one at idx, or else
	// an unknown one that may have committed there.
	match := func(cands []*attempt, idx int64) (*attempt, string) {
		why := "none was attempted"
		if len(cands) > 0 {
			why = fmt.Sprintf("%d attempts, none of them at %d", len(cands), idx)
		}
		for _, a := range cands {
			if a.ok && a.index == idx && !a.used {
				return a, ""
			}
		}
		for _, a := range cands {
			if !a.ok && !a.used && a.after < idx {
				return a, ""
			}
		}
		return nil, why
	}
	for _, e := range ref {
		var a *attempt
		var why string
		switch e.Type {
		case "PUT":
			a, why = match(puts[keyValue{e.Key, e.Value}], e.Index)
			r.Puts++
		case "DELETE":
			a, why = match(dels[e.Key], e.Index)
			r.Deletes++
		default:
			report("type", fmt.Sprintf("event %v of an unknown type", e))
			continue
		}
		if a == nil {
			report("unexplained", fmt.Sprintf("%v matches no operation the workload attempted (%s)", e, why))
			continue
		}
		a.used = true
	}
	// The fold of the reference over the keys.
	state := map[string]string{}
	touched := map[string]bool{}
	for _, e := range ref {
		touched[e.Key] = true
		if e.Type == "DELETE" {
			delete(state, e.Key)
		} else {
			state[e.Key] = e.Value
		}
	}
	var keys []string
	for k := range touched {
		keys = append(keys, k)
	}
	if floor == 0 {
		for k := range final {
			if !touched[k] {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, gok := state[k]
		want, wok := final[k]
		if got != want || gok != wok {
			report("fold", fmt.Sprintf("the history folds %s to %q (present %v), the final state has %q (present %v)", k, got, gok, want, wok))
		}
	}
	for kind, n := range counts {
		if n > 5 {
			problems = append(problems, fmt.Sprintf("watch reference: %d %s problems in all", n, kind))
		}
	}
	sort.Strings(problems)
	return r, problems
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
	Acked                               int   // acknowledged changes (puts and deletes) found in the reference
	Deletes                             int   // DELETE events in the reference, each matched to an attempted delete
	Histories                           int   // node histories fetched (LINEARIZABLE and STALE per node)
	MaxFloor                            int64 // the highest floor among the node histories
	PairEvents                          int   // events compared between pairs of node histories
	Checked, Gaps, Dups, Reorders, Phan int
	Resyncs                             int // every watcher's, the canary's included
	CanaryGaps                          int
}

// checkWatchers runs the whole watch check of a scenario and fills its row.
func checkWatchers(ctx context.Context, ws *watchers, wl *workload, endpoints []string, prefix string, last int64, tlsCfg *tls.Config, h []op) (watchRow, []string) {
	var row watchRow
	var problems []string
	hs, err := nodeHistories(ctx, endpoints, prefix, last, tlsCfg)
	if err != nil {
		problems = append(problems, err.Error())
	}
	row.Histories = len(hs)
	for _, h := range hs {
		row.MaxFloor = max(row.MaxFloor, h.Floor)
	}
	ref, ok := reference(hs)
	if !ok {
		ws.stop(0, 0)
		return row, append(problems, "watch: no node served a LINEARIZABLE history")
	}
	var p []string
	row.PairEvents, p = compareHistories(hs)
	problems = append(problems, p...)
	floor := ref.Floor
	row.Reference, row.Floor = len(ref.Events), floor
	refLast := int64(0)
	if len(ref.Events) > 0 {
		refLast = ref.Events[len(ref.Events)-1].Index
	}
	problems = append(problems, ws.stop(refLast, 60*time.Second)...)
	final, err := finalState(ctx, wl.newClient(endpoints, 0, 5, pinned), prefix)
	if err != nil {
		problems = append(problems, fmt.Sprintf("watch: final scan: %v", err))
	} else {
		cr, p := crossCheck(ref.Events, floor, h, final)
		row.Acked, row.Deletes = cr.Acked, cr.Deletes
		problems = append(problems, p...)
	}
	// Every node keeps its whole history in a run (watchHistoryFlags): when one reaches back to
	// index 0, some node could always serve a watcher's next index, and a resync is a client bug.
	resyncs := func(name string, r watchResult) {
		row.Resyncs += r.Resyncs
		if r.Resyncs > 0 && floor == 0 {
			problems = append(problems, fmt.Sprintf("watch: %s resynced %d times, though %s holds the whole history", name, r.Resyncs, ref.Name))
		}
	}
	for _, l := range ws.logs {
		r := checkWatch(ref.Events, floor, last, l.snapshot())
		row.Watchers++
		row.Checked += r.Checked
		row.Gaps += r.Gaps
		row.Dups += r.Dups
		row.Reorders += r.Reorders
		row.Phan += r.Phantoms
		resyncs(l.name, r)
		if r.Gaps+r.Dups+r.Reorders+r.Phantoms > 0 {
			problems = append(problems, fmt.Sprintf("watch: %s: %d gaps, %d duplicates, %d reorders, %d phantoms over %d events", l.name, r.Gaps, r.Dups, r.Reorders, r.Phantoms, r.Checked))
		}
	}
	cr := checkWatch(ref.Events, floor, last, ws.canary.snapshot())
	row.CanaryGaps = cr.Gaps
	resyncs(ws.canary.name, cr)
	if cr.Gaps != 1 || cr.Dups+cr.Reorders+cr.Phantoms != 0 {
		problems = append(problems, fmt.Sprintf("watch canary: it dropped its event %d; the checker found %d gaps, %d duplicates, %d reorders, %d phantoms (want exactly 1 gap)",
			canarySkip, cr.Gaps, cr.Dups, cr.Reorders, cr.Phantoms))
	}
	return row, problems
}

// watchTable renders the watch columns of the summary.
func watchTable(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nwatch: %-12s %8s %7s %6s %7s %5s %9s %8s %8s %5s %4s %7s %7s %7s %6s\n",
		"scenario", "watchers", "ref-ev", "floor", "deletes", "hists", "max-floor", "pair-ev", "checked", "gaps", "dup", "reorder", "resyncs", "acked", "canary")
	var tot watchRow
	for _, r := range rows {
		w := r.Watch
		canary := "missed"
		if w.CanaryGaps == 1 {
			canary = "caught"
		}
		fmt.Fprintf(&b, "watch: %-12s %8d %7d %6d %7d %5d %9d %8d %8d %5d %4d %7d %7d %7d %6s\n",
			r.Scenario, w.Watchers, w.Reference, w.Floor, w.Deletes, w.Histories, w.MaxFloor, w.PairEvents, w.Checked, w.Gaps, w.Dups, w.Reorders, w.Resyncs, w.Acked, canary)
		tot.Deletes += w.Deletes
		tot.PairEvents += w.PairEvents
		tot.Checked += w.Checked
		tot.Gaps += w.Gaps
		tot.Dups += w.Dups
		tot.Reorders += w.Reorders
		tot.Resyncs += w.Resyncs
		tot.Acked += w.Acked
	}
	fmt.Fprintf(&b, "watch: %-12s %8s %7s %6s %7d %5s %9s %8d %8d %5d %4d %7d %7d %7d\n",
		"TOTAL", "", "", "", tot.Deletes, "", "", tot.PairEvents, tot.Checked, tot.Gaps, tot.Dups, tot.Reorders, tot.Resyncs, tot.Acked)
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

	t.Run("cross-check", testCrossCheck)
	t.Run("node histories", testCompareHistories)
}

func testCrossCheck(t *testing.T) {
	p := func(idx int64, k, v string) watchEvent { return watchEvent{Index: idx, Type: "PUT", Key: k, Value: v} }
	d := func(idx int64, k string) watchEvent { return watchEvent{Index: idx, Type: "DELETE", Key: k} }
	// Times: call, return. The unknown write of z=4 began after the add at 3 was acknowledged.
	h := []op{
		{Kind: kindWrite, Key: "a", Value: 1, Index: 2, Outcome: outcomeOK, Call: 1, Return: 2},
		{Kind: kindAdd, Key: "b", Index: 3, Outcome: outcomeOK, Call: 3, Return: 4},
		{Kind: kindWrite, Key: "z", Value: 4, Outcome: outcomeUnknown, Call: 5, Return: 6},
		{Kind: kindDelete, Key: "a", Index: 6, Success: true, Outcome: outcomeOK, Call: 7, Return: 8},
		{Kind: kindDelete, Key: "b", Index: 7, Outcome: outcomeOK, Call: 9, Return: 10}, // found nothing
		{Kind: kindWrite, Key: "f", Value: 5, Outcome: outcomeFail, Call: 11, Return: 12},
		{Kind: kindCAS, Key: "c", Value: 6, Outcome: outcomeOK, Call: 13, Return: 14}, // compare failed
	}
	ref := []watchEvent{p(2, "a", "1"), p(3, "b", "1"), p(5, "z", "4"), d(6, "a")}
	final := map[string]string{"b": "1", "z": "4"}
	if r, problems := crossCheck(ref, 0, h, final); r != (crossResult{Acked: 3, Deletes: 1, Puts: 3}) || len(problems) != 0 {
		t.Fatalf("consistent: %+v, problems %v", r, problems)
	}
	with := func(i int, e watchEvent) []watchEvent { out := slices.Clone(ref); out[i] = e; return out }
	cases := []struct {
		name  string
		ref   []watchEvent
		final map[string]string
		want  int // problems
	}{
		{"an acknowledged put missing (deleted later, so the fold agrees)", ref[1:], final, 1},
		{"an acknowledged delete missing, and its key folds wrong", ref[:3], final, 1 + 1},
		{"a put at another index than acknowledged", with(0, p(4, "a", "1")), final, 1 + 1},
		{"a put of a value never written", with(2, p(5, "z", "9")), map[string]string{"b": "1", "z": "9"}, 1},
		{"a put of a write reported failed", append(slices.Clone(ref), p(8, "f", "5")), map[string]string{"b": "1", "z": "4", "f": "5"}, 1},
		{"a put of a CAS whose compare failed", append(slices.Clone(ref), p(8, "c", "6")), map[string]string{"b": "1", "z": "4", "c": "6"}, 1},
		{"an unknown write before an acknowledgement it followed", []watchEvent{ref[0], p(3, "b", "1"), p(3, "z", "4"), ref[3]}, final, 1},
		{"a write applied twice", append(slices.Clone(ref), p(8, "z", "4")), final, 1},
		{"a delete never attempted", append(slices.Clone(ref), d(8, "z")), map[string]string{"b": "1"}, 1},
		{"a delete that found nothing left an event", append(slices.Clone(ref), d(7, "b")), map[string]string{"z": "4"}, 1 + 1},
		{"the fold differs from the final state", ref, map[string]string{"b": "1", "z": "5"}, 1},
		{"a key of the final state never changed", ref, map[string]string{"b": "1", "z": "4", "q": "1"}, 1},
	}
	for _, tc := range cases {
		if _, problems := crossCheck(tc.ref, 0, h, tc.final); len(problems) != tc.want {
			t.Errorf("%s: want %d problems, got %d: %v", tc.name, tc.want, len(problems), problems)
		}
	}
	// Above a floor of 4, only what the reference reaches is checked, and the keys it changes.
	if r, problems := crossCheck(ref[3:], 4, h, map[string]string{"b": "1", "z": "4"}); r.Acked != 1 || len(problems) != 0 {
		t.Fatalf("above a floor: %+v, problems %v", r, problems)
	}
}

func testCompareHistories(t *testing.T) {
	p := func(idx int64, k, v string) watchEvent { return watchEvent{Index: idx, Type: "PUT", Key: k, Value: v} }
	full := []watchEvent{p(2, "a", "1"), p(3, "b", "1"), p(5, "c", "2"), p(7, "a", "3")}
	n1 := nodeHistory{Name: "n1", Events: full}
	n2 := nodeHistory{Name: "n2", Floor: 4, Events: full[2:]}
	if n, problems := compareHistories([]nodeHistory{n1, n2}); n != 2 || len(problems) != 0 {
		t.Fatalf("equal over (4, 7]: compared %d, problems %v", n, problems)
	}
	for name, bad := range map[string][]watchEvent{
		"another value":   {p(5, "c", "2"), p(7, "a", "4")},
		"a missing event": {p(7, "a", "3")},
		"an extra event":  {p(5, "c", "2"), p(6, "d", "1"), p(7, "a", "3")},
	} {
		n3 := nodeHistory{Name: "n3", Floor: 4, Events: bad}
		if _, problems := compareHistories([]nodeHistory{n1, n2, n3}); len(problems) != 2 {
			t.Errorf("%s: want the pairs n1-n3 and n2-n3 flagged, got %v", name, problems)
		}
	}
}
