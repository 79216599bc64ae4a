package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Log entry type bytes: the first byte of every raft.Log.Data that cubekv
// proposes. Zero is invalid.
const (
	// EntryCommand is followed by the compact-protocol encoding of one
	// kv.Command.
	EntryCommand byte = 1
	// EntryBatch is followed by the compact-protocol encoding of one
	// kv.CommandBatch.
	EntryBatch byte = 2
	// FlagIgnorable marks an entry type that a node which does not know it may
	// skip. An unknown type without this bit is a decode error (and panics
	// Apply); with it, the entry is ignored, so newer nodes can add optional
	// entry types without crashing older ones.
	FlagIgnorable byte = 0x80
)

// ErrCorruptEntry is returned by DecodeEntry for a log entry payload that is
// empty, truncated, has trailing bytes, an unknown type byte without
// FlagIgnorable, or a body that is not a valid compact-encoded struct.
var ErrCorruptEntry = errors.New("corrupt log entry")

// thriftStruct is the part of a generated Thrift struct the codec uses.
type thriftStruct interface {
	Write(ctx context.Context, p thrift.TProtocol) error
	Read(ctx context.Context, p thrift.TProtocol) error
}

// encodeStruct appends the compact encoding of s to a buffer that starts
// with prefix (which may be empty).
func encodeStruct(prefix []byte, sizeHint int, s thriftStruct) ([]byte, error) {
	buf := thrift.NewTMemoryBufferLen(len(prefix) + sizeHint)
	buf.Write(prefix)
	p := thrift.NewTCompactProtocolConf(buf, nil)
	ctx := context.Background()
	if err := s.Write(ctx, p); err != nil {
		return nil, err
	}
	if err := p.Flush(ctx); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeStruct decodes s from exactly the bytes of data: trailing bytes are
// an error. The decoded struct does not alias data.
func decodeStruct(data []byte, s thriftStruct) error {
	buf := &thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(data)}
	// A nil configuration means the library defaults. The compact reader
	// checks container sizes against the bytes that remain and grows binary
	// fields as bytes arrive, so a corrupt length cannot make it allocate
	// much more than len(data).
	p := thrift.NewTCompactProtocolConf(buf, nil)
	if err := s.Read(context.Background(), p); err != nil {
		return err
	}
	if n := buf.Len(); n != 0 {
		return fmt.Errorf("%d trailing bytes", n)
	}
	return nil
}

// EncodeCommand returns the log entry payload for one command: EntryCommand
// followed by the compact encoding of c.
func EncodeCommand(c *kv.Command) ([]byte, error) {
	if c == nil {
		return nil, errors.New("encode command: nil command")
	}
	b, err := encodeStruct([]byte{EntryCommand}, Size(c), c)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return b, nil
}

// EncodeBatch returns the log entry payload for several commands applied in
// order by one log entry: EntryBatch followed by the compact encoding of a
// kv.CommandBatch.
func EncodeBatch(cmds []*kv.Command) ([]byte, error) {
	hint := 8
	for i, c := range cmds {
		if c == nil {
			return nil, fmt.Errorf("encode batch: nil command at %d", i)
		}
		hint += Size(c)
	}
	if cmds == nil {
		cmds = []*kv.Command{}
	}
	b, err := encodeStruct([]byte{EntryBatch}, hint, &kv.CommandBatch{Commands: cmds})
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return b, nil
}

// DecodeEntry decodes a log entry payload. batch reports an EntryBatch
// payload. An unknown type byte with FlagIgnorable set decodes to no
// commands and no error: there is nothing to apply. Corrupt or unknown input
// is an error wrapping ErrCorruptEntry, never a panic. The returned commands
// do not alias data.
func DecodeEntry(data []byte) (cmds []*kv.Command, batch bool, err error) {
	if len(data) == 0 {
		return nil, false, fmt.Errorf("decode entry: empty payload: %w", ErrCorruptEntry)
	}
	switch t := data[0]; t {
	case EntryCommand:
		c := kv.NewCommand()
		if err := decodeStruct(data[1:], c); err != nil {
			return nil, false, fmt.Errorf("decode command: %v: %w", err, ErrCorruptEntry)
		}
		return []*kv.Command{c}, false, nil
	case EntryBatch:
		b := kv.NewCommandBatch()
		if err := decodeStruct(data[1:], b); err != nil {
			return nil, true, fmt.Errorf("decode batch: %v: %w", err, ErrCorruptEntry)
		}
		if b.Commands == nil {
			b.Commands = []*kv.Command{}
		}
		return b.Commands, true, nil
	default:
		if t&FlagIgnorable != 0 {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("decode entry: unknown type %d: %w", t, ErrCorruptEntry)
	}
}
