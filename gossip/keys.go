package gossip

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/memberlist"
)

// Key rotation on a pool, each step run on every node before the next:
// InstallKey(new), UseKey(new), RemoveKey(old). A node accepts gossip
// encrypted with any installed key and encrypts with the primary one.

// InstallKey adds key to the local keyring, for decryption only until
// UseKey makes it primary. Installing a key twice is a no-op.
func (g *Gossip) InstallKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	if err := checkKey(key); err != nil {
		return fmt.Errorf("install key: %w", err)
	}
	if err := g.keyring.AddKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("install key: %w: %v", ErrBadKey, err)
	}
	return nil
}

// UseKey makes an installed key the primary one, used to encrypt all
// outgoing gossip; every member must have it installed first.
func (g *Gossip) UseKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	if !g.hasKey(key) {
		return fmt.Errorf("use key: %w", ErrUnknownKey)
	}
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("use key: %w: %v", ErrUnknownKey, err)
	}
	return nil
}

// RemoveKey removes an installed key that is not the primary one.
//
// memberlist's Keyring.RemoveKey shifts the later keys down in place in the
// array that its decryption path reads without the keyring lock; removing
// the last key in ListKeys order (as in the install/use/remove rotation
// above, where the old key is last) shifts nothing.
func (g *Gossip) RemoveKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoKeyring
	}
	if bytes.Equal(key, g.keyring.GetPrimaryKey()) {
		return fmt.Errorf("remove key: %w", ErrPrimaryKey)
	}
	if !g.hasKey(key) {
		return fmt.Errorf("remove key: %w", ErrUnknownKey)
	}
	// Only the last key may go: removing another shifts memberlist's key
	// array in place while its decryption path reads it without a lock.
	if keys := g.keyring.GetKeys(); !bytes.Equal(keys[len(keys)-1], key) {
		return fmt.Errorf("remove key: %w: remove the last listed key first", ErrBadKey)
	}
	if err := g.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("remove key: %w: %v", ErrPrimaryKey, err)
	}
	return nil
}

// ListKeys returns copies of the installed keys, the primary one first. It
// returns nil when encryption is not enabled.
func (g *Gossip) ListKeys() [][]byte {
	if g.keyring == nil {
		return nil
	}
	keys := g.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

func (g *Gossip) hasKey(key []byte) bool {
	for _, k := range g.keyring.GetKeys() {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

func checkKey(key []byte) error {
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrBadKey, len(key))
	}
	return nil
}

// LoadKeyFile reads a gossip key file: the standard base64 encoding of a
// 16, 24 or 32 byte key, surrounding whitespace ignored. Errors name the
// file and wrap ErrBadKey for bad contents.
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("gossip key file %s: %w: empty", path, ErrBadKey)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w: not standard base64: %v", path, ErrBadKey, err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	return key, nil
}
