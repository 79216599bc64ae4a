package storage

import "encoding/binary"

// A record is one key with its value and Raft indexes, encoded in the bytes
// of an arena slot:
//
//	uvarint len(key) | key | uvarint len(value) | uvarint mod | varint mod-create | value
//
// The key comes first so that comparing two records decodes one varint and
// nothing else. A 16-byte key with a 100-byte value at a Raft index below
// 2^21 takes 6 bytes of header: 122 bytes in all.

// recordLen returns the encoded size of a record.
func recordLen(key, value []byte, create, mod uint64) int {
	return uvarintLen(uint64(len(key))) + len(key) +
		uvarintLen(uint64(len(value))) + uvarintLen(mod) +
		uvarintLen(zigzag(int64(mod-create))) + len(value)
}

// putRecord encodes a record into dst, which must hold recordLen bytes.
func putRecord(dst, key, value []byte, create, mod uint64) {
	n := binary.PutUvarint(dst, uint64(len(key)))
	n += copy(dst[n:], key)
	n += binary.PutUvarint(dst[n:], uint64(len(value)))
	n += binary.PutUvarint(dst[n:], mod)
	n += binary.PutVarint(dst[n:], int64(mod-create))
	copy(dst[n:], value)
}

// recordKey returns the key of the record that starts buf. The result
// aliases buf.
func recordKey(buf []byte) []byte {
	klen, n := uvarint(buf)
	return buf[n : n+int(klen)]
}

// recordEntry decodes the record that starts buf. Key and Value alias buf,
// with their capacity capped at their length so that an append by a caller
// cannot write into the arena.
func recordEntry(buf []byte) Entry {
	klen, n := uvarint(buf)
	key := buf[n : n+int(klen) : n+int(klen)]
	buf = buf[n+int(klen):]
	vlen, n := uvarint(buf)
	buf = buf[n:]
	mod, n := uvarint(buf)
	buf = buf[n:]
	delta, n := binary.Varint(buf)
	buf = buf[n:]
	return Entry{Key: key, Value: buf[:vlen:vlen], CreateIndex: mod - uint64(delta), ModIndex: mod}
}

// uvarint decodes a uvarint written by putRecord, with a fast path for the
// one-byte lengths most keys have.
func uvarint(buf []byte) (uint64, int) {
	if buf[0] < 0x80 {
		return uint64(buf[0]), 1
	}
	return binary.Uvarint(buf)
}

// uvarintLen returns the number of bytes binary.PutUvarint writes for x.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// zigzag maps a signed varint's value to the unsigned one binary.PutVarint
// encodes.
func zigzag(x int64) uint64 {
	return uint64(x<<1) ^ uint64(x>>63)
}

// copyEntry copies e's key and value into buf (which must have room for
// both) and returns the copy and what is left of buf. The copy's slices are
// capped so that an append by a caller cannot spill into the next entry.
func copyEntry(e Entry, buf []byte) (Entry, []byte) {
	k := len(e.Key)
	n := k + len(e.Value)
	copy(buf, e.Key)
	copy(buf[k:], e.Value)
	out := Entry{Key: buf[:k:k], Value: buf[k:n:n], CreateIndex: e.CreateIndex, ModIndex: e.ModIndex}
	return out, buf[n:]
}

// cloneEntry copies e into one new allocation.
func cloneEntry(e Entry) Entry {
	out, _ := copyEntry(e, make([]byte, len(e.Key)+len(e.Value)))
	return out
}
