package storage

import (
	"bytes"
	"fmt"
	"math"
	"testing"
)

// encodeInSlot encodes a record the way the arena does, into a buffer of at
// least minRecordRead bytes (as every slot has) whose bytes past the record
// are garbage, and returns it.
func encodeInSlot(key, value []byte, create, mod uint64) []byte {
	t := recordTag(key, value, create, mod)
	n := recordLen(t, key, value)
	buf := bytes.Repeat([]byte{0xa5}, max(n, minRecordRead))
	putRecord(buf[:n], t, key, value, create, mod)
	return buf
}

func TestRecord_RoundTrip(t *testing.T) {
	type rec struct {
		klen, vlen  int
		create, mod uint64
	}
	var cases []rec
	for _, klen := range []int{0, 1, 16, 255, 256, 4096, 65536} {
		for _, vlen := range []int{0, 3, 100, 255, 256, 65535, 65536} {
			for _, idx := range [][2]uint64{
				{1, 1}, {0, 0}, {5, 9}, {9, 5}, // create after mod decodes too
				{1, 1<<24 - 1}, {1 << 24, 1 << 24}, {1, 1 << 40},
				{0, math.MaxUint64}, {math.MaxUint64, math.MaxUint64}, {math.MaxUint64, 0},
			} {
				cases = append(cases, rec{klen, vlen, idx[0], idx[1]})
			}
		}
	}
	for _, c := range cases {
		key := bytes.Repeat([]byte{'k'}, c.klen)
		value := bytes.Repeat([]byte{'v'}, c.vlen)
		if c.klen > 0 {
			key[c.klen-1] = 'K'
		}
		buf := encodeInSlot(key, value, c.create, c.mod)
		name := fmt.Sprintf("key %d, value %d, create %d, mod %d", c.klen, c.vlen, c.create, c.mod)
		if got := recordKey(buf); !bytes.Equal(got, key) {
			t.Fatalf("%s: recordKey = %q", name, got)
		}
		e := recordEntry(buf)
		if !bytes.Equal(e.Key, key) || !bytes.Equal(e.Value, value) || e.CreateIndex != c.create || e.ModIndex != c.mod {
			t.Fatalf("%s: decoded key %d bytes, value %d bytes, create %d, mod %d",
				name, len(e.Key), len(e.Value), e.CreateIndex, e.ModIndex)
		}
		if cap(e.Key) != len(e.Key) || cap(e.Value) != len(e.Value) {
			t.Fatalf("%s: capacities %d and %d, want the lengths", name, cap(e.Key), cap(e.Value))
		}
	}
}

// The header sizes record.go and doc.go give, and the one-load case.
func TestRecord_HeaderSize(t *testing.T) {
	key, value := make([]byte, 16), make([]byte, 100)
	for _, c := range []struct {
		create, mod uint64
		want        int
	}{
		{1<<24 - 1, 1<<24 - 1, 122}, // created by its last write
		{1, 1<<24 - 1, 125},         // created earlier
		{1 << 24, 1 << 24, 123},     // an index of 4 bytes
	} {
		if got := recordLen(recordTag(key, value, c.create, c.mod), key, value); got != c.want {
			t.Errorf("recordLen(16-byte key, 100-byte value, create %d, mod %d) = %d, want %d", c.create, c.mod, got, c.want)
		}
	}
	if classSizes[0] < minRecordRead {
		t.Errorf("smallest slot %d bytes, decoding may read %d", classSizes[0], minRecordRead)
	}
	if hdr := recordFormats[encodeInSlot(key, value, 7, 7)[0]].hdr; hdr > 8 {
		t.Errorf("header of a fresh small record = %d bytes, want at most 8", hdr)
	}
}

// A header the encoder does not write (a key length in 8 bytes) still
// decodes, through the paths for long headers.
func TestRecord_WideKeyLength(t *testing.T) {
	buf := bytes.Repeat([]byte{0xa5}, minRecordRead)
	buf[0] = 0x03 // key length in 8 bytes, value length and mod in 1
	putLE(buf[1:9], 3)
	buf[9] = 2
	buf[10] = 7
	copy(buf[11:], "abcxy")
	if got := recordKey(buf); string(got) != "abc" {
		t.Fatalf("recordKey = %q, want abc", got)
	}
	e := recordEntry(buf)
	if string(e.Key) != "abc" || string(e.Value) != "xy" || e.CreateIndex != 7 || e.ModIndex != 7 {
		t.Fatalf("recordEntry = %q=%q create %d mod %d, want abc=xy 7 7", e.Key, e.Value, e.CreateIndex, e.ModIndex)
	}
}
