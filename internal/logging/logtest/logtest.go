// Package logtest records slog records with every attribute they carry, the
// ones added by Logger.With included, so tests can check what a component
// logs.
package logtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Record is one logged record: its message and the keys of all its
// attributes, in order, those bound with Logger.With first. Keys inside a
// group are prefixed with the group name and a dot.
type Record struct {
	Message string
	Keys    []string
}

// Count returns how many times key occurs in r.
func (r Record) Count(key string) int {
	n := 0
	for _, k := range r.Keys {
		if k == key {
			n++
		}
	}
	return n
}

// Recorder is a slog.Handler that keeps every record at or above Debug. It
// is safe for concurrent use.
type Recorder struct {
	shared *recorded
	prefix string   // group prefix for attributes added from here on
	bound  []string // keys bound with WithAttrs, prefixed
}

type recorded struct {
	mu      sync.Mutex
	records []Record
}

// New returns a Recorder and a logger writing to it.
func New() (*Recorder, *slog.Logger) {
	r := &Recorder{shared: &recorded{}}
	return r, slog.New(r)
}

// Records returns a copy of the records kept so far.
func (r *Recorder) Records() []Record {
	r.shared.mu.Lock()
	defer r.shared.mu.Unlock()
	out := make([]Record, len(r.shared.records))
	copy(out, r.shared.records)
	return out
}

// Repeated describes every record in which one of keys occurs other than
// exactly once, one line each; "" when there is none. No records at all is
// reported too, so a check cannot pass by logging nothing.
func (r *Recorder) Repeated(keys ...string) string {
	recs := r.Records()
	if len(recs) == 0 {
		return "no records"
	}
	var b strings.Builder
	for _, rec := range recs {
		for _, k := range keys {
			if n := rec.Count(k); n != 1 {
				fmt.Fprintf(&b, "%q has %s %d times (keys %v)\n", rec.Message, k, n, rec.Keys)
			}
		}
	}
	return b.String()
}

// Enabled reports true for Debug and above.
func (r *Recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

// Handle keeps rec.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	keys := append([]string{}, r.bound...)
	rec.Attrs(func(a slog.Attr) bool {
		keys = appendKeys(keys, r.prefix, a)
		return true
	})
	r.shared.mu.Lock()
	r.shared.records = append(r.shared.records, Record{Message: rec.Message, Keys: keys})
	r.shared.mu.Unlock()
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (r *Recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.bound = append([]string{}, r.bound...)
	for _, a := range attrs {
		c.bound = appendKeys(c.bound, r.prefix, a)
	}
	return &c
}

// WithGroup returns a handler that prefixes later keys with name.
func (r *Recorder) WithGroup(name string) slog.Handler {
	if name == "" {
		return r
	}
	c := *r
	c.prefix = r.prefix + name + "."
	return &c
}

func appendKeys(keys []string, prefix string, a slog.Attr) []string {
	if a.Equal(slog.Attr{}) {
		return keys
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			keys = appendKeys(keys, p, g)
		}
		return keys
	}
	return append(keys, prefix+a.Key)
}
