package server

import (
	"context"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// frontDoorSeeds are valid requests, framed and binary encoded, for every
// KV and Internal method.
func frontDoorSeeds(t testing.TB) [][]byte {
	cfg := transport.TConfiguration(1<<20, 0, 0)
	encode := func(fn func(ctx context.Context, kvc *kv.KVClient, ic *kv.InternalClient)) []byte {
		buf := thrift.NewTMemoryBuffer()
		framed := thrift.NewTFramedTransportConf(buf, cfg)
		proto := thrift.NewTBinaryProtocolConf(framed, cfg)
		kvc := kv.NewKVClientProtocol(framed, proto, proto)
		mp := thrift.NewTMultiplexedProtocol(proto, transport.ServiceInternal)
		ic := kv.NewInternalClientProtocol(framed, mp, mp)
		// The calls fail reading answers from the write-only buffer; the
		// request bytes are what we want.
		fn(context.Background(), kvc, ic)
		return append([]byte(nil), buf.Bytes()...)
	}
	i64 := func(v int64) *int64 { return &v }
	eq := kv.CompareOp_EQUAL
	return [][]byte{
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestID: &kv.RequestID{ClientID: 1, Sequence: 1}})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.Get(ctx, &kv.GetRequest{Key: []byte("k")})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.Scan(ctx, &kv.ScanRequest{Prefix: []byte("k")})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(0), Value: []byte("v")})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.Txn(ctx, &kv.TxnRequest{
				Compares: []*kv.Compare{{Key: []byte("k"), Target: kv.CompareTarget_VALUE, Op: &eq, Value: []byte("v")}},
				Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("k"), Value: []byte("w")}},
				Failure:  []*kv.Op{{Type: kv.OpType_GET, Key: []byte("k")}},
			})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) {
			_, _ = k.DeleteKey(ctx, &kv.DeleteRequest{Key: []byte("k")})
		}),
		encode(func(ctx context.Context, k *kv.KVClient, _ *kv.InternalClient) { _, _ = k.Status(ctx) }),
		encode(func(ctx context.Context, _ *kv.KVClient, i *kv.InternalClient) {
			_, _ = i.Apply(ctx, &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("k"), Value: []byte("v")})
		}),
	}
}

// FuzzFrontDoor feeds raw bytes to the front door's processor as one
// connection's stream: whatever arrives, the processor answers or stops with
// an error, never panics, and the state machine only ever holds what valid
// requests put there.
func FuzzFrontDoor(f *testing.F) {
	for _, s := range frontDoorSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0x80, 0x01, 0x00, 0x01})
	cfg := transport.TConfiguration(64<<10, 0, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, s := mustHandler(t, Limits{MaxKeySize: 64, MaxValueSize: 1024, MaxTxnOps: 8, MaxScanPage: 16, MaxResponseBytes: 8 << 10})
		proc := NewProcessor(h, nil, NewInternal(h, leaderFake{s}, nil))
		in := thrift.NewTMemoryBuffer()
		_, _ = in.Write(data)
		out := thrift.NewTMemoryBuffer()
		inT := thrift.NewTFramedTransportConf(in, cfg)
		outT := thrift.NewTFramedTransportConf(out, cfg)
		iprot := thrift.NewTBinaryProtocolConf(inT, cfg)
		oprot := thrift.NewTBinaryProtocolConf(outT, cfg)
		for i := 0; i < 16; i++ {
			ok, err := proc.Process(context.Background(), iprot, oprot)
			if err != nil || !ok {
				break
			}
		}
		for _, e := range mustScanAll(t, s) {
			if len(e) > 64 {
				t.Fatalf("stored a %d-byte key past the 64-byte limit", len(e))
			}
		}
	})
}

func mustScanAll(t *testing.T, s *fakeStore) [][]byte {
	t.Helper()
	es, _, _ := s.f.Scan(nil, nil, false, 0, true)
	keys := make([][]byte, len(es))
	for i, e := range es {
		keys[i] = e.Key
	}
	return keys
}
