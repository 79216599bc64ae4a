package storage_test

import (
	"testing"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/storagetest"
)

// decodeOps turns fuzz input into an op sequence. Each op takes one byte for
// its kind (low four bits) and flags (high bits: same index or reverse, scan
// limit), then what it needs: keys and bounds are one byte each (see
// decodeKey), a value is a length byte (0-15) and that many bytes.
// Input that runs out ends the sequence, and so does reaching maxFuzzOps,
// which keeps every run short however long the fuzzer makes its input.
func decodeOps(data []byte) []storagetest.Op {
	const maxFuzzOps = 256
	var ops []storagetest.Op
	next := func() (byte, bool) {
		if len(data) == 0 {
			return 0, false
		}
		b := data[0]
		data = data[1:]
		return b, true
	}
	for len(ops) < maxFuzzOps {
		h, ok := next()
		if !ok {
			return ops
		}
		var op storagetest.Op
		switch h % 16 {
		case 0, 1, 2, 3, 4, 5:
			k, ok1 := next()
			n, ok2 := next()
			if !ok1 || !ok2 {
				return ops
			}
			n %= 16
			if int(n) > len(data) {
				return ops
			}
			op = storagetest.Op{Kind: storagetest.OpPut, Key: decodeKey(k), Value: data[:n:n], SameIndex: h&0x80 != 0}
			data = data[n:]
		case 6, 7, 8:
			k, ok := next()
			if !ok {
				return ops
			}
			op = storagetest.Op{Kind: storagetest.OpDelete, Key: decodeKey(k), SameIndex: h&0x80 != 0}
		case 9, 10:
			k, ok := next()
			if !ok {
				return ops
			}
			op = storagetest.Op{Kind: storagetest.OpGet, Key: decodeKey(k)}
		case 11, 12, 13:
			s, ok1 := next()
			e, ok2 := next()
			if !ok1 || !ok2 {
				return ops
			}
			op = storagetest.Op{Kind: storagetest.OpScan, Start: decodeBound(s), End: decodeBound(e),
				Reverse: h&0x80 != 0, Limit: int(h>>4) & 0x7}
		case 14:
			op = storagetest.Op{Kind: storagetest.OpSnapshot}
		default:
			op = storagetest.Op{Kind: storagetest.OpCheckViews}
		}
		ops = append(ops, op)
	}
	return ops
}

// decodeKey maps a byte to one of 40 keys of up to three bytes over the
// alphabet {0x00, 'a', 0xff} (the empty key included), so ops collide often.
func decodeKey(b byte) []byte {
	const alphabet = "\x00a\xff"
	n := int(b) % 40
	var k []byte
	for n > 0 {
		n--
		k = append(k, alphabet[n%3])
		n /= 3
	}
	if k == nil {
		return []byte{}
	}
	return k
}

// decodeBound is decodeKey, except that a byte >= 0xF0 is an unbounded
// (nil) bound.
func decodeBound(b byte) []byte {
	if b >= 0xF0 {
		return nil
	}
	return decodeKey(b)
}

// FuzzEngine applies decoded op sequences to every engine (the arena with
// both of its chunk sources) and checks each against the reference model.
func FuzzEngine(f *testing.F) {
	// put a=xy, scan all, delete a, snapshot, put a=z, reverse scan with
	// limit 1, check views.
	f.Add([]byte{0, 1, 2, 'x', 'y', 11, 0xff, 0xff, 6, 1, 14, 0, 1, 1, 'z', 0x9b, 0xff, 0xff, 15})
	// put ""="", put ""=q at the same index, delete "", bounded scans, views.
	f.Add([]byte{0, 0, 0, 0x80, 0, 1, 'q', 6, 0, 11, 0, 0xf0, 14, 11, 3, 0, 15})
	// snapshot first, then deletes, gets and puts of several keys.
	f.Add([]byte{14, 15, 6, 1, 1, 2, 2, 'b', 'c', 9, 39, 2, 39, 0, 0x8b, 0xf0, 0x10, 15})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := decodeOps(data)
		for _, kind := range storage.Kinds {
			if err := storagetest.Check(mustNew(t, kind), ops); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
		}
		if err := storagetest.Check(storage.NewArenaMmap(), ops); err != nil {
			t.Fatalf("arena (mmap): %v", err)
		}
	})
}
