package storage

import (
	"encoding/binary"
	"math/bits"
)

// A record is one key with its value and Raft indexes, encoded in the bytes
// of an arena slot:
//
//	tag | key length | value length | mod | mod-create | key | value
//
// The tag byte gives the width of each header field, which is a
// little-endian unsigned integer of as many bytes as its value needs:
//
//	bits 0-1  key length: 1, 2, 4 or 8 bytes
//	bits 2-3  value length: 1, 2, 4 or 8 bytes
//	bits 4-6  mod index: 1 to 8 bytes
//	bit  7    mod-create follows, as wide as the mod index (both take the
//	          width the larger needs); absent when create equals mod
//
// A 16-byte key with a 100-byte value at a Raft index below 2^24 takes 6
// bytes of header when it was created by the write that last changed it,
// and 9 when it was created earlier: 122 or 125 bytes in all. The whole
// header comes first, so decoding a record reads its first bytes and
// nothing else, and up to 8 bytes of header lie in the 8-aligned slot's
// first cache line; a header of up to 16 bytes is decoded from two 8-byte
// loads. Every slot and large record has at least 16 bytes
// (minRecordRead), so those loads stay inside it.

// minRecordRead is the number of bytes at the start of every slot and large
// record that decoding may read, whatever the record's length.
const minRecordRead = 16

// recordFormat is what a tag says about a record's header: its length, the
// byte offset of each field after the key length (which is at 1) and, for
// a header of up to 8 bytes, its offset in bits, and a mask of each field's
// width (0 for an absent mod-create).
type recordFormat struct {
	hdr                          uint8
	vOff, modOff, deltaOff       uint8
	vShift, modShift, deltaShift uint8
	kMask, vMask                 uint64
	modMask, deltaMask           uint64
}

// recordFormats holds the format of every tag.
var recordFormats = makeRecordFormats()

func makeRecordFormats() [256]recordFormat {
	var fs [256]recordFormat
	for t := range fs {
		kw := 1 << (t & 3)
		vw := 1 << (t >> 2 & 3)
		mw := t>>4&7 + 1
		dw := 0
		if t&0x80 != 0 {
			dw = mw
		}
		fs[t] = recordFormat{
			hdr:      uint8(1 + kw + vw + mw + dw),
			vOff:     uint8(1 + kw),
			modOff:   uint8(1 + kw + vw),
			deltaOff: uint8(1 + kw + vw + mw),
			// Shifts past the word (only in headers longer than 8 bytes,
			// or for an absent field) are cut to 63: unused or masked to 0.
			vShift:     uint8(min(8*(1+kw), 63)),
			modShift:   uint8(min(8*(1+kw+vw), 63)),
			deltaShift: uint8(min(8*(1+kw+vw+mw), 63)),
			kMask:      widthMask(kw),
			vMask:      widthMask(vw),
			modMask:    widthMask(mw),
			deltaMask:  widthMask(dw),
		}
	}
	return fs
}

// widthMask returns a mask of the low w bytes.
func widthMask(w int) uint64 {
	if w >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*w) - 1
}

// byteWidth returns the number of bytes x needs, at least 1.
func byteWidth(x uint64) int {
	return max(1, (bits.Len64(x)+7)/8)
}

// lenCode returns the tag code (width 1<<code bytes) of a length.
func lenCode(n int) int {
	switch w := byteWidth(uint64(n)); {
	case w == 1:
		return 0
	case w == 2:
		return 1
	case w <= 4:
		return 2
	default:
		return 3
	}
}

// recordTag returns the tag of a record.
func recordTag(key, value []byte, create, mod uint64) byte {
	delta := mod - create
	mw := byteWidth(mod)
	t := lenCode(len(key)) | lenCode(len(value))<<2
	if delta != 0 {
		mw = max(mw, byteWidth(delta))
		t |= 0x80
	}
	return byte(t | (mw-1)<<4)
}

// recordLen returns the encoded size of a record whose tag is t.
func recordLen(t byte, key, value []byte) int {
	return int(recordFormats[t].hdr) + len(key) + len(value)
}

// putRecord encodes a record with tag t (recordTag of the same fields)
// into dst, which must hold recordLen bytes.
func putRecord(dst []byte, t byte, key, value []byte, create, mod uint64) {
	f := &recordFormats[t]
	dst[0] = t
	putLE(dst[1:f.vOff], uint64(len(key)))
	putLE(dst[f.vOff:f.modOff], uint64(len(value)))
	putLE(dst[f.modOff:f.deltaOff], mod)
	putLE(dst[f.deltaOff:f.hdr], mod-create)
	n := int(f.hdr)
	n += copy(dst[n:], key)
	copy(dst[n:], value)
}

// putLE writes the low len(dst) bytes of x into dst, little-endian.
func putLE(dst []byte, x uint64) {
	for i := range dst {
		dst[i] = byte(x)
		x >>= 8
	}
}

// getLE reads the little-endian integer of len(src) bytes.
func getLE(src []byte) uint64 {
	var x uint64
	for i := len(src) - 1; i >= 0; i-- {
		x = x<<8 | uint64(src[i])
	}
	return x
}

// recordKey returns the key of the record that starts buf. The result
// aliases buf.
func recordKey(buf []byte) []byte {
	// One load for the tag and a key length of up to 4 bytes (the loads
	// combine only when no byte of the word was loaded on its own before).
	x := binary.LittleEndian.Uint64(buf[:8])
	t := byte(x)
	if t&3 == 3 {
		return recordKeyLong(buf)
	}
	f := &recordFormats[t]
	klen := x >> 8 & f.kMask
	return buf[f.hdr : uint64(f.hdr)+klen]
}

// recordKeyLong is recordKey for a key length of 8 bytes.
func recordKeyLong(buf []byte) []byte {
	f := &recordFormats[buf[0]]
	klen := getLE(buf[1:f.vOff])
	return buf[f.hdr : uint64(f.hdr)+klen]
}

// recordEntry decodes the record that starts buf. Key and Value alias buf,
// with their capacity capped at their length so that an append by a caller
// cannot write into the arena.
func recordEntry(buf []byte) Entry {
	key, value, create, mod := recordFields(buf)
	return Entry{Key: key, Value: value, CreateIndex: create, ModIndex: mod}
}

// recordFields is recordEntry with the entry's fields returned apart: an
// Entry is too big to live in registers, and a caller that builds it only
// where it hands it on saves copying it through the stack. A header of up
// to 8 bytes, the most common, is decoded from one load here; longer ones
// by longHeader.
func recordFields(buf []byte) (key, value []byte, create, mod uint64) {
	x := binary.LittleEndian.Uint64(buf[:8])
	f := &recordFormats[byte(x)]
	var klen, vlen, delta uint64
	if f.hdr <= 8 {
		klen = x >> 8 & f.kMask
		vlen = x >> (f.vShift & 63) & f.vMask
		mod = x >> (f.modShift & 63) & f.modMask
		delta = x >> (f.deltaShift & 63) & f.deltaMask
	} else {
		klen, vlen, mod, delta = longHeader(buf, f)
	}
	kEnd := uint64(f.hdr) + klen
	vEnd := kEnd + vlen
	return buf[f.hdr:kEnd:kEnd], buf[kEnd:vEnd:vEnd], mod - delta, mod
}

// longHeader returns the fields of a header longer than 8 bytes: from two
// loads if it has up to 16, else byte by byte.
func longHeader(buf []byte, f *recordFormat) (klen, vlen, mod, delta uint64) {
	if f.hdr > minRecordRead {
		return getLE(buf[1:f.vOff]), getLE(buf[f.vOff:f.modOff]),
			getLE(buf[f.modOff:f.deltaOff]), getLE(buf[f.deltaOff:f.hdr])
	}
	b := buf[:minRecordRead]
	x0 := binary.LittleEndian.Uint64(b[:8])
	x1 := binary.LittleEndian.Uint64(b[8:])
	return field16(x0, x1, 1) & f.kMask, field16(x0, x1, f.vOff) & f.vMask,
		field16(x0, x1, f.modOff) & f.modMask, field16(x0, x1, f.deltaOff) & f.deltaMask
}

// field16 returns the bytes from offset off (1 to 15) of the 16 bytes whose
// little-endian halves are x0 and x1, unmasked.
func field16(x0, x1 uint64, off uint8) uint64 {
	if off < 8 {
		return x0>>(8*off&63) | x1<<((64-8*off)&63)
	}
	return x1 >> (8 * (off - 8) & 63)
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
