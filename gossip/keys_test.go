package gossip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGossip_EncryptedPoolRejectsOutsiders(t *testing.T) {
	log := newTestLogger(t)
	key := testKey(32, 1)

	cfgA := testConfig(t, log, "n1")
	cfgA.SecretKey = key
	a := mustStart(t, cfgA)
	cfgB := testConfig(t, log, "n2")
	cfgB.SecretKey = key
	cfgB.Join = []string{a.LocalAddr()}
	b := mustStart(t, cfgB)
	waitAllAlive(t, []*Gossip{a, b})

	outsiders := map[string][]byte{
		"x1": testKey(32, 2), // a different key
		"x2": nil,            // plaintext
	}
	var started []*Gossip
	for id, k := range outsiders {
		cfg := testConfig(t, log, id)
		cfg.SecretKey = k
		cfg.Join = []string{a.LocalAddr(), b.LocalAddr()}
		cfg.StartJoinTimeout = 0 // keeps retrying in the background
		g := mustStart(t, cfg)
		started = append(started, g)
		if n, err := g.Join([]string{a.LocalAddr(), b.LocalAddr()}); n != 0 || !errors.Is(err, ErrJoinFailed) {
			t.Errorf("%s: Join = %d, %v; want 0, ErrJoinFailed", id, n, err)
		}
	}

	// Let gossip run: a third keyed node joins through n2, so several
	// gossip and push/pull rounds have happened.
	cfgC := testConfig(t, log, "n3")
	cfgC.SecretKey = key
	cfgC.Join = []string{b.LocalAddr()}
	c := mustStart(t, cfgC)
	waitAllAlive(t, []*Gossip{a, b, c})
	for _, g := range []*Gossip{a, b, c} {
		for id := range outsiders {
			if _, ok := g.Member(id); ok {
				t.Errorf("%s lists outsider %s", g.cfg.Meta.ID, id)
			}
		}
	}
	for _, g := range started {
		if n := g.NumAlive(); n != 1 {
			t.Errorf("outsider %s sees %d alive members, want only itself", g.cfg.Meta.ID, n)
		}
	}
}

func TestGossip_KeyRotation(t *testing.T) {
	log := newTestLogger(t)
	oldKey, newKey := testKey(16, 1), testKey(24, 2)
	var nodes []*Gossip
	for _, id := range []string{"n1", "n2"} {
		cfg := testConfig(t, log, id)
		cfg.SecretKey = oldKey
		if len(nodes) > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, mustStart(t, cfg))
	}
	waitFor(t, 5*time.Second, func() string {
		if msg := seesAlive(nodes[0], nodes...); msg != "" {
			return msg
		}
		return seesAlive(nodes[1], nodes...)
	})

	for _, step := range []struct {
		name string
		do   func(g *Gossip) error
	}{
		{"install", func(g *Gossip) error { return g.InstallKey(newKey) }},
		{"use", func(g *Gossip) error { return g.UseKey(newKey) }},
		{"remove", func(g *Gossip) error { return g.RemoveKey(oldKey) }},
	} {
		for _, g := range nodes {
			if err := step.do(g); err != nil {
				t.Fatalf("%s on %s: %v", step.name, g.cfg.Meta.ID, err)
			}
		}
	}
	for _, g := range nodes {
		keys := g.ListKeys()
		if len(keys) != 1 || !bytes.Equal(keys[0], newKey) {
			t.Fatalf("%s: ListKeys() = %x, want only the new key", g.cfg.Meta.ID, keys)
		}
	}

	// Still gossiping: a node that only has the new key joins, and a
	// metadata update (the leaving flag) reaches everyone.
	cfgC := testConfig(t, log, "n3")
	cfgC.SecretKey = newKey
	cfgC.Join = []string{nodes[1].LocalAddr()}
	nodes = append(nodes, mustStart(t, cfgC))
	waitAllAlive(t, nodes)
	if err := nodes[0].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes[1:] {
			if msg := seesState(g, nodes[0].cfg.Meta.ID, StateLeft); msg != "" {
				return msg
			}
		}
		return ""
	})
}

func TestGossip_KeyErrors(t *testing.T) {
	log := newTestLogger(t)
	cfg := testConfig(t, log, "n1")
	cfg.SecretKey = testKey(32, 1)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.InstallKey(testKey(10, 2)); !errors.Is(err, ErrBadKey) {
		t.Errorf("InstallKey(10 bytes): err = %v, want ErrBadKey", err)
	}
	if err := g.UseKey(testKey(32, 3)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("UseKey(unknown): err = %v, want ErrUnknownKey", err)
	}
	if err := g.RemoveKey(testKey(32, 3)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("RemoveKey(unknown): err = %v, want ErrUnknownKey", err)
	}
	if err := g.RemoveKey(testKey(32, 1)); !errors.Is(err, ErrPrimaryKey) {
		t.Errorf("RemoveKey(primary): err = %v, want ErrPrimaryKey", err)
	}
	// The keyring keeps its own copy.
	k := testKey(16, 4)
	if err := g.InstallKey(k); err != nil {
		t.Fatal(err)
	}
	k[0] = 99
	if keys := g.ListKeys(); len(keys) != 2 || !bytes.Equal(keys[0], testKey(32, 1)) || !bytes.Equal(keys[1], testKey(16, 4)) {
		t.Errorf("ListKeys() = %x, want primary then the installed key", keys)
	}

	plain, err := New(testConfig(t, log, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.InstallKey(testKey(16, 1)); !errors.Is(err, ErrNoKeyring) {
		t.Errorf("InstallKey without encryption: err = %v, want ErrNoKeyring", err)
	}
	if keys := plain.ListKeys(); keys != nil {
		t.Errorf("ListKeys without encryption = %x, want nil", keys)
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, n := range []int{16, 24, 32} {
		key := testKey(n, byte(n))
		p := write(fmt.Sprintf("good%d", n), "  \n"+base64.StdEncoding.EncodeToString(key)+"\n\t")
		got, err := LoadKeyFile(p)
		if err != nil {
			t.Errorf("LoadKeyFile(%d-byte key): %v", n, err)
		} else if !bytes.Equal(got, key) {
			t.Errorf("LoadKeyFile(%d-byte key) = %x, want %x", n, got, key)
		}
	}

	for _, tc := range []struct {
		name, content string
		want          error
	}{
		{"empty", " \n", ErrBadKey},
		{"not-base64", "this is not base64!", ErrBadKey},
		{"url-encoding", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 16)), ErrBadKey},
		{"short", base64.StdEncoding.EncodeToString(testKey(10, 1)), ErrBadKey},
		{"long", base64.StdEncoding.EncodeToString(testKey(33, 1)), ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.name, tc.content)
			_, err := LoadKeyFile(p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}

	missing := filepath.Join(dir, "missing")
	_, err := LoadKeyFile(missing)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want a not-exist error naming the file", err)
	}
}
