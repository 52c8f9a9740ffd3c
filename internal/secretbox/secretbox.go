// Package secretbox encrypts secrets at rest (issue 12): webhook signing
// secrets must be readable again to verify, so unlike URL tokens they cannot
// be hashed. They are sealed with AES-256-GCM under one key per data
// directory: <data>/secret.key, created on first use, or HOOKHOUSE_SECRET_KEY
// (read by the caller and passed to Load).
//
// Sealed format: version (1 byte, 1) | nonce (12 random bytes) | ciphertext
// and GCM tag. The version byte is authenticated too, so a future format can
// be told apart and a changed byte is caught.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFile is the key's file name inside the data directory.
const KeyFile = "secret.key"

// KeySize is the AES-256 key length.
const KeySize = 32

const version1 byte = 1

// ErrOpen is returned (wrapped) when a sealed value does not open: the key
// differs from the one that sealed it, or the value was changed.
var ErrOpen = errors.New("secretbox: sealed value does not open with this key: restore the secret.key (or HOOKHOUSE_SECRET_KEY) it was sealed with, or enter the secret again")

// Box seals and opens values under one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Load returns the Box for a data directory. envKey is the value of
// HOOKHOUSE_SECRET_KEY ("" when unset): when given it is the key (64 hex
// characters or base64 of 32 bytes) and no file is read or written.
// Otherwise the key is read from <dataDir>/secret.key, which is created
// (mode 0600, 32 random bytes as hex) when it does not exist yet.
//
// Losing the key loses every stored secret: back secret.key up with the data
// directory, or keep HOOKHOUSE_SECRET_KEY somewhere safe.
func Load(dataDir, envKey string) (*Box, error) {
	if envKey != "" {
		key, err := ParseKey(envKey)
		if err != nil {
			return nil, fmt.Errorf("secretbox: HOOKHOUSE_SECRET_KEY: %w", err)
		}
		return New(key)
	}
	key, err := loadOrCreate(filepath.Join(dataDir, KeyFile))
	if err != nil {
		return nil, err
	}
	return New(key)
}

// ParseKey reads a key written as 64 hex characters or as base64 (standard
// or URL-safe, padded or not) of 32 bytes; white space around it is ignored.
// The error never repeats the text.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("not a %d-byte key: write 64 hex characters (openssl rand -hex 32) or base64 of 32 bytes", KeySize)
}

// loadOrCreate reads the key file, or creates it. Creation writes a
// temporary file and links it into place, so a concurrent reader never sees
// a half-written key and two processes starting at once end with one key.
func loadOrCreate(path string) ([]byte, error) {
	key, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secretbox: generate a key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".secret.key-*")
	if err != nil {
		return nil, fmt.Errorf("secretbox: create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600; Chmod says so rather than relying on it.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("secretbox: create %s: %w", path, err)
	}
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("secretbox: write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(path) // another process created it first
		}
		return nil, fmt.Errorf("secretbox: create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the new name durable; best effort, as for the key itself
		d.Close()
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secretbox: %s is readable by others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("secretbox: %s: %w; if it was damaged, restore it from a backup (secrets sealed with it cannot be opened without it)", path, err)
	}
	return key, nil
}

// Seal encrypts plaintext with a fresh random nonce.
func (b *Box) Seal(plaintext []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+b.aead.Overhead())
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:], plaintext, out[:1]), nil
}

// Open decrypts a value from Seal. A wrong key or a changed value gives an
// error wrapping ErrOpen; errors never hold any of the value.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() {
		return nil, fmt.Errorf("secretbox: sealed value is %d bytes, too short to be one", len(sealed))
	}
	if sealed[0] != version1 {
		return nil, fmt.Errorf("secretbox: sealed value has format version %d; this build reads version %d: upgrade hookhouse", sealed[0], version1)
	}
	pt, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealed[:1])
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
