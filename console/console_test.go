package console

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

// fakeBackend is an in-memory front door: entries by key, a CAS on the mod
// index, scans by prefix.
type fakeBackend struct {
	mu      sync.Mutex
	index   int64
	entries map[string]*kv.Entry
	cas     int
	scans   int
}

func newFake() *fakeBackend { return &fakeBackend{entries: map[string]*kv.Entry{}} }

func (f *fakeBackend) put(key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	e := &kv.Entry{Key: []byte(key), Value: []byte(value), CreateIndex: f.index, ModIndex: f.index}
	if old := f.entries[key]; old != nil {
		e.CreateIndex = old.CreateIndex
	}
	f.entries[key] = e
}

func (f *fakeBackend) Topology(context.Context) (*kv.Topology, error) {
	return &kv.Topology{}, nil
}

func (f *fakeBackend) Get(_ context.Context, r *kv.GetRequest) (*kv.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[string(r.Key)]
	return &kv.GetResponse{Found: e != nil, Entry: e, Info: &kv.ReadInfo{}}, nil
}

func (f *fakeBackend) Cas(_ context.Context, r *kv.CASRequest) (*kv.CASResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cas++
	cur := f.entries[string(r.Key)]
	var mod int64
	if cur != nil {
		mod = cur.ModIndex
	}
	if r.ExpectedModIndex == nil || *r.ExpectedModIndex != mod {
		return &kv.CASResponse{Succeeded: false, Index: f.index, Current: cur}, nil
	}
	f.index++
	if r.GetRemove() {
		delete(f.entries, string(r.Key))
		return &kv.CASResponse{Succeeded: true, Index: f.index}, nil
	}
	f.entries[string(r.Key)] = &kv.Entry{Key: r.Key, Value: r.Value, CreateIndex: f.index, ModIndex: f.index}
	return &kv.CASResponse{Succeeded: true, Index: f.index}, nil
}

// Scan pages as the front door does: keys in order from start_key within
// the prefix, at most limit, the continuation the last key plus a 0 byte.
func (f *fakeBackend) Scan(_ context.Context, r *kv.ScanRequest) (*kv.ScanResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	keys := make([]string, 0, len(f.entries))
	for k := range f.entries {
		if strings.HasPrefix(k, string(r.Prefix)) && k >= string(r.StartKey) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &kv.ScanResponse{Info: &kv.ReadInfo{AppliedIndex: f.index}}
	for _, k := range keys {
		if r.Limit != nil && len(resp.Entries) == int(*r.Limit) {
			resp.Continuation = append([]byte(resp.Entries[len(resp.Entries)-1].Key), 0)
			break
		}
		resp.Entries = append(resp.Entries, f.entries[k])
	}
	return resp, nil
}

func (f *fakeBackend) Watch(context.Context, *kv.WatchRequest) (*kv.WatchResponse, error) {
	return &kv.WatchResponse{Info: &kv.ReadInfo{}}, nil
}

func (f *fakeBackend) ListLeases(context.Context, *kv.LeaseListRequest) (*kv.LeaseListResponse, error) {
	return &kv.LeaseListResponse{}, nil
}

func do(t *testing.T, h http.Handler, method, target string, body any, header bool) *httptest.ResponseRecorder {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req := httptest.NewRequest(method, target, &buf)
	if header {
		req.Header.Set(headerWrite, "1")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	csp := rec.Header().Get("Content-Security-Policy")
	if csp != CSP || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("%s %s: Content-Security-Policy %q", method, target, csp)
	}
	return rec
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	f := newFake()
	h := New(Config{Backend: f}).Handler()
	rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a", Value: "1"}, true)
	if rec.Code != http.StatusForbidden || f.cas != 0 {
		t.Fatalf("read-only write: %d %s, %d CAS calls", rec.Code, rec.Body, f.cas)
	}
}

func TestWriteNeedsHeader(t *testing.T) {
	f := newFake()
	h := New(Config{Backend: f, Writable: true}).Handler()
	if rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a", Value: "1"}, false); rec.Code != http.StatusForbidden || f.cas != 0 {
		t.Fatalf("write without %s: %d, %d CAS calls", headerWrite, rec.Code, f.cas)
	}
}

func TestCreateEditConflict(t *testing.T) {
	f := newFake()
	h := New(Config{Backend: f, Writable: true}).Handler()
	if rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a/b", Value: "1"}, true); rec.Code != http.StatusOK {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	// Creating it again (mod index 0) conflicts: it exists.
	if rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a/b", Value: "2"}, true); rec.Code != http.StatusConflict {
		t.Fatalf("second create: %d %s", rec.Code, rec.Body)
	}
	read := f.entries["a/b"].ModIndex
	f.put("a/b", "underneath")
	rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a/b", Value: "stale edit", ModIndex: read}, true)
	var out struct {
		Succeeded bool       `json:"succeeded"`
		Current   *entryView `json:"current"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code != http.StatusConflict || out.Succeeded || out.Current == nil || string(out.Current.Value) != "underneath" {
		t.Fatalf("stale edit: %d %s", rec.Code, rec.Body)
	}
	if got := string(f.entries["a/b"].Value); got != "underneath" {
		t.Fatalf("after the stale edit the key holds %q", got)
	}
	cur := f.entries["a/b"].ModIndex
	if rec := do(t, h, "POST", "/ui/api/key", writeRequest{Key: "a/b", Delete: true, ModIndex: cur}, true); rec.Code != http.StatusOK || f.entries["a/b"] != nil {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
}

func TestKeysFolders(t *testing.T) {
	f := newFake()
	for _, k := range []string{"app/x", "app/db/host", "app/db/port", "app/web/a", "top"} {
		f.put(k, "v")
	}
	h := New(Config{Backend: f}).Handler()
	rec := do(t, h, "GET", "/ui/api/keys?prefix=app/&sep=/", nil, false)
	var page keysPage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	folders := map[string]bool{}
	for _, f := range page.Folders {
		folders[f] = true
	}
	if len(page.Folders) != 2 || !folders["app/db/"] || !folders["app/web/"] || len(page.Keys) != 1 || page.Keys[0].Key != "app/x" {
		t.Fatalf("page of app/: %s", rec.Body)
	}
	// Another separator: "." splits nothing here, every key is listed.
	rec = do(t, h, "GET", "/ui/api/keys?prefix=app/&sep=.", nil, false)
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	if len(page.Folders) != 0 || len(page.Keys) != 4 {
		t.Fatalf("page of app/ split on '.': %s", rec.Body)
	}
}

func TestStaticPageHasNoInlineScript(t *testing.T) {
	h := New(Config{Backend: newFake()}).Handler()
	rec := do(t, h, "GET", "/ui/", nil, false)
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `<script src="console.js"`) || strings.Contains(body, "<script>") || strings.Contains(body, "onclick=") || strings.Contains(body, "style=") {
		t.Fatalf("GET /ui/: %d\n%s", rec.Code, body)
	}
	if rec := do(t, h, "GET", "/ui/console.js", nil, false); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "refreshCluster") {
		t.Fatalf("GET /ui/console.js: %d", rec.Code)
	}
}

func TestParseMetricsAndQuantile(t *testing.T) {
	text := `# HELP cubekv_requests_total x
cubekv_requests_total{method="get",outcome="ok"} 10
cubekv_requests_total{method="put",outcome="ok"} 5
cubekv_request_duration_seconds_bucket{method="get",le="0.001"} 8
cubekv_request_duration_seconds_bucket{method="get",le="0.002"} 10
cubekv_request_duration_seconds_bucket{method="get",le="+Inf"} 10
cubekv_request_duration_seconds_bucket{method="put",le="0.001"} 0
cubekv_request_duration_seconds_bucket{method="put",le="0.002"} 5
cubekv_request_duration_seconds_bucket{method="put",le="+Inf"} 5
cubekv_request_duration_seconds_bucket{method="watch",le="0.001"} 0
cubekv_request_duration_seconds_bucket{method="watch",le="0.002"} 0
cubekv_request_duration_seconds_bucket{method="watch",le="+Inf"} 100
`
	total, bs, err := parseMetrics(strings.NewReader(text))
	if err != nil || total != 15 || len(bs) != 3 || bs[0].count != 8 || bs[1].count != 15 || bs[2].count != 15 {
		t.Fatalf("total %v buckets %+v err %v", total, bs, err)
	}
	// 8 of 15 under 1 ms, all under 2 ms: p99 (rank 14.85) is in the
	// second bucket, 1 ms + 1 ms * 6.85/7.
	want := 0.001 + 0.001*(14.85-8)/7
	if got := quantile(bs, 0.99); math.Abs(got-want) > 1e-9 {
		t.Fatalf("p99 %v, want %v", got, want)
	}
	if got := quantile(diffBuckets(bs, bs), 0.99); got != -1 {
		t.Fatalf("p99 of no requests: %v", got)
	}
}

// TestKeysPagesSkipFolders: a folder of many keys costs one scan and one
// entry of the page; the loose keys page with the continuation.
func TestKeysPagesSkipFolders(t *testing.T) {
	f := newFake()
	for i := 0; i < 1000; i++ {
		f.put("a/big/"+strconv.Itoa(1000+i), "v")
	}
	for i := 0; i < 150; i++ {
		f.put("a/k"+strconv.Itoa(1000+i), "v")
	}
	f.put("a/small/x", "v")
	h := New(Config{Backend: f}).Handler()
	var all []string
	folders := 0
	after := ""
	for pages := 0; ; pages++ {
		if pages == 5 {
			t.Fatalf("more than 5 pages; so far %d keys", len(all))
		}
		f.scans = 0
		rec := do(t, h, "GET", "/ui/api/keys?prefix=a/&sep=/&after="+url.QueryEscape(after), nil, false)
		var page keysPage
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		if f.scans > maxScansPerPage || len(page.Folders)+len(page.Keys) > pageSize {
			t.Fatalf("page %d: %d scans, %d entries", pages, f.scans, len(page.Folders)+len(page.Keys))
		}
		folders += len(page.Folders)
		for _, k := range page.Keys {
			all = append(all, k.Key)
		}
		if page.Continuation == "" {
			break
		}
		after = page.Continuation
	}
	if folders != 2 || len(all) != 150 || all[0] != "a/k1000" || all[149] != "a/k1149" {
		t.Fatalf("%d folders, %d keys (%v...)", folders, len(all), all[:min(3, len(all))])
	}
}
