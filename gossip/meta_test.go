package gossip

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMeta_RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		meta    Meta
		leaving bool
	}{
		{"empty", Meta{}, false},
		{"full", Meta{ThriftAddr: "10.0.0.1:9090", RaftAddr: "10.0.0.1:7000", AdminAddr: "10.0.0.1:8080", Version: "v1.2.3"}, false},
		{"leaving", Meta{ThriftAddr: "[::1]:9090", Version: "v1"}, true},
		{"long field", Meta{Version: strings.Repeat("x", 300)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeMeta(tc.meta, tc.leaving)
			if err != nil {
				t.Fatal(err)
			}
			got, leaving, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.meta || leaving != tc.leaving {
				t.Fatalf("decode(encode(%+v, %v)) = %+v, %v", tc.meta, tc.leaving, got, leaving)
			}
			// Later versions may append fields: trailing bytes are ignored.
			got, _, err = decodeMeta(append(b, 7, 'e', 'x', 't', 'r', 'a', '!', '!'))
			if err != nil || got != tc.meta {
				t.Fatalf("decode with trailing bytes = %+v, %v", got, err)
			}
		})
	}
}

func TestMeta_TooLarge(t *testing.T) {
	// 2 header bytes, three empty fields (1 byte each), a 2-byte length.
	fits := Meta{ID: "n1", Version: strings.Repeat("v", memberlist.MetaMaxSize-7)}
	b, err := encodeMeta(fits, true)
	if err != nil || len(b) != memberlist.MetaMaxSize {
		t.Fatalf("encode at the limit: %d bytes, %v; want %d, nil", len(b), err, memberlist.MetaMaxSize)
	}
	big := fits
	big.Version += "v"
	if err := big.Validate(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Validate(%d+1 bytes): err = %v, want ErrMetaTooLarge", memberlist.MetaMaxSize, err)
	}

	log := newTestLogger(t)
	cfg := testConfig(t, log, "n1")
	cfg.Meta.Version = big.Version
	if _, err := New(cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("New with large meta: err = %v, want ErrMetaTooLarge", err)
	}
}

// Bit 0 of the flags byte was set by read replicas of earlier versions;
// their metadata still decodes, and the bit means nothing now.
func TestMeta_DecodeIgnoresReservedFlag(t *testing.T) {
	want := Meta{ThriftAddr: "10.0.0.1:9090", Version: "v1"}
	b, err := encodeMeta(want, false)
	if err != nil {
		t.Fatal(err)
	}
	b[1] |= 1 << 0
	got, leaving, err := decodeMeta(b)
	if err != nil || got != want || leaving {
		t.Fatalf("decode with bit 0 set = %+v, %v, %v; want %+v, false, nil", got, leaving, err, want)
	}
}

func TestMeta_DecodeMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"one byte", []byte{1}},
		{"version zero", []byte{0, 0, 0, 0, 0, 0}},
		{"missing fields", []byte{1, 0, 0}},
		{"length past end", []byte{1, 0, 5, 'a'}},
		{"huge length", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"bad varint", []byte{1, 0, 0x80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeMeta(tc.b); !errors.Is(err, errBadMetaEncoding) {
				t.Fatalf("err = %v, want errBadMetaEncoding", err)
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	good, _ := encodeMeta(Meta{ThriftAddr: "a:1", RaftAddr: "b:2", AdminAddr: "c:3", Version: "v"}, true)
	f.Add(good)
	f.Add([]byte{1, 0, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, leaving, err := decodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a prefix-compatible form.
		b2, err := encodeMeta(m, leaving)
		if err != nil {
			return // a peer may send more than we would
		}
		m2, leaving2, err := decodeMeta(b2)
		if err != nil || m2 != m || leaving2 != leaving {
			t.Fatalf("re-decode = %+v, %v, %v; want %+v, %v", m2, leaving2, err, m, leaving)
		}
	})
}

func TestConfig_Validate(t *testing.T) {
	valid := func() *Config {
		c := DefaultConfig()
		c.Meta = Meta{ID: "n1"}
		c.BindAddr = "127.0.0.1:7946"
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   error // nil: valid
	}{
		{"bind 0.0.0.0 with advertise", func(c *Config) { c.BindAddr = "0.0.0.0:7946"; c.AdvertiseAddr = "10.0.0.1:7946" }, nil},
		{"advertise port 0", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, nil},
		{"ipv6", func(c *Config) { c.BindAddr = "[::1]:0" }, nil},
		{"key 16", func(c *Config) { c.SecretKey = testKey(16, 1) }, nil},
		{"zero config durations", func(c *Config) { *c = Config{Meta: c.Meta, BindAddr: c.BindAddr} }, nil},
		{"empty id", func(c *Config) { c.Meta.ID = "" }, ErrBadConfig},
		{"no bind", func(c *Config) { c.BindAddr = "" }, ErrBadConfig},
		{"bind hostname", func(c *Config) { c.BindAddr = "localhost:7946" }, ErrBadConfig},
		{"bind bad port", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, ErrBadConfig},
		{"bind 0.0.0.0 alone", func(c *Config) { c.BindAddr = "0.0.0.0:7946" }, ErrBadConfig},
		{"bind :: alone", func(c *Config) { c.BindAddr = "[::]:7946" }, ErrBadConfig},
		{"advertise 0.0.0.0", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7946" }, ErrBadConfig},
		{"advertise no port", func(c *Config) { c.AdvertiseAddr = "10.0.0.1" }, ErrBadConfig},
		{"join no port", func(c *Config) { c.Join = []string{"10.0.0.2"} }, ErrBadConfig},
		{"key 10", func(c *Config) { c.SecretKey = testKey(10, 1) }, ErrBadKey},
		{"key empty", func(c *Config) { c.SecretKey = []byte{} }, ErrBadKey},
		{"profile", func(c *Config) { c.Profile = "fast" }, ErrBadConfig},
		{"negative timeout", func(c *Config) { c.StartJoinTimeout = -1 }, ErrBadConfig},
		{"meta too large", func(c *Config) { c.Meta.AdminAddr = strings.Repeat("a", 600) }, ErrMetaTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadConfig) {
				t.Fatalf("err = %v, want %v (and ErrBadConfig)", err, tc.want)
			}
		})
	}
	if _, err := New(nil); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New(nil): err = %v, want ErrBadConfig", err)
	}
}

func TestState_String(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", 0: "state(0)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
