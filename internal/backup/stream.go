package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Snapshot is a backup staged on the server: the files in Dir, and the
// manifest without Files (WriteTar adds them as it streams).
type Snapshot struct {
	Dir      string
	Manifest Manifest
	// Files are the staged files' slash paths and sizes, in stream order.
	Files []File
	// Release removes the staged files and lets the next backup run.
	Release func()
}

// Stage lists the files under dir for a Snapshot: regular files only, in path
// order, with their sizes.
func Stage(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("backup: %s is not a regular file", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	slices.SortFunc(files, func(a, b File) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	return files, err
}

// Bytes is the size of the staged files together.
func (s *Snapshot) Bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}

// WriteTar streams the snapshot: every file, hashing it on the way, then
// manifest.json with every file's size and SHA-256. A stream cut short has no
// manifest, so the receiver cannot take it for a backup.
func WriteTar(ctx context.Context, w io.Writer, s *Snapshot) error {
	tw := tar.NewWriter(w)
	m := s.Manifest
	m.Files = make([]File, 0, len(s.Files))
	for _, f := range s.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		sum, err := writeTarFile(tw, filepath.Join(s.Dir, filepath.FromSlash(f.Path)), f)
		if err != nil {
			return err
		}
		f.SHA256 = sum
		m.Files = append(m.Files, f)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: ManifestFile, Mode: 0o600, Size: int64(len(b)), ModTime: m.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, p string, f File) (string, error) {
	src, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer src.Close()
	if err := tw.WriteHeader(&tar.Header{Name: f.Path, Mode: 0o600, Size: f.Size, ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return "", err
	}
	h := newHasher()
	// Exactly Size bytes: the staged files do not change, and a short one is an error.
	if _, err := io.CopyN(tw, io.TeeReader(src, h), f.Size); err != nil {
		return "", fmt.Errorf("backup: stream %s: %w", f.Path, err)
	}
	return h.sum(), nil
}

// Receive writes a stream from WriteTar into dir, which must be empty or not
// exist: every file fsync'd as it arrives, then checked against the manifest
// (size and SHA-256, no file missing or extra), then manifest.json written
// last and every directory fsync'd. progress, if set, is told of every chunk
// of file bytes written. On any error what was written is removed.
func Receive(ctx context.Context, r io.Reader, dir string, progress func(n int64)) (*Manifest, error) {
	made, err := ensureEmpty(dir, "the backup directory")
	if err != nil {
		return nil, err
	}
	m, err := receive(ctx, r, dir, progress)
	if err != nil {
		cleanup(dir, made)
		return nil, err
	}
	return m, nil
}

func receive(ctx context.Context, r io.Reader, dir string, progress func(int64)) (*Manifest, error) {
	tr := tar.NewReader(r)
	got := map[string]File{}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the backup stream: %w (the transfer was cut short?)", err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("the backup stream goes on after %s", ManifestFile)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("the backup stream holds %s, which is not a regular file", hdr.Name)
		}
		if hdr.Name == ManifestFile {
			if manifest, err = io.ReadAll(io.LimitReader(tr, 64<<20)); err != nil {
				return nil, fmt.Errorf("read %s: %w", ManifestFile, err)
			}
			continue
		}
		if err := checkPath(hdr.Name); err != nil {
			return nil, fmt.Errorf("the backup stream holds a bad file: %w", err)
		}
		if _, dup := got[hdr.Name]; dup {
			return nil, fmt.Errorf("the backup stream holds %s twice", hdr.Name)
		}
		n, sum, err := writeFile(ctx, filepath.Join(dir, filepath.FromSlash(hdr.Name)), tr, progress)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read the backup stream: %s: the transfer was cut short (the server stopped or the connection broke; see the server's log)", hdr.Name)
		}
		if err != nil {
			return nil, err
		}
		got[hdr.Name] = File{Path: hdr.Name, Size: n, SHA256: sum}
	}
	if manifest == nil {
		return nil, fmt.Errorf("the backup stream ended without its %s: the server stopped before the backup was complete (see its log)", ManifestFile)
	}
	m, err := parseManifest(manifest)
	if err != nil {
		return nil, err
	}
	if err := match(m, got); err != nil {
		return nil, fmt.Errorf("the backup does not match its manifest: %w", err)
	}
	// The manifest goes last and through a rename, so a directory with a
	// manifest.json is a complete backup.
	tmp := filepath.Join(dir, "."+ManifestFile+".tmp")
	if _, _, err := writeFile(ctx, tmp, bytes.NewReader(manifest), nil); err != nil {
		return nil, err
	}
	if err := syncDirs(dir, m.Files); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return nil, err
	}
	return m, syncDir(dir)
}

// match checks the files received (or copied) against the manifest.
func match(m *Manifest, got map[string]File) error {
	for _, f := range m.Files {
		g, ok := got[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("%s is missing", f.Path)
		case g.Size != f.Size:
			return fmt.Errorf("%s has %d bytes, the manifest says %d", f.Path, g.Size, f.Size)
		case g.SHA256 != f.SHA256:
			return fmt.Errorf("%s does not have the SHA-256 the manifest gives: the file is damaged", f.Path)
		}
		delete(got, f.Path)
	}
	for p := range got {
		return fmt.Errorf("%s is not in the manifest", p)
	}
	return nil
}

// Restore copies the backup in src into the data directory dst, which must be
// empty or not exist: every file the manifest lists, checked against its
// SHA-256 while it is copied and fsync'd, then every directory fsync'd. Files
// are 0600 and directories 0700. On any error what was written is removed;
// while it runs dst holds IncompleteMarker, so a restore that was killed
// leaves a data dir that serve refuses (CheckComplete).
func Restore(ctx context.Context, src, dst string, progress func(n int64)) (*Manifest, error) {
	m, err := ReadManifest(src)
	if err != nil {
		return nil, err
	}
	made, err := ensureEmpty(dst, "the data directory")
	if err != nil {
		return nil, err
	}
	if err := restore(ctx, m, src, dst, progress); err != nil {
		cleanup(dst, made)
		return nil, err
	}
	return m, nil
}

func restore(ctx context.Context, m *Manifest, src, dst string, progress func(int64)) error {
	// The marker stays if the restore is killed: serve refuses such a data dir.
	marker := filepath.Join(dst, IncompleteMarker)
	if _, _, err := writeFile(ctx, marker, strings.NewReader("hookhouse restore did not finish: remove this directory and restore again\n"), nil); err != nil {
		return err
	}
	if err := syncDir(dst); err != nil {
		return err
	}
	for _, f := range m.Files {
		in, err := os.Open(filepath.Join(src, filepath.FromSlash(f.Path)))
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the backup is damaged: %s is missing", f.Path)
		}
		if err != nil {
			return err
		}
		n, sum, err := writeFile(ctx, filepath.Join(dst, filepath.FromSlash(f.Path)), in, progress)
		in.Close()
		if err != nil {
			return err
		}
		if err := match(&Manifest{Files: []File{f}}, map[string]File{f.Path: {Path: f.Path, Size: n, SHA256: sum}}); err != nil {
			return fmt.Errorf("the backup is damaged: %w", err)
		}
	}
	if err := syncDirs(dst, m.Files); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	return syncDir(dst)
}

// hasher is SHA-256 with its hex sum.
type hasher struct{ hash.Hash }

func newHasher() hasher      { return hasher{sha256.New()} }
func (h hasher) sum() string { return hex.EncodeToString(h.Sum(nil)) }

// progressWriter hashes and reports what passes.
type progressWriter struct {
	h        hasher
	progress func(int64)
}

func (p progressWriter) Write(b []byte) (int, error) {
	p.h.Write(b)
	if p.progress != nil {
		p.progress(int64(len(b)))
	}
	return len(b), nil
}

// IncompleteMarker is in a data dir while Restore writes it.
const IncompleteMarker = "RESTORE-INCOMPLETE"

// CheckComplete refuses a data dir that a restore did not finish.
func CheckComplete(dataDir string) error {
	if _, err := os.Stat(filepath.Join(dataDir, IncompleteMarker)); err == nil {
		return fmt.Errorf("the data directory %s is an unfinished restore (%s is there): remove it and run 'hookhouse restore' again", dataDir, IncompleteMarker)
	}
	return nil
}
