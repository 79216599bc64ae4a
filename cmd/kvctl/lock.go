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
	"sync"
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
	var ttl, killAfter time.Duration
	cmd := &cobra.Command{
		Use:   "lock NAME -- COMMAND [ARG...]",
		Short: "Run COMMAND while holding lock NAME; its fencing token is in $" + envLockToken,
		Long: "Acquires lock NAME (waiting while another holds it), runs COMMAND with the lock's fencing\n" +
			"token in $" + envLockToken + " (also $" + envLockKey + " and $" + envLockLease + "), and releases the lock\n" +
			"when COMMAND exits. The token grows with every acquisition: whatever COMMAND changes must refuse\n" +
			"a token lower than one it has seen, or a holder paused past its TTL can act after losing the lock.\n" +
			"COMMAND runs in a process group of its own. If the lock is lost while it runs, kvctl prints a\n" +
			"warning to stderr at once, sends SIGTERM to the group, SIGKILL after --kill-after, and exits 5.\n" +
			"SIGINT or SIGTERM to kvctl is passed on to the group the same way. COMMAND must not read from a\n" +
			"terminal (its group is not the terminal's foreground group).\n" +
			"Exits with COMMAND's exit code otherwise.",
		Args: wrapArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErrorf("want lock NAME -- COMMAND [ARG...]")
			}
			return runLock(cmd.Context(), g, args[0], args[1:], ttl, killAfter, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", client.DefaultLockTTL, "TTL of the lock's lease: how long after kvctl dies the lock is freed")
	cmd.Flags().DurationVar(&killAfter, "kill-after", 5*time.Second, "after the lock is lost (or kvctl is interrupted), SIGKILL COMMAND's process group if it is still running this long after SIGTERM")
	return cmd
}

// exitError carries a command's exit code out of runLock.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

func runLock(ctx context.Context, g *globalOptions, name string, argv []string, ttl, killAfter time.Duration, stdin io.Reader, stdout, stderr io.Writer) error {
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
	// kvctl's warnings go to the command's stderr while it runs.
	stderr = &syncWriter{w: stderr}
	run := exec.Command(argv[0], argv[1:]...)
	run.Stdin, run.Stdout, run.Stderr = stdin, stdout, stderr
	run.Env = append(os.Environ(),
		envLockToken+"="+strconv.FormatInt(l.Token, 10),
		envLockKey+"="+string(l.Key),
		envLockLease+"="+strconv.FormatInt(l.LeaseID, 10))
	// A group of its own, so that stopping it reaches whatever it started.
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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
		fmt.Fprintf(stderr, "kvctl: lock %s lost (%v); stopping %s (process group %d)\n", name, l.Err(), argv[0], run.Process.Pid)
		stopGroup(run.Process.Pid, exited, killAfter, stderr)
		return fmt.Errorf("%w: %v", errLockLost, l.Err())
	case <-ctx.Done():
		stopGroup(run.Process.Pid, exited, killAfter, stderr)
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// stopGroup sends SIGTERM to process group pgid, SIGKILL if its leader has
// not exited (exited has not delivered) within grace, and waits for the
// leader to exit.
func stopGroup(pgid int, exited <-chan error, grace time.Duration, stderr io.Writer) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		// The leader is gone; make sure nothing it started lingers.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return
	case <-t.C:
	}
	fmt.Fprintf(stderr, "kvctl: process group %d still running %v after SIGTERM; sending SIGKILL\n", pgid, grace)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-exited
}

// syncWriter serialises writes to w; exec copies a command's output in a
// goroutine of its own when w is not a file.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func newElectCmd(g *globalOptions) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "elect NAME VALUE",
		Short: "Campaign to lead NAME with VALUE; print when leading, hold until interrupted",
		Long: "Waits until elected leader of NAME, publishing VALUE (readable at key elect/NAME), prints\n" +
			"the fencing token, and holds the leadership until SIGINT or SIGTERM, then resigns. Exits 5 if\n" +
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
