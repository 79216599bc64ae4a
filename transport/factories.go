// Thrift protocol and transport factories, shared by the server and the clients.

package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
)

// Names accepted by NewTransportFactory and NewProtocolFactory (and so by ServerConfig and DialConfig).
const (
	// TransportFramed prefixes every message with its 4-byte big-endian length. The default.
	TransportFramed = "framed"
	// TransportBuffered sends messages back to back with no length prefix.
	TransportBuffered = "buffered"
	// ProtocolBinary is Thrift's binary protocol (strict: every message carries a version). The default.
	ProtocolBinary = "binary"
	// ProtocolCompact is Thrift's compact protocol.
	ProtocolCompact = "compact"
)

const (
	// bufferedTransportSize is the read and write buffer of the buffered transport, in bytes.
	bufferedTransportSize = 8 << 10
)

var (
	// ErrUnknownProtocol is returned for a Thrift protocol name other than "binary" or "compact".
	ErrUnknownProtocol = errors.New("unknown thrift protocol")
	// ErrUnknownTransport is returned for a Thrift transport name other than "framed" or "buffered".
	ErrUnknownTransport = errors.New("unknown thrift transport")
)

// TConfiguration returns the Thrift configuration cubekv uses on both ends of a connection: frames and
// messages up to maxFrame bytes (0 means DefaultMaxFrameSize), strict binary reads and writes (every
// message carries a protocol version, so stray bytes are refused at once), and the given connect and
// socket timeouts (0: none; the server manages its own deadlines and passes 0).
func TConfiguration(maxFrame int32, connectTimeout, socketTimeout time.Duration) *thrift.TConfiguration {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameSize
	}
	return &thrift.TConfiguration{
		MaxMessageSize:     maxFrame,
		MaxFrameSize:       maxFrame,
		ConnectTimeout:     connectTimeout,
		SocketTimeout:      socketTimeout,
		TBinaryStrictRead:  thrift.BoolPtr(true),
		TBinaryStrictWrite: thrift.BoolPtr(true),
	}
}

// NewProtocolFactory returns the factory for protocol ("binary", or "" for it, or "compact") bound to
// cfg (nil: TConfiguration(0, 0, 0)). Any other name is ErrUnknownProtocol.
func NewProtocolFactory(protocol string, cfg *thrift.TConfiguration) (thrift.TProtocolFactory, error) {
	if cfg == nil {
		cfg = TConfiguration(0, 0, 0)
	}
	switch protocol {
	case "", ProtocolBinary:
		return thrift.NewTBinaryProtocolFactoryConf(cfg), nil
	case ProtocolCompact:
		return thrift.NewTCompactProtocolFactoryConf(cfg), nil
	default:
		return nil, fmt.Errorf("protocol %q: %w", protocol, ErrUnknownProtocol)
	}
}

// NewTransportFactory returns the factory for transport ("framed", or "" for it, or "buffered") bound
// to cfg (nil: TConfiguration(0, 0, 0)). Any other name is ErrUnknownTransport.
func NewTransportFactory(transport string, cfg *thrift.TConfiguration) (thrift.TTransportFactory, error) {
	if cfg == nil {
		cfg = TConfiguration(0, 0, 0)
	}
	switch transport {
	case "", TransportFramed:
		// Frames are written through a small buffer, so a frame's 4-byte
		// header and a small body leave in one write(2) rather than two.
		return thrift.NewTFramedTransportFactoryConf(writeCoalescingFactory{}, cfg), nil
	case TransportBuffered:
		return thrift.TTransportFactoryConf(thrift.NewTBufferedTransportFactory(bufferedTransportSize), cfg), nil
	default:
		return nil, fmt.Errorf("transport %q: %w", transport, ErrUnknownTransport)
	}
}

// frameWriteBuffer is the write buffer under a framed transport: a frame
// header and a typical answer fit in it.
const frameWriteBuffer = 1 << 10

// writeCoalescingFactory wraps transports in writeCoalescing.
type writeCoalescingFactory struct{}

func (writeCoalescingFactory) GetTransport(t thrift.TTransport) (thrift.TTransport, error) {
	return &writeCoalescing{TTransport: t, w: bufio.NewWriterSize(t, frameWriteBuffer)}, nil
}

// writeCoalescing buffers writes (only) until Flush; reads go straight
// through, since the framed transport above buffers them already.
type writeCoalescing struct {
	thrift.TTransport
	w *bufio.Writer
}

func (c *writeCoalescing) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *writeCoalescing) Flush(ctx context.Context) error {
	if err := c.w.Flush(); err != nil {
		return thrift.NewTTransportExceptionFromError(err)
	}
	return c.TTransport.Flush(ctx)
}
