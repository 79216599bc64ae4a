package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/transport"
)

// BenchmarkConn_Call is one put round trip on one connection, with a caller
// deadline sooner than the RequestTimeout (as every client call has): the
// client's CPU and allocations per call, the fake server's included.
func BenchmarkConn_Call(b *testing.B) {
	srv := clienttest.NewServer(b, "n1")
	c, err := transport.Dial(context.Background(), srv.Addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	call := putCall("k")
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := c.Call(ctx, call); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}
