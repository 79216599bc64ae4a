package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	endpoints   string        // comma-separated host:port list
	consistency string        // linearizable or stale
	output      string        // simple or json
	timeout     time.Duration // bound of the whole command
	cacert      string        // CA that signed the nodes' certificates: enables TLS
	cert, key   string        // client certificate and key for mutual TLS
}

// tlsConfig returns the client TLS configuration the flags ask for, or nil.
func (g *globalOptions) tlsConfig() (*tls.Config, error) {
	if g.cacert == "" {
		if g.cert != "" || g.key != "" {
			return nil, usageErrorf("--cert and --key need --cacert")
		}
		return nil, nil
	}
	cfg, err := transport.ClientTLS(g.cacert, g.cert, g.key)
	if err != nil {
		return nil, &usageError{err: err}
	}
	return cfg, nil
}

func defaultGlobalOptions() *globalOptions {
	return &globalOptions{
		endpoints:   "127.0.0.1:9090",
		consistency: "linearizable",
		output:      "simple",
		timeout:     5 * time.Second,
	}
}

// newClient builds a client from the global options.
func (g *globalOptions) newClient() (*client.Client, error) {
	var eps []string
	for e := range strings.SplitSeq(g.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, usageErrorf("--endpoints: at least one address is required")
	}
	var cons kv.Consistency
	switch strings.ToLower(g.consistency) {
	case "linearizable", "":
		cons = kv.Consistency_LINEARIZABLE
	case "stale":
		cons = kv.Consistency_STALE
	default:
		return nil, usageErrorf("--consistency %q: want linearizable or stale", g.consistency)
	}
	tlsCfg, err := g.tlsConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{Endpoints: eps, Consistency: cons, Dial: transport.DialConfig{TLS: tlsCfg}})
	if err != nil {
		return nil, &usageError{err: err}
	}
	return c, nil
}

// printer returns the output printer the options ask for.
func (g *globalOptions) printer(w io.Writer) (printer, error) {
	switch g.output {
	case "simple", "":
		return &simplePrinter{w: w}, nil
	case "json":
		return &jsonPrinter{w: w}, nil
	}
	return nil, usageErrorf("--output %q: want simple or json", g.output)
}

// session opens what every command needs: a context bounded by --timeout, a client and a printer.
// The caller must call done.
func (g *globalOptions) session(ctx context.Context, stdout io.Writer) (context.Context, *client.Client, printer, func(), error) {
	return g.sessionFor(ctx, stdout, g.timeout)
}

// sessionFor is session with the context bounded by timeout instead of --timeout (0 or less: not
// bounded).
func (g *globalOptions) sessionFor(ctx context.Context, stdout io.Writer, timeout time.Duration) (context.Context, *client.Client, printer, func(), error) {
	p, err := g.printer(stdout)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	c, err := g.newClient()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	return ctx, c, p, func() { cancel(); _ = c.Close() }, nil
}

// membershipTimeout is the time limit of a membership change that waits for a member to catch up:
// --timeout, but never less than the catch-up plus the time the leader needs around it.
func (g *globalOptions) membershipTimeout(catchup time.Duration) time.Duration {
	if g.timeout <= 0 {
		return 0
	}
	return max(g.timeout, catchup+15*time.Second)
}

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return wrapArgs(cobra.ExactArgs(n))
}

func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{err: err}
		}
		return nil
	}
}

// newRootCmd builds the command tree. *ran becomes true once a command's run function starts.
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *bool) {
	g := defaultGlobalOptions()
	ran := new(bool)
	root := &cobra.Command{
		Use:           "kvctl",
		Short:         "Command-line client of cubekv",
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Runnable, so that an unknown command is an argument error rather than help and success.
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRun: func(*cobra.Command, []string) {
			*ran = true
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate(fmt.Sprintf("kvctl %s\n", version))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })

	f := root.PersistentFlags()
	f.StringVar(&g.endpoints, "endpoints", g.endpoints, "comma-separated Thrift addresses (host:port) of any nodes")
	f.StringVar(&g.consistency, "consistency", g.consistency, "read consistency: linearizable or stale")
	f.StringVarP(&g.output, "output", "o", g.output, "output format: simple or json")
	f.DurationVar(&g.timeout, "timeout", g.timeout, "time limit of the whole command, retries included")
	f.StringVar(&g.cacert, "cacert", "", "CA certificate (PEM) that signed the nodes' certificates: talk TLS")
	f.StringVar(&g.cert, "cert", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&g.key, "key", "", "private key (PEM) of --cert")

	root.AddCommand(
		newGetCmd(g),
		newPutCmd(g),
		newDelCmd(g),
		newScanCmd(g),
		newCASCmd(g),
		newTxnCmd(g),
		newStatusCmd(g),
		newMemberCmd(g),
		newLeaderCmd(g),
		newSnapshotCmd(g),
		newCertCmd(),
		newGossipCmd(g),
		newBenchCmd(g),
		newLeaseCmd(g),
		newLockCmd(g),
		newElectCmd(g),
	)
	root.AddCommand(newWatchCmd(g))
	return root, ran
}
