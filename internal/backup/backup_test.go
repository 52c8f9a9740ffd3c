package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stage makes a staged snapshot with a state dir and a key file.
func stage(t *testing.T) *Snapshot {
	t.Helper()
	dir := t.TempDir()
	for p, content := range map[string]string{
		"state/MANIFEST-000001": "manifest",
		"state/000002.sst":      strings.Repeat("sst", 100000),
		"secret.key":            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Stage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Snapshot{Dir: dir, Files: files, Manifest: Manifest{Format: Format, Version: "test", CreatedAt: time.Now().UTC(),
		Installation: "inst", Warehouse: WarehouseDuckDB, SecretKeyIncluded: true}}
}

func stream(t *testing.T, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReceiveAndRestore: a streamed snapshot lands in a new directory with its
// manifest, and restores into a new data dir with the same bytes, 0600 files
// and 0700 directories; progress counts every byte.
func TestReceiveAndRestore(t *testing.T) {
	s := stage(t)
	dir := filepath.Join(t.TempDir(), "nested", "backup")
	var seen int64
	m, err := Receive(context.Background(), bytes.NewReader(stream(t, s)), dir, func(n int64) { seen += n })
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 || seen != s.Bytes() || m.Bytes() != s.Bytes() {
		t.Fatalf("manifest files %v, progress %d of %d", m.Files, seen, s.Bytes())
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	seen = 0
	if _, err := Restore(context.Background(), dir, data, func(n int64) { seen += n }); err != nil {
		t.Fatal(err)
	}
	if seen != s.Bytes() {
		t.Errorf("restore progress %d of %d", seen, s.Bytes())
	}
	for _, f := range s.Files {
		want, _ := os.ReadFile(filepath.Join(s.Dir, f.Path))
		got, err := os.ReadFile(filepath.Join(data, f.Path))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s restored wrong: %v", f.Path, err)
		}
		if info, _ := os.Stat(filepath.Join(data, f.Path)); info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f.Path, info.Mode())
		}
	}
	for _, d := range []string{data, filepath.Join(data, "state")} {
		if info, _ := os.Stat(d); info.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v", d, info.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(data, ManifestFile)); err == nil {
		t.Error("the manifest was copied into the data dir")
	}
	if err := CheckComplete(data); err != nil {
		t.Error(err)
	}
	// A restore killed midway leaves its marker, and the data dir is refused.
	os.WriteFile(filepath.Join(data, IncompleteMarker), nil, 0o600)
	if err := CheckComplete(data); err == nil || !strings.Contains(err.Error(), "unfinished restore") {
		t.Errorf("CheckComplete of an unfinished restore: %v", err)
	}
}

// TestRefusesNonEmptyDirectories: neither the backup nor the data directory
// may hold anything, and what is there stays.
func TestRefusesNonEmptyDirectories(t *testing.T) {
	s := stage(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("mine"), 0o600)
	if _, err := Receive(context.Background(), bytes.NewReader(stream(t, s)), dir, nil); err == nil || !strings.Contains(err.Error(), "not empty (it holds keep.txt)") {
		t.Fatalf("Receive into a non-empty dir: %v", err)
	}
	good := filepath.Join(t.TempDir(), "b")
	if _, err := Receive(context.Background(), bytes.NewReader(stream(t, s)), good, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), good, dir, nil); err == nil || !strings.Contains(err.Error(), "the data directory") {
		t.Fatalf("Restore into a non-empty dir: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep.txt")); string(b) != "mine" {
		t.Error("a refused directory was changed")
	}
}

// TestRestoreRefusesDamage: a changed byte, a missing file or a missing
// manifest stops the restore with the file named, and leaves no data dir.
func TestRestoreRefusesDamage(t *testing.T) {
	s := stage(t)
	for name, damage := range map[string]func(dir string){
		"changed byte": func(dir string) {
			p := filepath.Join(dir, "state", "000002.sst")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		},
		"missing file": func(dir string) { os.Remove(filepath.Join(dir, "secret.key")) },
		"no manifest":  func(dir string) { os.Remove(filepath.Join(dir, ManifestFile)) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if _, err := Receive(context.Background(), bytes.NewReader(stream(t, s)), dir, nil); err != nil {
				t.Fatal(err)
			}
			damage(dir)
			data := filepath.Join(t.TempDir(), "data")
			_, err := Restore(context.Background(), dir, data, nil)
			want := map[string]string{"changed byte": "state/000002.sst does not have the SHA-256", "missing file": "secret.key is missing",
				"no manifest": "not a complete hookhouse backup"}[name]
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Restore = %v, want %q", err, want)
			}
			if _, err := os.Stat(data); err == nil {
				t.Error("a failed restore left its data dir")
			}
		})
	}
}

// TestReceiveRefusesBadStreams: a stream cut short (no manifest), one whose
// file differs from its manifest, and one with a path outside the directory
// are refused and leave nothing behind.
func TestReceiveRefusesBadStreams(t *testing.T) {
	s := stage(t)
	full := stream(t, s)
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	flipped := bytes.Clone(full)
	i := bytes.Index(flipped, []byte("sstsst"))
	flipped[i] = 'X'
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"cut short": {full[:len(full)/2], "cut short"},
		"no manifest": {func() []byte {
			i := bytes.Index(full, []byte(ManifestFile))
			return full[:i-(i%512)]
		}(), "ended without its manifest.json"},
		"changed":  {flipped, "state/000002.sst does not have the SHA-256"},
		"bad path": {evil.Bytes(), "not a plain relative path"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			_, err := Receive(context.Background(), bytes.NewReader(tc.b), dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Receive = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a refused stream left its directory")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
				t.Error("a file was written outside the directory")
			}
		})
	}
}
