package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Meta is what each node gossips about itself. ID is the memberlist node
// name; the other fields travel in memberlist's node metadata, whose encoded
// form is limited to memberlist.MetaMaxSize (512) bytes.
type Meta struct {
	ID         string // node id, also the memberlist node name; required
	ThriftAddr string // client-facing Thrift address (host:port)
	RaftAddr   string // Raft transport address (host:port)
	AdminAddr  string // admin HTTP address (host:port)
	Version    string // cubekv version the node runs
}

// Validate reports whether m can be gossiped: the ID is required and the
// encoded metadata must fit memberlist's limit.
func (m Meta) Validate() error {
	if m.ID == "" {
		return fmt.Errorf("%w: meta: empty id", ErrBadConfig)
	}
	_, err := encodeMeta(m, false)
	return err
}

// Wire format of the metadata (the ID is not encoded: it is the node name):
//
//	byte 0   format version (metaVersion)
//	byte 1   flags (flagLeaving; bit 0 is reserved: it was once set by
//	         read replicas, and decoders ignore it)
//	then     ThriftAddr, RaftAddr, AdminAddr, Version, each as a uvarint
//	         length followed by the bytes
//
// Decoders ignore trailing bytes, so later versions may append fields.
const (
	metaVersion = 1
	flagLeaving = 1 << 1
)

// errBadMetaEncoding is returned when a peer's metadata cannot be decoded.
var errBadMetaEncoding = errors.New("malformed member metadata")

// encodeMeta returns the wire form of m; leaving marks a node that is
// about to leave the pool gracefully.
func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	fields := [...]string{m.ThriftAddr, m.RaftAddr, m.AdminAddr, m.Version}
	size := 2
	for _, f := range fields {
		size += uvarintLen(uint64(len(f))) + len(f)
	}
	if size > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, size, memberlist.MetaMaxSize)
	}
	buf := make([]byte, 0, size)
	var flags byte
	if leaving {
		flags |= flagLeaving
	}
	buf = append(buf, metaVersion, flags)
	for _, f := range fields {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	return buf, nil
}

// decodeMeta parses the wire form produced by encodeMeta. The returned Meta
// has an empty ID: the caller fills it from the node name.
func decodeMeta(b []byte) (m Meta, leaving bool, err error) {
	if len(b) < 2 {
		return Meta{}, false, fmt.Errorf("%w: %d bytes", errBadMetaEncoding, len(b))
	}
	if b[0] < metaVersion {
		return Meta{}, false, fmt.Errorf("%w: version %d", errBadMetaEncoding, b[0])
	}
	flags := b[1]
	rest := b[2:]
	var fields [4]string
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return Meta{}, false, fmt.Errorf("%w: field %d truncated", errBadMetaEncoding, i)
		}
		fields[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	m = Meta{
		ThriftAddr: fields[0],
		RaftAddr:   fields[1],
		AdminAddr:  fields[2],
		Version:    fields[3],
	}
	return m, flags&flagLeaving != 0, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
