package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cubekv/cubekv/console"
	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/server"
)

// adminServer is the admin HTTP endpoint: /health, /ready, /status,
// /digest and /debug/pprof, on its own mux (never the default one).
type adminServer struct {
	http *http.Server
	ln   net.Listener
}

func createAdmin(cfg *config, n *node.Node, logger *slog.Logger) (*adminServer, error) {
	if cfg.AdminAddr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		// Ready: a leader is known, confirms it leads (a read index), and
		// this node has applied everything it had committed.
		if err := n.StorageError(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		ok, err := n.CaughtUp(ctx)
		st := n.Status()
		if err != nil || !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: leader=%q applied=%d err=%v\n", st.LeaderID, st.AppliedIndex, err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(cfg.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, statusJSON(n.Status()))
	})
	mux.HandleFunc("/digest", func(w http.ResponseWriter, _ *http.Request) {
		applied, sum := n.FSM().Digest()
		writeJSON(w, map[string]any{"node_id": n.ID(), "applied_index": applied, "keys": n.FSM().Len(), "digest": hex.EncodeToString(sum[:])})
	})
	// Staged backups and restores are written next to raft.db: one at a
	// time, and leftovers of a crash are removed at start.
	sweepStaging(cfg.DataDir, logger)
	var staging sync.Mutex
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, r *http.Request) {
		if !staging.TryLock() {
			http.Error(w, "a backup or restore is already running", http.StatusTooManyRequests)
			return
		}
		defer staging.Unlock()
		serveSnapshot(w, r, n, cfg.DataDir, logger)
	})
	mux.HandleFunc("POST /snapshot/restore", func(w http.ResponseWriter, r *http.Request) {
		if !staging.TryLock() {
			http.Error(w, "a backup or restore is already running", http.StatusTooManyRequests)
			return
		}
		defer staging.Unlock()
		r.Body = http.MaxBytesReader(w, r.Body, maxRestoreBytes)
		restoreSnapshot(w, r, n, cfg.DataDir, logger)
	})
	mux.Handle("/ui/", createConsole(cfg).Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", cfg.AdminAddr, err)
	}
	if tc := cfg.tlsConfig(); tc != nil {
		// Plaintext and TLS never share a port: with TLS on, the admin
		// port speaks only mutual TLS too.
		ln = tls.NewListener(ln, tc)
	}
	return &adminServer{
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          nil,
		},
		ln: ln,
	}, nil
}

func (a *adminServer) serve() error {
	if err := a.http.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

func (a *adminServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return a.http.Shutdown(ctx)
}

func statusJSON(st node.Status) map[string]any {
	return map[string]any{
		"node_id":          st.ID,
		"role":             st.Role.String(),
		"term":             st.Term,
		"commit_index":     st.CommitIndex,
		"applied_index":    st.AppliedIndex,
		"leader_id":        st.LeaderID,
		"leader_raft_addr": st.LeaderRaftAddr,
		"last_contact_ms":  server.LastContactMs(st.LastContact),
		"snapshot_index":   st.SnapshotIndex,
		"keys":             st.Keys,
		"bytes":            st.Bytes,
		"engine":           st.Engine,
		"forwarded":        st.Forwarded,
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// maxRestoreBytes bounds an uploaded snapshot: the whole state lives in
// memory, so a larger one could not be restored on these machines anyway,
// and the cap keeps an upload from filling the disk raft.db lives on.
const maxRestoreBytes = 4 << 30

// sweepStaging removes staged backup and restore files a crash left behind.
func sweepStaging(dataDir string, logger *slog.Logger) {
	for _, pattern := range []string{"backup-*.tmp", "restore-*.tmp"} {
		files, _ := filepath.Glob(filepath.Join(dataDir, pattern))
		for _, f := range files {
			if err := os.Remove(f); err == nil {
				logger.Info("removed a leftover staging file", "count", 1)
			}
		}
	}
}

// Backup headers: the SHA-256 of the snapshot body (hex), checked by both
// ends, and what the snapshot holds.
const (
	headerSHA256  = "X-Cubekv-Sha256"
	headerApplied = "X-Cubekv-Applied-Index"
	headerEntries = "X-Cubekv-Entries"
)

// stage creates a staging file in dataDir named after pattern, answering
// 500 when it cannot; unstage removes it.
func stage(w http.ResponseWriter, dataDir, pattern string) (*os.File, bool) {
	f, err := os.CreateTemp(dataDir, pattern)
	if err != nil {
		http.Error(w, "stage snapshot: "+err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	return f, true
}

func unstage(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// serveSnapshot answers GET /snapshot with a linearizable snapshot of the
// whole state, staged in the data dir so its checksum and length can be sent
// before the body.
func serveSnapshot(w http.ResponseWriter, r *http.Request, n *node.Node, dataDir string, logger *slog.Logger) {
	tmp, ok := stage(w, dataDir, "backup-*.tmp")
	if !ok {
		return
	}
	defer unstage(tmp)
	h := sha256.New()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	info, size, err := n.SnapshotTo(ctx, io.MultiWriter(tmp, h))
	if err != nil {
		http.Error(w, "snapshot: "+err.Error(), adminStatusFor(err))
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		http.Error(w, "rewind snapshot: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set(headerSHA256, hex.EncodeToString(h.Sum(nil)))
	w.Header().Set(headerApplied, strconv.FormatUint(info.AppliedIndex, 10))
	w.Header().Set(headerEntries, strconv.Itoa(info.Entries))
	if _, err := io.Copy(w, tmp); err != nil {
		logger.Warn("send snapshot", "err", err)
		return
	}
	logger.Info("snapshot sent", "raft_index", info.AppliedIndex, "count", info.Entries, "bytes", size)
}

// restoreSnapshot answers POST /snapshot/restore: the body is a snapshot
// whose SHA-256 is in the X-Cubekv-Sha256 header. It is staged, checked and
// handed to the leader's RestoreFrom.
func restoreSnapshot(w http.ResponseWriter, r *http.Request, n *node.Node, dataDir string, logger *slog.Logger) {
	want := r.Header.Get(headerSHA256)
	if want == "" {
		http.Error(w, "missing "+headerSHA256+" header", http.StatusBadRequest)
		return
	}
	tmp, ok := stage(w, dataDir, "restore-*.tmp")
	if !ok {
		return
	}
	defer unstage(tmp)
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), r.Body)
	if err != nil {
		http.Error(w, "receive snapshot: "+err.Error(), http.StatusBadRequest)
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		http.Error(w, fmt.Sprintf("checksum mismatch: received %d bytes with sha256 %s, header says %s", size, got, want), http.StatusBadRequest)
		return
	}
	if err := tmp.Sync(); err != nil {
		http.Error(w, "stage snapshot: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	info, err := n.RestoreFrom(ctx, tmp.Name())
	if err != nil {
		http.Error(w, "restore: "+err.Error(), adminStatusFor(err))
		return
	}
	logger.Info("snapshot restored from upload", "raft_index", info.AppliedIndex, "count", info.Entries, "bytes", size)
	writeJSON(w, map[string]any{"applied_index": info.AppliedIndex, "entries": info.Entries, "bytes": size})
}

// adminStatusFor maps node errors to HTTP statuses.
func adminStatusFor(err error) int {
	switch {
	case errors.Is(err, fsm.ErrCorruptSnapshot):
		return http.StatusBadRequest
	case errors.Is(err, node.ErrNotLeader):
		return http.StatusConflict
	case errors.Is(err, node.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, node.ErrNoLeader), errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrNotReady), errors.Is(err, node.ErrShutdown):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// createConsole builds the web console (/ui/) on this node's own Thrift
// front-door handlers, so its reads and writes get the same validation,
// limits and metrics as any Thrift client's; it reads peers' /metrics with
// the node's TLS configuration (its certificate as the client's) when TLS is
// on.
func createConsole(cfg *config) *console.Console {
	return console.New(console.Config{Backend: cfg.front, Writable: cfg.UIWrite, TLS: cfg.tlsConfig()})
}
