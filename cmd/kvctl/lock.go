package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
)

// Environment variables `kvctl lock` gives the command it runs.
const (
	envLockToken = "CUBEKV_LOCK_TOKEN" // the fencing token
	envLockKey   = "CUBEKV_LOCK_KEY"
	envLockLease = "CUBEKV_LOCK_LEASE"
)

// errLockLost means the lock's lease ended while its command ran.
var errLockLost = errors.New("lock lost")

func newLockCmd(g *globalOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "lock NAME -- COMMAND [ARG...]",
		Short: "Run COMMAND while holding lock NAME; its fencing token is in $" + envLockToken,
		Long: "Acquires lock NAME (waiting while another holds it), runs COMMAND with the lock's fencing\n" +
			"token in $" + envLockToken + " (also $" + envLockKey + " and $" + envLockLease + "), and releases the lock\n" +
			"when COMMAND exits. The token grows with every acquisition: whatever COMMAND changes must refuse\n" +
			"a token lower than one it has seen, or a holder paused past its TTL can act after losing the lock.\n" +
			"If the lock is lost while COMMAND runs, COMMAND gets SIGTERM and kvctl exits 3.\n" +
			"Exits with COMMAND's exit code otherwise.",
		Args: wrapArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErrorf("want lock NAME -- COMMAND [ARG...]")
			}
			return runLock(cmd.Context(), g, args[0], args[1:], ttl, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", client.DefaultLockTTL, "TTL of the lock's lease: how long after kvctl dies the lock is freed")
	return cmd
}

// exitError carries a command's exit code out of runLock.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

func runLock(ctx context.Context, g *globalOptions, name string, argv []string, ttl time.Duration, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, c, _, done, err := g.sessionFor(ctx, stdout, 0)
	if err != nil {
		return err
	}
	defer done()
	l, err := c.Lock(ctx, name, client.LockOptions{TTL: ttl, Value: []byte(fmt.Sprintf("kvctl pid %d", os.Getpid()))})
	if err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = l.Unlock(uctx)
	}()
	// Acquiring (a CAS retried after an unknown outcome) may have
	// outlasted the TTL: never start the command without the lock.
	if err := l.Err(); err != nil {
		return fmt.Errorf("%w before %s started: %v", errLockLost, argv[0], err)
	}
	run := exec.Command(argv[0], argv[1:]...)
	run.Stdin, run.Stdout, run.Stderr = stdin, stdout, stderr
	run.Env = append(os.Environ(),
		envLockToken+"="+strconv.FormatInt(l.Token, 10),
		envLockKey+"="+string(l.Key),
		envLockLease+"="+strconv.FormatInt(l.LeaseID, 10))
	if err := run.Start(); err != nil {
		return usageErrorf("start %s: %w", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &exitError{code: ee.ExitCode()}
		}
		return err
	case <-l.Lost():
		_ = run.Process.Signal(syscall.SIGTERM)
		<-exited
		return fmt.Errorf("%w: %v", errLockLost, l.Err())
	case <-ctx.Done():
		_ = run.Process.Signal(syscall.SIGTERM)
		<-exited
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

func newElectCmd(g *globalOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "elect NAME VALUE",
		Short: "Campaign to lead NAME with VALUE; print when leading, hold until interrupted",
		Long: "Waits until elected leader of NAME, publishing VALUE (readable at key elect/NAME), prints\n" +
			"the fencing token, and holds the leadership until SIGINT or SIGTERM, then resigns. Exits 3 if\n" +
			"the leadership is lost (its lease ended).",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			ctx, c, _, done, err := g.sessionFor(ctx, out, 0)
			if err != nil {
				return err
			}
			defer done()
			l, err := c.Campaign(ctx, args[0], []byte(args[1]), client.LockOptions{TTL: ttl})
			if err != nil {
				return err
			}
			if err := printOut(g, out, struct {
				Name  string `json:"name"`
				Value string `json:"value"`
				Token int64  `json:"token"`
				Lease int64  `json:"lease_id"`
			}{args[0], args[1], l.Token, l.LeaseID},
				"leading %s as %q, fencing token %d\n", args[0], args[1], l.Token); err != nil {
				return err
			}
			select {
			case <-l.Lost():
				return fmt.Errorf("%w: %v", errLockLost, l.Err())
			case <-ctx.Done():
			}
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := l.Unlock(uctx); err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "resigned %s\n", args[0])
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", client.DefaultLockTTL, "TTL of the leadership's lease")
	return cmd
}
