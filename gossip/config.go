package gossip

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timing profiles accepted in Config.Profile.
const (
	// ProfileLAN uses memberlist.DefaultLANConfig timings (the default).
	ProfileLAN = "lan"
	// ProfileWAN uses memberlist.DefaultWANConfig timings.
	ProfileWAN = "wan"
	// ProfileLocal uses memberlist.DefaultLocalConfig timings (loopback).
	ProfileLocal = "local"
)

// Defaults used by DefaultConfig and for zero-valued fields.
const (
	DefaultStartJoinTimeout  = 10 * time.Second
	DefaultJoinRetryInterval = 250 * time.Millisecond
	DefaultJoinRetryMax      = 5 * time.Second
	DefaultBroadcastTimeout  = 5 * time.Second
)

// Config configures a Gossip instance.
type Config struct {
	// Meta is what this node gossips about itself; Meta.ID is required and
	// becomes the memberlist node name.
	Meta Meta

	// BindAddr is the ip:port memberlist listens on, TCP and UDP; required.
	// The host must be an IP literal. Port 0 picks a free port (then that
	// port is also the advertised one).
	BindAddr string

	// AdvertiseAddr is the ip:port other members use to reach this node.
	// Empty: BindAddr. It must not be an unspecified address (0.0.0.0, ::),
	// so BindAddr needs a specific IP when AdvertiseAddr is empty. Port 0:
	// the bound port.
	AdvertiseAddr string

	// Join lists gossip addresses (host:port) of existing members to join
	// at Start. Empty: start a new pool (others may join it).
	Join []string

	// SecretKey enables AES-GCM encryption of all gossip when set: 16, 24
	// or 32 bytes (AES-128/192/256). Nil: plaintext, and the key operations
	// return ErrNoKeyring.
	SecretKey []byte

	// Logger receives this package's and memberlist's logs; nil discards
	// them. It should carry the node_id attribute: gossip adds only
	// component.
	Logger *slog.Logger

	// Profile selects memberlist's timing preset: ProfileLAN (also for the
	// empty string), ProfileWAN or ProfileLocal.
	Profile string

	// Tune, when set, adjusts the memberlist configuration after the
	// profile, addresses and node name are applied (tests shorten probe and
	// gossip intervals here, or install a memberlist.MockNetwork transport).
	// The node name, delegates, keyring and logger are set again after Tune
	// and cannot be changed by it. Nil: no change.
	Tune func(*memberlist.Config)

	// StartJoinTimeout is how long Start waits for the first successful
	// join of Join before returning; joining then continues in the
	// background until a member answers, Leave or Shutdown. Zero: Start
	// does not wait.
	StartJoinTimeout time.Duration

	// JoinRetryInterval is the delay after the first failed join attempt;
	// it doubles after each further failure up to JoinRetryMax. Zero:
	// DefaultJoinRetryInterval.
	JoinRetryInterval time.Duration

	// JoinRetryMax caps the delay between join attempts. Zero:
	// DefaultJoinRetryMax.
	JoinRetryMax time.Duration

	// BroadcastTimeout is Leave's timeout when Leave is given none. Zero:
	// DefaultBroadcastTimeout.
	BroadcastTimeout time.Duration

	// Expected, when set, returns the members this node should share a
	// pool with (node id -> gossip address), such as the nodes of the Raft
	// configuration. The reconnect loop keeps joining every one that is not
	// alive, with backoff, for as long as it is expected. It is called from
	// that loop every JoinRetryInterval and must be cheap and not block.
	// Nil: only Join, the peers file and failed members are rejoined.
	Expected func() map[string]string
	// PeersFile is where the gossip addresses of the members seen alive
	// are kept (rewritten when they change), so a restarted node can rejoin
	// them even when Join names none that answers, as serf's snapshot
	// does. Empty: nothing is kept.
	PeersFile string
}

// DefaultConfig returns a Config with the LAN profile and default join and
// broadcast timings; Meta.ID and BindAddr must still be set.
func DefaultConfig() *Config {
	return &Config{
		Profile:           ProfileLAN,
		StartJoinTimeout:  DefaultStartJoinTimeout,
		JoinRetryInterval: DefaultJoinRetryInterval,
		JoinRetryMax:      DefaultJoinRetryMax,
		BroadcastTimeout:  DefaultBroadcastTimeout,
	}
}

// Validate reports the first problem with c. Every error wraps ErrBadConfig,
// and also ErrMetaTooLarge or ErrBadKey when those are the problem.
func (c *Config) Validate() error {
	if err := c.Meta.Validate(); err != nil {
		if !errors.Is(err, ErrBadConfig) {
			err = fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
		return err
	}
	bindIP, _, err := splitIPPort(c.BindAddr)
	if err != nil {
		return fmt.Errorf("%w: bind address %q: %v", ErrBadConfig, c.BindAddr, err)
	}
	if c.AdvertiseAddr == "" {
		if bindIP.IsUnspecified() {
			return fmt.Errorf("%w: bind address %q is unspecified and no advertise address is set", ErrBadConfig, c.BindAddr)
		}
	} else {
		advIP, _, err := splitIPPort(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("%w: advertise address %q: %v", ErrBadConfig, c.AdvertiseAddr, err)
		}
		if advIP.IsUnspecified() {
			return fmt.Errorf("%w: advertise address %q is unspecified", ErrBadConfig, c.AdvertiseAddr)
		}
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: join address %q: %v", ErrBadConfig, a, err)
		}
	}
	if c.SecretKey != nil {
		if err := memberlist.ValidateKey(c.SecretKey); err != nil {
			return fmt.Errorf("%w: %w: secret key is %d bytes, want 16, 24 or 32", ErrBadConfig, ErrBadKey, len(c.SecretKey))
		}
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return fmt.Errorf("%w: profile %q (want %q, %q or %q)", ErrBadConfig, c.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"start join timeout", c.StartJoinTimeout},
		{"join retry interval", c.JoinRetryInterval},
		{"join retry max", c.JoinRetryMax},
		{"broadcast timeout", c.BroadcastTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrBadConfig, d.name, d.v)
		}
	}
	return nil
}

// splitIPPort parses "ip:port" with an IP literal host.
func splitIPPort(addr string) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("host %q is not an IP address", host)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("bad port %q", portStr)
	}
	return ip, port, nil
}

// withDefaults returns a copy of c with zero durations and sizes replaced
// by their defaults.
func (c *Config) withDefaults() Config {
	out := *c
	out.Join = slices.Clone(c.Join)
	out.SecretKey = bytes.Clone(c.SecretKey)
	out.JoinRetryInterval = cmp.Or(out.JoinRetryInterval, DefaultJoinRetryInterval)
	out.JoinRetryMax = cmp.Or(out.JoinRetryMax, DefaultJoinRetryMax)
	out.BroadcastTimeout = cmp.Or(out.BroadcastTimeout, DefaultBroadcastTimeout)
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// memberlistConfig maps c (after withDefaults) to a memberlist.Config,
// without the delegates, keyring and logger.
func (c *Config) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	// Validate has checked both addresses.
	bindIP, bindPort, _ := splitIPPort(c.BindAddr)
	mc.BindAddr = bindIP.String()
	mc.BindPort = bindPort
	advIP, advPort := bindIP, bindPort
	if c.AdvertiseAddr != "" {
		advIP, advPort, _ = splitIPPort(c.AdvertiseAddr)
		if advPort == 0 {
			advPort = bindPort
		}
	}
	mc.AdvertiseAddr = advIP.String()
	mc.AdvertisePort = advPort
	return mc
}
