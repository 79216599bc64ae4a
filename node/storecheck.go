package node

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
)

// ErrCorruptStore means a file of the data directory is damaged: the node
// refuses to start on it rather than serve or replicate wrong data.
var ErrCorruptStore = errors.New("damaged data file")

// storeChecker checks one log/stable store file before it is opened. It
// must finish or give up by ctx's deadline; giving up is not damage
// (errCheckIncomplete). Each log store kind brings its own checker.
type storeChecker func(ctx context.Context, path string) error

// errCheckIncomplete means a check ran out of time before finding damage.
var errCheckIncomplete = errors.New("check did not finish in time")

// checkStore runs check on path with a time bound and turns damage into an
// ErrCorruptStore error that names the file and the way back. A check that
// runs out of time is logged by the caller and the node starts.
func checkStore(path string, timeout time.Duration, check storeChecker) error {
	if timeout < 0 {
		return nil
	}
	if timeout == 0 {
		timeout = DefaultStoreCheckTimeout
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // a new node
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := check(ctx, path)
	if err == nil || errors.Is(err, errCheckIncomplete) {
		return err
	}
	return fmt.Errorf("%w: %s failed its consistency check (%v); this node's Raft log and vote cannot be trusted: stop it, move %s aside, then remove the node from the cluster and add it back with an empty data dir (kvctl member remove/add), or restore from a backup; see docs/operations.md \"Damaged files\"", ErrCorruptStore, path, err, path)
}

// checkBolt is the storeChecker of raft-boltdb files. bbolt keeps no
// checksums on data pages, so it checks what it can, read-only: the meta
// pages (bbolt.Open verifies their checksums), that the file is as long as
// the high-water mark the meta page records (a truncated file fails here),
// and a walk of every bucket, key and value, so a damaged branch or leaf
// page panics here instead of under load. The walk runs on a goroutine of
// its own with faults turned into panics, so a page that points outside
// the file is reported, not a SIGBUS; it stops at ctx's deadline.
func checkBolt(ctx context.Context, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Until(deadline)})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("%w: file lock held", errCheckIncomplete)
		}
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("bbolt: %v", r)
			}
		}()
		done <- db.View(func(tx *bbolt.Tx) error {
			if hw := tx.Size(); fi.Size() < hw {
				return fmt.Errorf("file is %d bytes but its pages reach %d bytes: it was truncated", fi.Size(), hw)
			}
			return walkBolt(ctx, tx)
		})
	}()
	return <-done
}

// walkBolt reads every key and value of every bucket, nested ones too.
func walkBolt(ctx context.Context, tx *bbolt.Tx) error {
	n := 0
	var crc uint32
	var walk func(b *bbolt.Bucket) error
	walk = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if n++; n%256 == 0 && ctx.Err() != nil {
				return errCheckIncomplete
			}
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return walk(nb)
				}
				return nil
			}
			// Touch every byte: a value on pages past the end of the file
			// faults here.
			crc = crc32.Update(crc, crc32.IEEETable, v)
			return nil
		})
	}
	return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		return walk(b)
	})
}
