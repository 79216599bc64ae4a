package jepsenlite

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cubekv/cubekv/client"
)

// outcome is what a client learned about one operation.
type outcome string

const (
	// outcomeOK: completed; the result is known.
	outcomeOK outcome = "ok"
	// outcomeFail: certainly not applied.
	outcomeFail outcome = "fail"
	// outcomeUnknown: may or may not have been applied.
	outcomeUnknown outcome = "unknown"
)

// Operation kinds in the history.
const (
	kindRead   = "read"
	kindWrite  = "write"
	kindCAS    = "cas"
	kindDelete = "delete"
	kindAdd    = "add"
	kindIncr   = "incr"
	kindFinal  = "final-read"
)

// op is one operation of the history. Times are nanoseconds on the
// recorder's monotonic clock.
type op struct {
	Process  int     `json:"process"`
	Kind     string  `json:"kind"`
	Key      string  `json:"key"`
	Value    int64   `json:"value,omitempty"`  // write/cas: the new value; read: the value read (0 absent)
	Expect   int64   `json:"expect,omitempty"` // cas: the expected value (0 absent)
	Current  int64   `json:"current,omitempty"`
	Success  bool    `json:"success,omitempty"` // cas: the compare held; delete: the key existed
	Outcome  outcome `json:"outcome"`
	Err      string  `json:"err,omitempty"`
	Call     int64   `json:"call"`
	Return   int64   `json:"return"`
	Endpoint string  `json:"endpoint,omitempty"`
	Node     string  `json:"node,omitempty"`  // the node that served a read
	Index    int64   `json:"index,omitempty"` // an acknowledged write's Raft index (the watch check)
}

// recorder collects the history of a scenario. Safe for concurrent use.
type recorder struct {
	start time.Time // the monotonic origin of every timestamp

	// mu guards ops and nextProcess.
	mu          sync.Mutex
	ops         []op
	nextProcess int
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now reads the monotonic clock.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// process returns a fresh process id: a worker takes a new one after an
// unknown outcome, as the old one may still have an operation in flight.
func (r *recorder) process() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.nextProcess
	r.nextProcess++
	return p
}

func (r *recorder) add(o op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

// snapshot returns a copy of the history so far.
func (r *recorder) snapshot() []op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]op(nil), r.ops...)
}

// writeJSONL saves the history, one operation per line.
func (r *recorder) writeJSONL(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, o := range r.snapshot() {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// classifyWrite turns a write's error into its outcome. Only errors that say
// nothing was applied count as fail; everything else may have committed.
func classifyWrite(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, client.ErrUnknownOutcome):
		return outcomeUnknown
	case errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrNotLeader),
		errors.Is(err, client.ErrUnavailable), errors.Is(err, syscall.ECONNREFUSED):
		return outcomeFail
	default:
		// A timeout or a broken connection the client did not wrap: be conservative.
		return outcomeUnknown
	}
}

// classifyRead turns a read's error into its outcome: a read that did not
// answer has no effect either way, but a timeout is still reported as unknown.
func classifyRead(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, client.ErrTimeout):
		return outcomeUnknown
	default:
		return outcomeFail
	}
}
