package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHCLog_LevelsKeysAndWith(t *testing.T) {
	var buf bytes.Buffer
	root := New(&buf, true, slog.LevelDebug)
	h := HCLog(root.With("component", ComponentRaft))

	h.Trace("below threshold")
	h.Debug("debug line", "index", 7)
	h.With("term", 3).Named("replication").Warn("warn line", "error", errors.New("boom"), "peer-address", "127.0.0.1:1")
	h.Error("odd args", "dangling")

	lines := decodeLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3 (trace filtered): %s", len(lines), buf.String())
	}
	if lines[0]["level"] != "DEBUG" || lines[0]["raft_index"] != float64(7) || lines[0]["component"] != "raft" {
		t.Errorf("debug line = %v", lines[0])
	}
	if lines[1]["level"] != "WARN" || lines[1]["err"] != "boom" || lines[1]["term"] != float64(3) ||
		lines[1]["addr"] != "127.0.0.1:1" || lines[1]["subsystem"] != "replication" {
		t.Errorf("warn line = %v", lines[1])
	}
	if lines[2]["level"] != "ERROR" || lines[2]["extra"] != "dangling" {
		t.Errorf("error line = %v", lines[2])
	}
	if !h.IsDebug() || h.IsTrace() {
		t.Errorf("IsDebug=%v IsTrace=%v, want true false", h.IsDebug(), h.IsTrace())
	}
	h.SetLevel(hclog.Error)
	if h.IsWarn() || h.GetLevel() != hclog.Error {
		t.Errorf("after SetLevel(Error): IsWarn=%v level=%v", h.IsWarn(), h.GetLevel())
	}
	buf.Reset()
	h.Warn("suppressed")
	if buf.Len() != 0 {
		t.Errorf("warn after SetLevel(Error) logged %q", buf.String())
	}
}

func TestStdLog_PrefixLevels(t *testing.T) {
	var buf bytes.Buffer
	l := StdLog(New(&buf, true, slog.LevelDebug))
	l.Printf("[DEBUG] memberlist: stream connection from=%s", "127.0.0.1:5")
	l.Printf("[WARN] memberlist: was able to connect")
	l.Printf("[ERR] memberlist: failed")
	l.Printf("plain line")

	lines := decodeLines(t, &buf)
	want := []struct{ level, msg string }{
		{"DEBUG", "stream connection from=127.0.0.1:5"},
		{"WARN", "was able to connect"},
		{"ERROR", "failed"},
		{"INFO", "plain line"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d: %s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if lines[i]["level"] != w.level || lines[i]["msg"] != w.msg {
			t.Errorf("line %d = %v, want level %s msg %q", i, lines[i], w.level, w.msg)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"debug", slog.LevelDebug, true},
		{"INFO", slog.LevelInfo, true},
		{"", slog.LevelInfo, true},
		{"warn", slog.LevelWarn, true},
		{"error", slog.LevelError, true},
		{"trace", LevelTrace, true},
		{"loud", 0, false},
	} {
		got, ok := ParseLevel(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
