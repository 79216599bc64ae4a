package pebbleng

import (
	"encoding/binary"
	"fmt"

	"github.com/cubekv/cubekv/storage"
)

// Key prefixes of the three spaces in one pebble DB (see doc.go).
const (
	prefixState byte = 's'
	prefixMeta  byte = 'm'
	prefixKey   byte = 'k'
)

// stateKey is the pebble key of the state record.
var stateKey = []byte{prefixState}

// stateVersion is the format version in the state record.
const stateVersion byte = 1

// stateLen is the size of an encoded state record.
const stateLen = 1 + 3*8

// state is what every Commit writes beside the data.
type state struct {
	applied uint64
	len     uint64
	bytes   uint64
}

func (s state) encode() []byte {
	b := make([]byte, stateLen)
	b[0] = stateVersion
	binary.LittleEndian.PutUint64(b[1:], s.applied)
	binary.LittleEndian.PutUint64(b[9:], s.len)
	binary.LittleEndian.PutUint64(b[17:], s.bytes)
	return b
}

func decodeState(b []byte) (state, error) {
	if len(b) != stateLen {
		return state{}, fmt.Errorf("%w: state record of %d bytes, want %d", ErrCorrupt, len(b), stateLen)
	}
	if b[0] != stateVersion {
		return state{}, fmt.Errorf("%w: state record version %d, want %d", ErrCorrupt, b[0], stateVersion)
	}
	return state{
		applied: binary.LittleEndian.Uint64(b[1:]),
		len:     binary.LittleEndian.Uint64(b[9:]),
		bytes:   binary.LittleEndian.Uint64(b[17:]),
	}, nil
}

// withPrefix returns p followed by key, in a new slice.
func withPrefix(p byte, key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = p
	copy(k[1:], key)
	return k
}

// prefixEnd returns the smallest key above every key that starts with p,
// or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// keyBounds returns the pebble bounds of the user keys start <= key < end
// (nil is unbounded).
func keyBounds(start, end []byte) (lo, hi []byte) {
	lo = withPrefix(prefixKey, start)
	if end == nil {
		hi = []byte{prefixKey + 1}
	} else {
		hi = withPrefix(prefixKey, end)
	}
	return lo, hi
}

// encodeValue encodes a user key's value record: create index and mod
// index as uvarints, then the value.
func encodeValue(create, mod uint64, value []byte) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(value))
	b = binary.AppendUvarint(b, create)
	b = binary.AppendUvarint(b, mod)
	return append(b, value...)
}

// decodeEntry decodes the pebble key pk (with its prefix) and value record
// v into an entry whose slices alias pk and v, capacity capped.
func decodeEntry(pk, v []byte) (storage.Entry, error) {
	create, n := binary.Uvarint(v)
	if n <= 0 {
		return storage.Entry{}, fmt.Errorf("%w: value record: bad create index", ErrCorrupt)
	}
	mod, m := binary.Uvarint(v[n:])
	if m <= 0 {
		return storage.Entry{}, fmt.Errorf("%w: value record: bad mod index", ErrCorrupt)
	}
	val := v[n+m:]
	return storage.Entry{
		Key:         pk[1:len(pk):len(pk)],
		Value:       val[:len(val):len(val)],
		CreateIndex: create,
		ModIndex:    mod,
	}, nil
}

// copyEntry returns e with its key and value copied into one new
// allocation, capacities capped.
func copyEntry(e storage.Entry) storage.Entry {
	buf := make([]byte, len(e.Key)+len(e.Value))
	k := len(e.Key)
	copy(buf, e.Key)
	copy(buf[k:], e.Value)
	e.Key = buf[:k:k]
	e.Value = buf[k:len(buf):len(buf)]
	return e
}
