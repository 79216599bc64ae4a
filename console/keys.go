package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cubekv/cubekv/server"
	"github.com/cubekv/cubekv/thrift/kv"
)

// pageSize is how many keys one /ui/api/keys page scans.
const pageSize = 100

// entryView is an entry as the page reads it: the key as text, the value as
// base64 (the page renders it as text, JSON or hex).
type entryView struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"`
	CreateIndex int64  `json:"create_index"`
	ModIndex    int64  `json:"mod_index"`
	LeaseID     int64  `json:"lease_id,omitempty"`
}

func viewOf(e *kv.Entry) *entryView {
	if e == nil {
		return nil
	}
	return &entryView{Key: string(e.Key), Value: e.Value, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex, LeaseID: e.GetLeaseID()}
}

type keysPage struct {
	Prefix       string       `json:"prefix"`
	Separator    string       `json:"separator"`
	Folders      []string     `json:"folders"`
	Keys         []*entryView `json:"keys"`
	Continuation string       `json:"continuation,omitempty"`
}

// maxScansPerPage bounds the scans one /ui/api/keys page makes: each
// folder found skips past its keys with a new scan.
const maxScansPerPage = 20

// keys answers one page of keys under prefix: keys with the separator after
// the prefix become their folder (prefix up to and including the next
// separator), and the scan then skips past the folder's keys, so a folder
// of a million keys costs one entry of the page. "after" is the previous
// page's continuation.
func (c *Console) keys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix, sep := q.Get("prefix"), q.Get("sep")
	start := []byte(q.Get("after"))
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	page := &keysPage{Prefix: prefix, Separator: sep, Folders: []string{}, Keys: []*entryView{}}
	seen := make(map[string]bool)
	for scans := 0; ; scans++ {
		if scans == maxScansPerPage || len(page.Folders)+len(page.Keys) >= pageSize {
			page.Continuation = string(start)
			break
		}
		req := &kv.ScanRequest{Prefix: nonEmpty([]byte(prefix)), StartKey: nonEmpty(start), Limit: ptr(int32(pageSize - len(page.Folders) - len(page.Keys))), KeysOnly: ptr(true)}
		resp, err := c.cfg.Backend.Scan(ctx, req)
		if err != nil {
			fail(w, statusFor(err), err)
			return
		}
		skipped := false
		for _, e := range resp.Entries {
			rest := strings.TrimPrefix(string(e.Key), prefix)
			if i := strings.Index(rest, sep); sep != "" && i >= 0 {
				f := prefix + rest[:i+len(sep)]
				if !seen[f] {
					seen[f] = true
					page.Folders = append(page.Folders, f)
				}
				// Skip the rest of the folder: the next scan starts
				// after every key with its prefix.
				if end := server.PrefixEnd([]byte(f)); end != nil {
					start, skipped = end, true
					break
				}
				continue
			}
			page.Keys = append(page.Keys, viewOf(e))
		}
		if skipped {
			continue
		}
		if resp.Continuation == nil {
			break
		}
		start = resp.Continuation
	}
	writeJSON(w, http.StatusOK, page)
}

func ptr[T any](v T) *T { return &v }

func (c *Console) getKey(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.cfg.Backend.Get(ctx, &kv.GetRequest{Key: []byte(key)})
	if err != nil {
		fail(w, statusFor(err), err)
		return
	}
	if !resp.Found {
		fail(w, http.StatusNotFound, errors.New("key not found"))
		return
	}
	writeJSON(w, http.StatusOK, viewOf(resp.Entry))
}

// writeRequest is a POST /ui/api/key body. Every write is a CAS on the mod
// index: 0 creates (the key must be absent), the index the page read edits
// or deletes it.
type writeRequest struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	ModIndex int64  `json:"mod_index"`
	Delete   bool   `json:"delete"`
}

// maxWriteBody bounds a write's body; the front door enforces its own,
// smaller, value limit.
const maxWriteBody = 8 << 20

func (c *Console) writeKey(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Writable {
		fail(w, http.StatusForbidden, errors.New("the console is read-only: start kvnode with --ui-write"))
		return
	}
	if r.Header.Get(headerWrite) == "" {
		fail(w, http.StatusForbidden, errors.New("missing "+headerWrite+" header"))
		return
	}
	var req writeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxWriteBody)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	cas := &kv.CASRequest{Key: []byte(req.Key), ExpectedModIndex: ptr(req.ModIndex)}
	if req.Delete {
		cas.Remove = ptr(true)
	} else {
		cas.Value = []byte(req.Value)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	resp, err := c.cfg.Backend.Cas(ctx, cas)
	if err != nil {
		fail(w, statusFor(err), err)
		return
	}
	out := map[string]any{"succeeded": resp.Succeeded, "index": resp.Index, "current": viewOf(resp.Current)}
	if !resp.Succeeded {
		writeJSON(w, http.StatusConflict, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

type watchEventView struct {
	Type  string     `json:"type"`
	Key   string     `json:"key"`
	Index int64      `json:"index"`
	Entry *entryView `json:"entry,omitempty"`
}

// maxWatchWait bounds one long poll (the node lowers it further to its
// --watch-max-timeout).
const maxWatchWait = 20 * time.Second

// watch is a long poll: the changes under prefix after index "after",
// waiting up to "wait" ms (at most 20 s) for the first, through the front
// door's KV.watch. "next" is the index to poll after next time. Without
// "after" it answers at once with no events and the node's applied index,
// where the page starts. A 410 means the node's history no longer reaches
// "after": the page starts again from now.
func (c *Console) watch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix := []byte(q.Get("prefix"))
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	wait := maxWatchWait
	if ms, err := strconv.ParseInt(q.Get("wait"), 10, 64); err == nil && ms > 0 && time.Duration(ms)*time.Millisecond < wait {
		wait = time.Duration(ms) * time.Millisecond
	}
	if after <= 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		resp, err := c.cfg.Backend.Scan(ctx, &kv.ScanRequest{Prefix: nonEmpty(prefix), Limit: ptr(int32(1)), KeysOnly: ptr(true)})
		if err != nil {
			fail(w, statusFor(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": []watchEventView{}, "next": resp.Info.GetAppliedIndex()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait+5*time.Second)
	defer cancel()
	// A set, empty prefix watches every key.
	req := &kv.WatchRequest{Prefix: append([]byte{}, prefix...), AfterIndex: after, TimeoutMs: ptr(int32(wait / time.Millisecond)), MaxEvents: ptr(int32(200))}
	resp, err := c.cfg.Backend.Watch(ctx, req)
	if err != nil {
		fail(w, statusFor(err), err)
		return
	}
	out := make([]watchEventView, 0, len(resp.Events))
	for _, ev := range resp.Events {
		out = append(out, watchEventView{Type: ev.Type.String(), Key: string(ev.Key), Index: ev.Index, Entry: viewOf(ev.Entry)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out, "next": resp.ResumeIndex})
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

type leaseView struct {
	ID          int64 `json:"id"`
	TTLMs       int64 `json:"ttl_ms"`
	RemainingMs int64 `json:"remaining_ms"`
	Keys        int64 `json:"keys"`
}

func (c *Console) leases(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	req := &kv.LeaseListRequest{Limit: ptr(int32(100))}
	if after > 0 {
		req.AfterID = &after
	}
	resp, err := c.cfg.Backend.ListLeases(ctx, req)
	if err != nil {
		fail(w, statusFor(err), err)
		return
	}
	out := []leaseView{}
	for _, l := range resp.Leases {
		out = append(out, leaseView{l.LeaseID, l.TTLMs, l.RemainingMs, l.KeyCount})
	}
	page := map[string]any{"leases": out}
	if resp.Continuation != nil {
		page["continuation"] = *resp.Continuation
	}
	writeJSON(w, http.StatusOK, page)
}
