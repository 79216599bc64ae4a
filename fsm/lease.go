package fsm

import (
	"cmp"
	"errors"
	"fmt"
	"math"

	"github.com/tidwall/btree"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Leases: the replicated half. A lease is a TTL and the keys attached to
// it; its id is the Raft index of the entry that granted it, so ids are
// unique and never reused. The state machine knows no time: it records
// leases and attachments, and deletes a lease's keys when a LEASE_REVOKE
// entry says so. When a lease runs out is decided by the leader (package
// lease) and arrives here as such an entry.

// ErrLeaseNotFound is matched by the error of a command naming a lease
// that does not exist at its index (never granted, revoked or expired).
// Nothing was applied. The error is a *CommandError whose Err is a
// *LeaseNotFoundError carrying the id.
var ErrLeaseNotFound = errors.New("lease not found")

// ErrLeaseLimit is the result of a command that would exceed a lease limit
// stamped into it (max_leases, max_lease_keys). Nothing was applied.
var ErrLeaseLimit = errors.New("lease limit reached")

// LeaseNotFoundError is ErrLeaseNotFound naming the lease.
type LeaseNotFoundError struct {
	ID int64
}

func (e *LeaseNotFoundError) Error() string { return fmt.Sprintf("lease %d not found", e.ID) }

// Is makes errors.Is(err, ErrLeaseNotFound) hold.
func (e *LeaseNotFoundError) Is(target error) bool { return target == ErrLeaseNotFound }

// MaxLeaseTTL is the longest TTL Apply accepts, in milliseconds (about 34
// years): what a front door's own bound may not exceed.
const MaxLeaseTTL = 1 << 40

// Lease is one lease as the state machine records it.
type Lease struct {
	// ID is the Raft index of the entry that granted the lease.
	ID uint64
	// TTL is the lease's time to live, in milliseconds.
	TTL int64
	// Keys is the number of keys attached to it.
	Keys int
}

// leaseKey is one attachment: a key and its lease.
type leaseKey struct {
	id  uint64
	key string
}

func leaseLess(a, b Lease) bool { return a.ID < b.ID }

func leaseKeyLess(a, b leaseKey) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return a.key < b.key
}

// leaseTable is the FSM's lease state: the leases by id and the
// attachments ordered by (lease, key), both copy-on-write B-trees so a
// snapshot takes them in O(1), and the reverse index from key to lease
// (not in the snapshot: Restore rebuilds it). The FSM's mu guards it.
type leaseTable struct {
	leases   *btree.BTreeG[Lease]
	attached *btree.BTreeG[leaseKey]
	ofKey    map[string]uint64
	// dirtyLeases and dirtyKeys collect the leases granted or revoked and
	// the attachments made or undone, for a durable engine's meta records
	// (durable.go); nil otherwise. A lease's key count is not a record of
	// its own: it follows from the attachments.
	dirtyLeases map[uint64]struct{}
	dirtyKeys   map[leaseKey]struct{}
}

func newLeaseTable() *leaseTable {
	return &leaseTable{
		leases:   btree.NewBTreeGOptions(leaseLess, btree.Options{NoLocks: true}),
		attached: btree.NewBTreeGOptions(leaseKeyLess, btree.Options{NoLocks: true}),
		ofKey:    make(map[string]uint64),
	}
}

func (t *leaseTable) get(id uint64) (Lease, bool) { return t.leases.Get(Lease{ID: id}) }

// grant records lease l (with no keys).
func (t *leaseTable) grant(l Lease) {
	t.leases.Set(l)
	if t.dirtyLeases != nil {
		t.dirtyLeases[l.ID] = struct{}{}
	}
}

// revoke forgets lease id; its keys are detached first.
func (t *leaseTable) revoke(id uint64) {
	t.leases.Delete(Lease{ID: id})
	if t.dirtyLeases != nil {
		t.dirtyLeases[id] = struct{}{}
	}
}

// markKey records that attachment k was made or undone, when a durable
// engine keeps the table.
func (t *leaseTable) markKey(k leaseKey) {
	if t.dirtyKeys != nil {
		t.dirtyKeys[k] = struct{}{}
	}
}

// attach makes key's lease id (0: none), detaching it from any other.
func (t *leaseTable) attach(key []byte, id uint64) {
	old, had := t.ofKey[string(key)]
	if had && old == id || !had && id == 0 {
		return
	}
	if had {
		t.detach(key)
	}
	if id == 0 {
		return
	}
	l, ok := t.get(id)
	if !ok {
		// The op checked the lease exists before changing anything.
		panic(fmt.Sprintf("fsm: attach to lease %d, which does not exist", id))
	}
	k := string(key)
	t.ofKey[k] = id
	t.attached.Set(leaseKey{id: id, key: k})
	t.markKey(leaseKey{id: id, key: k})
	l.Keys++
	t.leases.Set(l)
}

// detach removes key from its lease, if it has one.
func (t *leaseTable) detach(key []byte) {
	id, had := t.ofKey[string(key)]
	if !had {
		return
	}
	delete(t.ofKey, string(key))
	t.attached.Delete(leaseKey{id: id, key: string(key)})
	if t.dirtyKeys != nil {
		t.markKey(leaseKey{id: id, key: string(key)})
	}
	if l, ok := t.get(id); ok {
		l.Keys--
		t.leases.Set(l)
	}
}

// keysOf returns lease id's keys in ascending order.
func (t *leaseTable) keysOf(id uint64) [][]byte {
	var keys [][]byte
	t.attached.Ascend(leaseKey{id: id}, func(k leaseKey) bool {
		if k.id != id {
			return false
		}
		keys = append(keys, []byte(k.key))
		return true
	})
	return keys
}

// Lease-aware key-space changes (called from putKey and deleteKey).

// attachKey records that key, just written, belongs to lease id (0: to
// none).
func (f *FSM) attachKey(key []byte, id uint64) { f.leases.attach(key, id) }

// detachKey records that key, just deleted, belongs to no lease.
func (f *FSM) detachKey(key []byte) { f.leases.detach(key) }

// Validation (the command table's rules for the lease fields).

func validateTTL(l Limits, field string, ttl int64) error {
	minTTL, maxTTL := cmp.Or(l.MinLeaseTTL, 1), cmp.Or(l.MaxLeaseTTL, MaxLeaseTTL)
	if ttl < minTTL || ttl > maxTTL {
		return invalid(field, "%d ms is outside the allowed %d..%d ms", ttl, minTTL, maxTTL)
	}
	return nil
}

func validateLeaseID(field string, id *int64) error {
	if id != nil && *id <= 0 {
		return invalid(field, "must be positive, got %d", *id)
	}
	return nil
}

// validatePutLease checks a PUT's lease_id and ttl_ms.
func validatePutLease(c *kv.Command, l Limits) error {
	if err := validateLeaseID("lease_id", c.LeaseID); err != nil {
		return err
	}
	if c.TTLMs != nil {
		if c.LeaseID != nil {
			return invalid("ttl_ms", "set only one of lease_id and ttl_ms")
		}
		if err := validateTTL(l, "ttl_ms", *c.TTLMs); err != nil {
			return err
		}
	}
	return validateLeaseLimits(c)
}

func validateLeaseLimits(c *kv.Command) error {
	if c.MaxLeases != nil && *c.MaxLeases < 0 {
		return invalid("max_leases", "must not be negative, got %d", *c.MaxLeases)
	}
	if c.MaxLeaseKeys != nil && *c.MaxLeaseKeys < 0 {
		return invalid("max_lease_keys", "must not be negative, got %d", *c.MaxLeaseKeys)
	}
	return nil
}

// LEASE_GRANT: ttl_ms.

func validateLeaseGrant(c *kv.Command, l Limits) error {
	if c.TTLMs == nil {
		return invalid("ttl_ms", "required")
	}
	if err := validateTTL(l, "ttl_ms", *c.TTLMs); err != nil {
		return err
	}
	return validateLeaseLimits(c)
}

// applyLeaseGrant records a lease whose id is idx.
func applyLeaseGrant(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	if err := f.checkLeaseCount(c); err != nil {
		return err
	}
	f.leases.grant(Lease{ID: idx, TTL: c.GetTTLMs()})
	res.Succeeded = true
	return nil
}

// checkLeaseCount refuses a command that would grant a lease beyond the
// max_leases stamped into it.
func (f *FSM) checkLeaseCount(c *kv.Command) error {
	if c.MaxLeases != nil && int64(f.leases.leases.Len()) >= *c.MaxLeases {
		return &CommandError{Field: "ttl_ms", Err: ErrLeaseLimit,
			Reason: fmt.Sprintf("the cluster holds %d leases, the most it allows", f.leases.leases.Len())}
	}
	return nil
}

// LEASE_REVOKE: lease_id.

func validateLeaseRevoke(c *kv.Command, _ Limits) error {
	if c.LeaseID == nil {
		return invalid("lease_id", "required")
	}
	return validateLeaseID("lease_id", c.LeaseID)
}

// applyLeaseRevoke deletes every key attached to the lease, in ascending
// key order, and then the lease. Succeeded is true.
func applyLeaseRevoke(f *FSM, idx uint64, c *kv.Command, res *kv.WriteResult_) error {
	id := uint64(c.GetLeaseID())
	if _, ok := f.leases.get(id); !ok {
		return leaseNotFound("lease_id", c.GetLeaseID())
	}
	for _, k := range f.leases.keysOf(id) {
		f.deleteKey(idx, k)
	}
	f.leases.revoke(id)
	res.Succeeded = true
	return nil
}

func leaseNotFound(field string, id int64) error {
	return &CommandError{Field: field, Reason: fmt.Sprintf("lease %d not found", id), Err: &LeaseNotFoundError{ID: id}}
}

// leasePut is a key a command would attach to a lease.
type leasePut struct {
	field string
	key   []byte
	id    uint64
}

// checkLeasePuts refuses, before anything changes, puts naming a lease
// that does not exist or that would take a lease beyond max (the stamped
// max_lease_keys; nil: no limit). A key counts once per lease, and not at
// all when it is attached to that lease already.
func (f *FSM) checkLeasePuts(puts []leasePut, max *int64) error {
	added := map[uint64]map[string]bool{}
	for _, p := range puts {
		if p.id == 0 {
			continue
		}
		l, ok := f.leases.get(p.id)
		if !ok {
			return leaseNotFound(p.field, int64(p.id))
		}
		if max == nil || f.leases.ofKey[string(p.key)] == p.id || added[p.id][string(p.key)] {
			continue
		}
		if added[p.id] == nil {
			added[p.id] = map[string]bool{}
		}
		added[p.id][string(p.key)] = true
		if n := int64(l.Keys + len(added[p.id])); n > *max {
			return &CommandError{Field: p.field, Err: ErrLeaseLimit,
				Reason: fmt.Sprintf("lease %d would hold %d keys, more than the %d allowed", p.id, n, *max)}
		}
	}
	return nil
}

// putLease checks a PUT's or CAS_PUT's lease and, for a PUT with ttl_ms,
// grants the key a lease of its own at idx. It returns the lease to attach
// the key to (0: none); on error nothing changed.
func (f *FSM) putLease(idx uint64, c *kv.Command) (uint64, error) {
	if c.TTLMs != nil {
		if err := f.checkLeaseCount(c); err != nil {
			return 0, err
		}
		f.leases.grant(Lease{ID: idx, TTL: *c.TTLMs})
		return idx, nil
	}
	id := uint64(c.GetLeaseID())
	if err := f.checkLeasePuts([]leasePut{{"lease_id", c.Key, id}}, c.MaxLeaseKeys); err != nil {
		return 0, err
	}
	return id, nil
}

// txnLeasePuts returns the PUT ops of ops that name a lease.
func txnLeasePuts(name string, ops []*kv.Op) []leasePut {
	var puts []leasePut
	for i, op := range ops {
		if op.Type == kv.OpType_PUT && op.LeaseID != nil {
			puts = append(puts, leasePut{fmt.Sprintf("%s[%d].lease_id", name, i), op.Key, uint64(*op.LeaseID)})
		}
	}
	return puts
}

// usesLeases reports whether c attaches keys to leases or grants one: only
// then are the lease limits stamped into it.
func usesLeases(c *kv.Command) bool {
	if c.Op == kv.CommandOp_LEASE_GRANT || c.LeaseID != nil && c.Op != kv.CommandOp_LEASE_REVOKE || c.TTLMs != nil {
		return true
	}
	for _, b := range txnBranches(c) {
		for _, op := range b.ops {
			if op != nil && op.LeaseID != nil {
				return true
			}
		}
	}
	return false
}

// stampLease lowers c's lease limits to l's, when c uses leases.
func stampLease(c *kv.Command, l Limits) {
	if !usesLeases(c) {
		return
	}
	lower := func(have **int64, limit int) {
		if limit <= 0 {
			return
		}
		if v := int64(limit); *have == nil || **have > v {
			*have = &v
		}
	}
	lower(&c.MaxLeases, l.MaxLeases)
	lower(&c.MaxLeaseKeys, l.MaxLeaseKeys)
}

// stampTxnLease stamps a TXN's answer budget and lease limits.
func stampTxnLease(c *kv.Command, l Limits) {
	stampTxn(c, l)
	stampLease(c, l)
}

func sizeLease(*kv.Command) int { return commandOverhead }

// Reads of the lease state.

// Lease returns lease id, whether it exists, and the applied index the
// answer reflects.
func (f *FSM) Lease(id uint64) (l Lease, ok bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l, ok = f.leases.get(id)
	return l, ok, f.applied.Load()
}

// LeaseKeys returns up to limit (<= 0: all) of lease id's keys in
// ascending order.
func (f *FSM) LeaseKeys(id uint64, limit int) [][]byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var keys [][]byte
	f.leases.attached.Ascend(leaseKey{id: id}, func(k leaseKey) bool {
		if k.id != id || limit > 0 && len(keys) == limit {
			return false
		}
		keys = append(keys, []byte(k.key))
		return true
	})
	return keys
}

// Leases returns up to limit (<= 0: all) leases with ids above after, in
// ascending id order, whether more remain, and the applied index the
// answer reflects.
func (f *FSM) Leases(after uint64, limit int) (leases []Lease, more bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if after < math.MaxUint64 {
		f.leases.leases.Ascend(Lease{ID: after + 1}, func(l Lease) bool {
			if limit > 0 && len(leases) == limit {
				more = true
				return false
			}
			leases = append(leases, l)
			return true
		})
	}
	return leases, more, f.applied.Load()
}

// LeaseCount returns the number of leases.
func (f *FSM) LeaseCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.leases.leases.Len()
}

// KeyLease returns the lease key is attached to, 0 when none.
func (f *FSM) KeyLease(key []byte) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.leases.ofKey[string(key)]
}

// Snapshot section (format version 3, after the members table; see doc.go).

// maxSnapshotLeases bounds the lease count Restore accepts.
const maxSnapshotLeases = 1 << 32

// writeLeases writes the lease count, then each lease in ascending id
// order: id, TTL, key count and its keys in ascending order.
func (s *fsmSnapshot) writeLeases(w *snapshotWriter) {
	w.u64(uint64(s.leases.Len()))
	s.leases.Scan(func(l Lease) bool {
		w.uvarint(l.ID)
		w.uvarint(uint64(l.TTL))
		w.uvarint(uint64(l.Keys))
		n := 0
		s.leaseKs.Ascend(leaseKey{id: l.ID}, func(k leaseKey) bool {
			if k.id != l.ID {
				return false
			}
			w.uvarint(uint64(len(k.key)))
			w.write([]byte(k.key))
			n++
			return w.err == nil
		})
		if w.err == nil && n != l.Keys {
			w.err = fmt.Errorf("lease %d has %d keys attached, counts %d", l.ID, n, l.Keys)
		}
		return w.err == nil
	})
}

// readLeases reads the lease section into t. Ids must be strictly
// ascending and at most the applied index; each lease's keys strictly
// ascending, present in eng, and attached to no other lease.
func readLeases(r *snapshotReader, eng storage.Engine, applied uint64, t *leaseTable) error {
	count, err := r.u64()
	if err != nil {
		return corrupt("read lease count", err)
	}
	if count > maxSnapshotLeases {
		return fmt.Errorf("lease count %d out of range: %w", count, ErrCorruptSnapshot)
	}
	var prev uint64
	for i := uint64(0); i < count; i++ {
		id, err := r.uvarint()
		if err != nil {
			return corrupt(fmt.Sprintf("lease %d: read id", i), err)
		}
		ttl, err := r.uvarint()
		if err != nil {
			return corrupt(fmt.Sprintf("lease %d: read ttl", i), err)
		}
		nkeys, err := r.uvarint()
		if err != nil {
			return corrupt(fmt.Sprintf("lease %d: read key count", i), err)
		}
		if id == 0 || id <= prev || id > applied || ttl == 0 || ttl > MaxLeaseTTL || nkeys > uint64(eng.Len()) {
			return fmt.Errorf("lease %d: id %d ttl %d keys %d out of range: %w", i, id, ttl, nkeys, ErrCorruptSnapshot)
		}
		prev = id
		t.leases.Set(Lease{ID: id, TTL: int64(ttl)})
		var last []byte
		for j := uint64(0); j < nkeys; j++ {
			klen, err := r.uvarint()
			if err != nil {
				return corrupt(fmt.Sprintf("lease %d: read key length", id), err)
			}
			if klen == 0 || klen > maxSnapshotKey {
				return fmt.Errorf("lease %d: key length %d out of range: %w", id, klen, ErrCorruptSnapshot)
			}
			key, err := r.bytes(klen)
			if err != nil {
				return corrupt(fmt.Sprintf("lease %d: read key", id), err)
			}
			if last != nil && string(last) >= string(key) {
				return fmt.Errorf("lease %d: keys out of order: %w", id, ErrCorruptSnapshot)
			}
			if _, ok := eng.Get(key); !ok {
				return fmt.Errorf("lease %d: attached key is not in the snapshot: %w", id, ErrCorruptSnapshot)
			}
			if _, dup := t.ofKey[string(key)]; dup {
				return fmt.Errorf("lease %d: key attached to two leases: %w", id, ErrCorruptSnapshot)
			}
			t.attach(key, id)
			last = key
		}
	}
	return nil
}

// GetLeased is Get, also returning the lease the key is attached to (0:
// none) as of the same index.
func (f *FSM) GetLeased(key []byte) (e storage.Entry, found bool, lease, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, found = f.engine.Get(key)
	if found {
		lease = f.leases.ofKey[string(key)]
	}
	return e, found, lease, f.applied.Load()
}

// ScanLeased is Scan, also returning each entry's lease (0: none) as of
// the same index; leases is nil when no entry has one.
func (f *FSM) ScanLeased(start, end []byte, reverse bool, limit int, keysOnly bool) (entries []storage.Entry, leases []uint64, more bool, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	entries, more, applied = f.scanLocked(start, end, reverse, limit, keysOnly)
	if len(f.leases.ofKey) == 0 {
		return entries, nil, more, applied
	}
	for i, e := range entries {
		if id, ok := f.leases.ofKey[string(e.Key)]; ok {
			if leases == nil {
				leases = make([]uint64, len(entries))
			}
			leases[i] = id
		}
	}
	return entries, leases, more, applied
}
