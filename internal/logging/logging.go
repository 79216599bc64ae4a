// Package logging bridges cubekv's log/slog loggers to the logger types that
// the HashiCorp libraries take: an hclog.Logger for raft and a *log.Logger
// for memberlist. One root slog.Logger (built in cmd/kvnode) thus writes every
// line in one format, with the component and node_id attributes once each:
// the root logger carries node_id, and each component adds only its own
// component attribute (With("component", name)) to the logger it is given.
// Package logtest checks this in tests.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Component names, used as the value of the "component" attribute.
const (
	ComponentNode      = "node"
	ComponentRaft      = "raft"
	ComponentFSM       = "fsm"
	ComponentServer    = "server"
	ComponentTransport = "transport"
	ComponentGossip    = "gossip"
	ComponentAdmin     = "admin"
	ComponentLease     = "lease"
)

// LevelTrace is slog's level for hclog's Trace, below Debug.
const LevelTrace = slog.LevelDebug - 4

// keyMap renames the attribute keys the HashiCorp libraries use to cubekv's
// fixed log vocabulary.
var keyMap = map[string]string{
	"error":        "err",
	"index":        "raft_index",
	"last-index":   "raft_index",
	"id":           "peer",
	"server-id":    "peer",
	"address":      "addr",
	"peer-address": "addr",
	"leader-id":    "leader",
}

// HCLog returns an hclog.Logger that writes through l. Its level filter is
// l's own (hclog's SetLevel narrows it further).
func HCLog(l *slog.Logger) hclog.Logger {
	h := &hcAdapter{l: l}
	h.level = new(atomic.Int32)
	h.level.Store(int32(hclog.Trace))
	return h
}

type hcAdapter struct {
	l       *slog.Logger
	name    string
	implied []interface{}
	level   *atomic.Int32 // shared by loggers derived with With/Named, as in hclog
}

var _ hclog.Logger = (*hcAdapter)(nil)

func toSlogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func convertArgs(args []interface{}) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			out = append(out, slog.Any("extra", args[i]))
			break
		}
		k, ok := args[i].(string)
		if !ok {
			out = append(out, slog.Any("extra", args[i]))
			continue
		}
		if m, ok := keyMap[k]; ok {
			k = m
		}
		v := args[i+1]
		switch x := v.(type) {
		case error:
			v = x.Error()
		case hclog.Format:
			if len(x) > 0 {
				if f, ok := x[0].(string); ok {
					v = fmt.Sprintf(f, x[1:]...)
				}
			}
		}
		out = append(out, slog.Any(k, v))
		i++
	}
	return out
}

func (h *hcAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off || level < hclog.Level(h.level.Load()) {
		return
	}
	sl := toSlogLevel(level)
	if !h.l.Enabled(context.Background(), sl) {
		return
	}
	all := convertArgs(append(append([]interface{}{}, h.implied...), args...))
	if h.name != "" {
		all = append(all, slog.String("subsystem", h.name))
	}
	h.l.Log(context.Background(), sl, msg, all...)
}

func (h *hcAdapter) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hcAdapter) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hcAdapter) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hcAdapter) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hcAdapter) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }

func (h *hcAdapter) enabled(level hclog.Level) bool {
	return level >= hclog.Level(h.level.Load()) && h.l.Enabled(context.Background(), toSlogLevel(level))
}

func (h *hcAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcAdapter) ImpliedArgs() []interface{} { return h.implied }

func (h *hcAdapter) With(args ...interface{}) hclog.Logger {
	c := *h
	c.implied = append(append([]interface{}{}, h.implied...), args...)
	return &c
}

func (h *hcAdapter) Name() string { return h.name }

func (h *hcAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name = c.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hcAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hcAdapter) SetLevel(level hclog.Level) {
	if level == hclog.NoLevel {
		level = hclog.Trace
	}
	h.level.Store(int32(level))
}

func (h *hcAdapter) GetLevel() hclog.Level { return hclog.Level(h.level.Load()) }

func (h *hcAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &levelWriter{log: func(level slog.Level, msg string) {
		h.l.Log(context.Background(), level, msg)
	}}
}

// StdLog returns a *log.Logger that writes through l, taking each line's level
// from its "[DEBUG]", "[INFO]", "[WARN]", "[ERR]" or "[ERROR]" prefix, as
// memberlist writes them (lines without one are logged at Info).
func StdLog(l *slog.Logger) *log.Logger {
	return log.New(&levelWriter{log: func(level slog.Level, msg string) {
		l.Log(context.Background(), level, msg)
	}}, "", 0)
}

// levelWriter turns each written line into one slog record.
type levelWriter struct {
	log func(level slog.Level, msg string)
}

func (w *levelWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		level, msg := PickLevel(string(line))
		if msg != "" {
			w.log(level, msg)
		}
	}
	return len(p), nil
}

// PickLevel returns the level a line's bracketed prefix names and the line
// without it (and without the "memberlist: " tag memberlist adds).
func PickLevel(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[TRACE]", LevelTrace},
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERROR]", slog.LevelError},
		{"[ERR]", slog.LevelError},
	} {
		if strings.HasPrefix(s, p.prefix) {
			level = p.level
			s = strings.TrimSpace(s[len(p.prefix):])
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return level, s
}

// New builds the process's root logger writing to w: JSON when json is true,
// text otherwise, at the given minimum level.
func New(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ParseLevel turns "trace", "debug", "info", "warn" or "error" into a level.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, true
	case "debug":
		return slog.LevelDebug, true
	case "info", "":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}
