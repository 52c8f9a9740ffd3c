package secretbox

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func mustBox(t *testing.T, key []byte) *Box {
	t.Helper()
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := mustBox(t, bytes.Repeat([]byte{7}, KeySize))
	for _, pt := range [][]byte{[]byte(plain), {}, bytes.Repeat([]byte{0xff}, 4096)} {
		s1, err := b.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := b.Seal(pt)
		if bytes.Equal(s1, s2) {
			t.Fatal("two seals of one value are equal: the nonce is not random")
		}
		if s1[0] != version1 || len(s1) != 1+12+len(pt)+16 {
			t.Fatalf("sealed layout: version %d, %d bytes", s1[0], len(s1))
		}
		if len(pt) > 0 && bytes.Contains(s1, pt) {
			t.Fatal("the sealed value contains the plaintext")
		}
		got, err := b.Open(s1)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open: %q %v", got, err)
		}
	}
}

func TestTamperAndWrongKey(t *testing.T) {
	b := mustBox(t, bytes.Repeat([]byte{1}, KeySize))
	sealed, _ := b.Seal([]byte(plain))
	check := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: opened", name)
		}
		if strings.Contains(err.Error(), plain) || strings.Contains(err.Error(), "MfKQ") {
			t.Fatalf("%s: error shows the plaintext: %v", name, err)
		}
	}
	for i := range sealed {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		_, err := b.Open(c)
		check(fmt.Sprintf("byte %d flipped", i), err)
		if i > 0 && !errors.Is(err, ErrOpen) {
			t.Fatalf("byte %d: %v, want ErrOpen", i, err)
		}
	}
	for _, n := range []int{0, 1, 12, 28, len(sealed) - 1} {
		_, err := b.Open(sealed[:n])
		check("truncated", err)
	}
	_, err := b.Open(append(bytes.Clone(sealed), 0))
	check("extended", err)

	other := mustBox(t, bytes.Repeat([]byte{2}, KeySize))
	_, err = other.Open(sealed)
	check("wrong key", err)
	if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("wrong key: %v, want ErrOpen with a next step", err)
	}
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key accepted", n)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	b1, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key mode %04o, want 0600", fi.Mode().Perm())
	}
	text, _ := os.ReadFile(path)
	if k, err := hex.DecodeString(strings.TrimSpace(string(text))); err != nil || len(k) != KeySize {
		t.Fatalf("secret.key holds %q", text)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("data dir holds %d entries, want only secret.key", len(ents))
	}

	// A second start reads the same key.
	sealed, _ := b1.Seal([]byte(plain))
	b2, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b2.Open(sealed); err != nil || string(got) != plain {
		t.Fatalf("reopened: %q %v", got, err)
	}

	// A key file others can read is refused, with the fix.
	os.Chmod(path, 0o644)
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("mode 0644: %v", err)
	}
	os.Chmod(path, 0o600)

	// A damaged key file is an error, never silently replaced.
	os.WriteFile(path, []byte("not a key\n"), 0o600)
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "restore it") {
		t.Fatalf("damaged: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("a missing data directory gave a key")
	}
}

func TestKeyFileConcurrentCreate(t *testing.T) {
	// Processes starting together must agree on one key.
	dir := t.TempDir()
	boxes := make([]*Box, 8)
	var wg sync.WaitGroup
	for i := range boxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := Load(dir, "")
			if err != nil {
				t.Error(err)
			}
			boxes[i] = b
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sealed, _ := boxes[0].Seal([]byte(plain))
	for i, b := range boxes {
		if _, err := b.Open(sealed); err != nil {
			t.Fatalf("box %d has another key: %v", i, err)
		}
	}
}

func TestEnvKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, KeySize)
	dir := t.TempDir()
	var sealed []byte
	for _, env := range []string{
		hex.EncodeToString(key),
		strings.ToUpper(hex.EncodeToString(key)) + "\n",
		base64.StdEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
	} {
		b, err := Load(dir, env)
		if err != nil {
			t.Fatalf("%q: %v", env, err)
		}
		if sealed == nil {
			sealed, _ = b.Seal([]byte(plain))
		}
		if got, err := b.Open(sealed); err != nil || string(got) != plain {
			t.Fatalf("%q: %q %v", env, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("a key from the environment wrote secret.key")
	}
	for _, bad := range []string{"short", hex.EncodeToString(key[:16]), strings.Repeat("zz", 32)} {
		_, err := Load(dir, bad)
		if err == nil || !strings.Contains(err.Error(), "HOOKHOUSE_SECRET_KEY") || strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
