package fsm

import "testing"

// A revoke's deletions are changes like any other: a watch sees each
// attached key deleted, all at the revoke's index, in ascending key order,
// and a put that detaches a key is an ordinary PUT.
func TestHistory_LeaseRevokeIsOneIndexOfDeletes(t *testing.T) {
	for _, engine := range []string{"btree", "hash", "arena"} {
		t.Run(engine, func(t *testing.T) {
			f := mustNew(t, engine)
			mustWrite(t, f, 1, grantCmd(1000))
			for i, k := range []string{"app/m", "app/c", "app/x", "app/a"} {
				mustWrite(t, f, uint64(2+i), leasePutCmd(k, "v", 1))
			}
			mustWrite(t, f, 6, putCmd("app/x", "kept")) // detached: outlives the revoke
			if w := mustWrite(t, f, 7, revokeCmd(1)); !w.Succeeded {
				t.Fatalf("revoke: %v", w)
			}
			res := mustWatchNow(t, f, WatchQuery{Start: []byte("app/"), End: []byte("app0"), After: 5})
			wantEvents(t, res.Events,
				put("app/x", "kept", 6, 4),
				del("app/a", 7), del("app/c", 7), del("app/m", 7))
			if res.Resume != 7 {
				t.Fatalf("resume %d, want 7", res.Resume)
			}
		})
	}
}
