package pebbleng

import (
	"fmt"
	"log/slog"
)

// logger passes pebble's errors to slog. Its informational messages are
// dropped: they name files' key bounds, and logs never carry keys or
// values. A fatal message is logged and panics (pebble's default exits the
// process).
type logger struct {
	l *slog.Logger
}

func (l logger) Infof(string, ...any) {}

func (l logger) Errorf(format string, args ...any) {
	l.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.l.Error("pebble: fatal: " + msg)
	panic("pebble: " + msg)
}

// logErr logs an error the engine cannot return to anyone.
func (e *Engine) logErr(what string, err error) {
	e.log.Error("pebble engine: "+what, "dir", e.dir, "err", err)
}
