package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/internal/pki"
)

type certOptions struct {
	dir      string
	hosts    string
	validFor time.Duration
}

// newCertCmd makes the certificates of a cluster's mutual TLS.
func newCertCmd() *cobra.Command {
	o := &certOptions{dir: ".", validFor: 5 * 365 * 24 * time.Hour}
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make a CA and node or client certificates for mutual TLS",
		Args:  wrapArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.dir, "dir", o.dir, "directory holding ca.pem and ca-key.pem, where new files are written")
	cmd.PersistentFlags().DurationVar(&o.validFor, "valid-for", o.validFor, "validity of new certificates")
	node := &cobra.Command{
		Use:   "node NAME",
		Short: "Issue NAME.pem and NAME-key.pem for a node (server and client use)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCertIssue(o, pki.KindNode, args[0], cmd.OutOrStdout())
		},
	}
	node.Flags().StringVar(&o.hosts, "hosts", "", "comma-separated IP addresses and DNS names the node is reached at (required)")
	cmd.AddCommand(&cobra.Command{
		Use:   "ca",
		Short: "Make ca.pem and ca-key.pem (refuses to overwrite)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCertCA(o, cmd.OutOrStdout())
		},
	}, node, &cobra.Command{
		Use:   "client NAME",
		Short: "Issue NAME.pem and NAME-key.pem for a client (kvctl, applications)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCertIssue(o, pki.KindClient, args[0], cmd.OutOrStdout())
		},
	})
	return cmd
}

// writeNew writes data to path, refusing to replace an existing file.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runCertCA(o *certOptions, stdout io.Writer) error {
	ca, err := pki.NewCA("cubekv CA", o.validFor)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return usageErrorf("%v", err)
	}
	if err := writeNew(filepath.Join(o.dir, "ca-key.pem"), ca.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(o.dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(o.dir, "ca.pem"), filepath.Join(o.dir, "ca-key.pem"))
	return err
}

func runCertIssue(o *certOptions, kind pki.Kind, name string, stdout io.Writer) error {
	if strings.ContainsAny(name, `/\`) || name == "" || name == "ca" {
		return usageErrorf("name %q: want a plain file name other than ca", name)
	}
	var hosts []string
	for h := range strings.SplitSeq(o.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if kind == pki.KindNode && len(hosts) == 0 {
		return usageErrorf("--hosts is required for a node certificate")
	}
	certPEM, err := os.ReadFile(filepath.Join(o.dir, "ca.pem"))
	if err != nil {
		return usageErrorf("%v (run kvctl cert ca first)", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(o.dir, "ca-key.pem"))
	if err != nil {
		return usageErrorf("%v", err)
	}
	p, err := pki.Issue(pki.Pair{CertPEM: certPEM, KeyPEM: keyPEM}, kind, name, hosts, o.validFor)
	if err != nil {
		return err
	}
	if err := writeNew(filepath.Join(o.dir, name+"-key.pem"), p.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(o.dir, name+".pem"), p.CertPEM, 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(o.dir, name+".pem"), filepath.Join(o.dir, name+"-key.pem"))
	return err
}
