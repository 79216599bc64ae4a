package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/fsm"
)

// Backup headers, as kvnode's admin port sends and expects them.
const (
	headerSHA256  = "X-Cubekv-Sha256"
	headerApplied = "X-Cubekv-Applied-Index"
)

type snapshotOptions struct {
	admin   string        // admin address to use instead of the leader's from the topology
	timeout time.Duration // bound of the transfer
}

func newSnapshotCmd(g *globalOptions) *cobra.Command {
	o := &snapshotOptions{timeout: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up the cluster to a file, or seed a new cluster from one",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.admin, "admin", "", "admin address (host:port) of the node to use (default: the leader's, from the topology)")
	cmd.PersistentFlags().DurationVar(&o.timeout, "transfer-timeout", o.timeout, "time limit of the snapshot transfer")
	cmd.AddCommand(&cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent snapshot of the whole cluster to FILE (checksums verified)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotSave(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	}, &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace a cluster's state with the snapshot in FILE (meant for a fresh cluster)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotRestore(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	})
	return cmd
}

// adminAddr returns the admin address to talk to: --admin, else the
// leader's from the topology.
func (o *snapshotOptions) adminAddr(ctx context.Context, g *globalOptions) (string, error) {
	if o.admin != "" {
		return o.admin, nil
	}
	c, err := g.newClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	tctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	topo, err := c.Topology(tctx)
	if err != nil {
		return "", fmt.Errorf("topology: %w", err)
	}
	for _, m := range topo.Members {
		if m.Leader {
			if m.AdminAddr == "" {
				return "", fmt.Errorf("leader %s has no admin address: give --admin", m.NodeID)
			}
			return m.AdminAddr, nil
		}
	}
	return "", fmt.Errorf("no leader known: give --admin")
}

// httpClient returns an HTTP client and URL scheme for the admin port: TLS
// with the same certificates as the Thrift port when --cacert is given.
func (g *globalOptions) httpClient() (*http.Client, string, error) {
	tc, err := g.tlsConfig()
	if err != nil {
		return nil, "", err
	}
	if tc == nil {
		return http.DefaultClient, "http", nil
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}, "https", nil
}

// adminDo sends one request to the admin port (--admin, else the leader's)
// and returns the address used and the response, which is 200 OK: any other
// status becomes an error carrying the node's message.
func (o *snapshotOptions) adminDo(ctx context.Context, g *globalOptions, method, path string, body io.Reader, size int64, header http.Header) (string, *http.Response, error) {
	addr, err := o.adminAddr(ctx, g)
	if err != nil {
		return "", nil, err
	}
	hc, scheme, err := g.httpClient()
	if err != nil {
		return addr, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, body)
	if err != nil {
		return addr, nil, usageErrorf("--admin %q: %v", addr, err)
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return addr, nil, fmt.Errorf("via %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return addr, nil, fmt.Errorf("via %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	return addr, resp, nil
}

// snapshotResult is what save and restore report.
type snapshotResult struct {
	File         string `json:"file"`
	Bytes        int64  `json:"bytes"`
	Keys         int    `json:"keys"`
	AppliedIndex uint64 `json:"applied_index"`
	SHA256       string `json:"sha256"`
	Node         string `json:"admin_addr"`
}

func (g *globalOptions) printSnapshot(w io.Writer, verb string, r snapshotResult) error {
	if g.output == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	_, err := fmt.Fprintf(w, "%s %s: %d bytes, %d keys at index %d, sha256 %s (via %s)\n", verb, r.File, r.Bytes, r.Keys, r.AppliedIndex, r.SHA256, r.Node)
	return err
}

func runSnapshotSave(ctx context.Context, g *globalOptions, o *snapshotOptions, file string, stdout io.Writer) error {
	if _, err := g.printer(stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	addr, resp, err := o.adminDo(ctx, g, http.MethodGet, "/snapshot", nil, 0, nil)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return usageErrorf("cannot write next to %s: %v", file, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", addr, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want := resp.Header.Get(headerSHA256); sum != want {
		return fmt.Errorf("snapshot from %s: received %d bytes with sha256 %s, node sent %s", addr, n, sum, want)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	info, err := fsm.VerifySnapshot(tmp)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", addr, err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	return g.printSnapshot(stdout, "saved", snapshotResult{File: file, Bytes: n, Keys: info.Entries, AppliedIndex: info.AppliedIndex, SHA256: sum, Node: addr})
}

func runSnapshotRestore(ctx context.Context, g *globalOptions, o *snapshotOptions, file string, stdout io.Writer) error {
	if _, err := g.printer(stdout); err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return usageErrorf("%v", err)
	}
	defer f.Close()
	h := sha256.New()
	info, err := fsm.VerifySnapshot(io.TeeReader(f, h))
	if err != nil {
		if errors.Is(err, fsm.ErrCorruptSnapshot) {
			return usageErrorf("%s is not a valid snapshot: %v", file, err)
		}
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	addr, resp, err := o.adminDo(ctx, g, http.MethodPost, "/snapshot/restore", f, size, http.Header{headerSHA256: {sum}})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	resp.Body.Close()
	return g.printSnapshot(stdout, "restored", snapshotResult{File: file, Bytes: size, Keys: info.Entries, AppliedIndex: info.AppliedIndex, SHA256: sum, Node: addr})
}
