package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestClient_WithRequestIDRetriesAnUnknownPut: a put whose every answer is Timeout after it applied
// ends with UnknownOutcomeError; a later Put with WithRequestID of that error's id is sent with
// exactly that id, on every attempt, and gets the first application's result instead of applying
// again (the key keeps the value written in between). Delete takes the option alike.
func TestClient_WithRequestIDRetriesAnUnknownPut(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.DisableDiscovery = true })
	srv.SetHook(func(ctx context.Context, call clienttest.Call) error {
		if call.Method == "put" && string(call.Key) == "k" {
			return &clienttest.AppliedError{Err: &kv.Timeout{Reason: "commit not confirmed"}}
		}
		return nil
	})
	_, err := c.Put(testCtx(t), []byte("k"), []byte("first"))
	var unknown *client.UnknownOutcomeError
	if !errors.As(err, &unknown) {
		t.Fatalf("put: got %v, want an *UnknownOutcomeError", err)
	}
	srv.SetHook(nil)
	later, err := c.Put(testCtx(t), []byte("k"), []byte("later"))
	if err != nil {
		t.Fatalf("later put: %v", err)
	}

	before := len(srv.Calls())
	resp, err := c.Put(testCtx(t), []byte("k"), []byte("first"), client.WithRequestID(unknown.RequestID))
	if err != nil {
		t.Fatalf("retry with the request id: %v", err)
	}
	if ids := writeIDs(srv.Calls()[before:], "put"); len(ids) != 1 || ids[0] != unknown.RequestID {
		t.Fatalf("retry sent ids %v, want exactly %v", ids, unknown.RequestID)
	}
	if resp.Index >= later.Index {
		t.Fatalf("retry answered index %d, not the first application's (the later put is at %d)", resp.Index, later.Index)
	}
	if v, _ := srv.Value("k"); string(v) != "later" {
		t.Fatalf("k = %q after the retry, want %q: the retry applied again", v, "later")
	}

	id := kv.RequestID{ClientID: 77, Sequence: 3}
	before = len(srv.Calls())
	if _, err := c.Delete(testCtx(t), []byte("k"), client.WithRequestID(id)); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if ids := writeIDs(srv.Calls()[before:], "delete_key"); len(ids) != 1 || ids[0] != id {
		t.Fatalf("delete sent ids %v, want exactly %v", ids, id)
	}
}
