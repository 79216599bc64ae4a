package storagetest

// DecodeOps turns fuzz input into an op sequence, for the fuzz targets of
// every engine (storage's own and storage/pebbleng's). Each op takes
// one byte for its kind (low four bits) and flags (high bits: same index or reverse, scan
// limit), then what it needs: keys and bounds are one byte each (see
// decodeKey), a value is a length byte (0-15) and that many bytes.
// Input that runs out ends the sequence, and so does reaching maxFuzzOps,
// which keeps every run short however long the fuzzer makes its input.
func DecodeOps(data []byte) []Op {
	const maxFuzzOps = 256
	var ops []Op
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
		var op Op
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
			op = Op{Kind: OpPut, Key: decodeKey(k), Value: data[:n:n], SameIndex: h&0x80 != 0}
			data = data[n:]
		case 6, 7, 8:
			k, ok := next()
			if !ok {
				return ops
			}
			op = Op{Kind: OpDelete, Key: decodeKey(k), SameIndex: h&0x80 != 0}
		case 9, 10:
			k, ok := next()
			if !ok {
				return ops
			}
			op = Op{Kind: OpGet, Key: decodeKey(k)}
		case 11, 12, 13:
			s, ok1 := next()
			e, ok2 := next()
			if !ok1 || !ok2 {
				return ops
			}
			op = Op{Kind: OpScan, Start: decodeBound(s), End: decodeBound(e),
				Reverse: h&0x80 != 0, Limit: int(h>>4) & 0x7}
		case 14:
			op = Op{Kind: OpSnapshot}
		default:
			op = Op{Kind: OpCheckViews}
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
