package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/cubekv/cubekv/node"
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
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		st := n.Status()
		if st.LeaderID == "" || st.AppliedIndex < st.CommitIndex {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: leader=%q applied=%d commit=%d\n", st.LeaderID, st.AppliedIndex, st.CommitIndex)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, statusJSON(n.Status()))
	})
	mux.HandleFunc("/digest", func(w http.ResponseWriter, _ *http.Request) {
		applied, sum := n.FSM().Digest()
		writeJSON(w, map[string]any{"node_id": n.ID(), "applied_index": applied, "keys": n.FSM().Len(), "digest": hex.EncodeToString(sum[:])})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", cfg.AdminAddr, err)
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
	lc := int64(-1)
	if st.LastContact >= 0 {
		lc = st.LastContact.Milliseconds()
	}
	return map[string]any{
		"node_id":          st.ID,
		"role":             st.Role.String(),
		"term":             st.Term,
		"commit_index":     st.CommitIndex,
		"applied_index":    st.AppliedIndex,
		"leader_id":        st.LeaderID,
		"leader_raft_addr": st.LeaderRaftAddr,
		"last_contact_ms":  lc,
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
