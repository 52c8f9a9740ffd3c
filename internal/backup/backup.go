// Package backup is the format of a hookhouse backup and the moving of one:
// the server streams a staged snapshot as a tar (WriteTar), the CLI writes it
// into an empty directory (Receive) and later into a new data directory
// (Restore), checking every file against the manifest's SHA-256 each time and
// syncing what it wrote.
//
// A backup directory holds the files of a data directory and manifest.json:
//
//	state/…            a Pebble checkpoint: log, control data, admin key hash
//	warehouse.duckdb   a copy of the embedded warehouse (absent with PostgreSQL)
//	secret.key         the key that seals signing secrets (absent when it came
//	                   from HOOKHOUSE_SECRET_KEY)
//	admin.key          the admin key file, when the data dir had one
//	certs/…            the ACME certificate cache, when the data dir had one
//	manifest.json      written last: a directory without it is incomplete
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ManifestFile is the manifest's name in a backup directory.
const ManifestFile = "manifest.json"

// Format is the version of the layout this hookhouse writes and reads.
const Format = 1

// Warehouse kinds in a manifest.
const (
	WarehouseDuckDB   = "duckdb"
	WarehousePostgres = "postgres"
)

// ErrRunning is returned when a backup is asked for while another runs.
var ErrRunning = errors.New("another backup is running on this server; wait for it to finish")

// ErrCluster is returned when a backup is asked of a node of a cluster: its log
// and control data are on the NATS JetStream cluster, not in its data dir.
var ErrCluster = errors.New("hookhouse backup copies one node's data dir; in cluster mode the log and the control data " +
	"live on the NATS JetStream cluster: back up its stream and KV buckets with NATS's own stream backups " +
	"(nats stream backup), and PostgreSQL with pg_dump (docs/cluster.md)")

// Manifest describes a backup. Nothing in it is secret.
type Manifest struct {
	Format    int       `json:"format"`
	Version   string    `json:"hookhouse_version"`
	CreatedAt time.Time `json:"created_at"`
	// Installation is the installation id: the warehouse's load positions
	// belong to it, and a restored data dir keeps it.
	Installation string `json:"installation_id"`
	// Warehouse is WarehouseDuckDB (the copy is in the backup) or
	// WarehousePostgres (it is not: pair the backup with pg_dump).
	Warehouse string `json:"warehouse"`
	// SecretKeyIncluded: secret.key is in the backup. False when the server
	// took the key from HOOKHOUSE_SECRET_KEY: set the same value on restore.
	SecretKeyIncluded bool          `json:"secret_key_included"`
	Integrations      []Integration `json:"integrations"`
	Files             []File        `json:"files"`
}

// Integration is one integration's log and load position in the backup.
type Integration struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Schema string `json:"schema"`
	// Received is the last log position in the backup: records 1..Received
	// were accepted before it (minus those trimmed after loading).
	Received uint64 `json:"received"`
	// Loaded is the warehouse's load position: in the backup's DuckDB copy, or
	// PostgreSQL's when the backup was taken. Nil when PostgreSQL could not be
	// asked. Records Loaded+1..Received are in the log and load after a restore.
	Loaded *uint64 `json:"loaded"`
	// Deleted integrations stay until everything they accepted is loaded.
	Deleted bool `json:"deleted,omitempty"`
}

// File is one file of the backup, by its slash-separated path in it.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Bytes is the size of every file together.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// ReadManifest reads dir's manifest.json and checks that it is one this
// hookhouse can restore.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s has no %s: it is not a complete hookhouse backup (a backup that was interrupted has none)", dir, ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	return parseManifest(b)
}

func parseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is not a hookhouse backup manifest: %w", ManifestFile, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("the backup has format %d; this hookhouse reads format %d (use the hookhouse version that wrote it: %s)", m.Format, Format, m.Version)
	}
	seen := map[string]bool{}
	state := false
	for _, f := range m.Files {
		state = state || strings.HasPrefix(f.Path, "state/MANIFEST-")
		if err := checkPath(f.Path); err != nil {
			return nil, fmt.Errorf("%s lists a bad file: %w", ManifestFile, err)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("%s lists %s twice", ManifestFile, f.Path)
		}
		seen[f.Path] = true
	}
	if !state {
		return nil, fmt.Errorf("%s lists no state/MANIFEST-…: the backup holds no state", ManifestFile)
	}
	return &m, nil
}

// checkPath allows only clean relative slash paths inside the backup.
func checkPath(p string) error {
	if p == "" || p != path.Clean(p) || path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, `\`) || p == ManifestFile {
		return fmt.Errorf("path %q is not a plain relative path", p)
	}
	return nil
}

// CheckEmpty returns nil when dir does not exist or is an empty directory,
// and otherwise an error that says what is in it. what names dir for the
// message ("the backup directory").
func CheckEmpty(dir, what string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, dir, err)
	case len(entries) > 0:
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		more := ""
		if len(entries) > 3 {
			more = ", …"
		}
		return fmt.Errorf("%s %s is not empty (it holds %s%s); give an empty or new directory", what, dir, strings.Join(names, ", "), more)
	}
	return nil
}

// ensureEmpty is CheckEmpty, then makes dir (0700, and its parents) if it
// does not exist. It reports whether it made dir.
func ensureEmpty(dir, what string) (made bool, err error) {
	if err := CheckEmpty(dir, what); err != nil {
		return false, err
	}
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	return true, syncDir(filepath.Dir(filepath.Clean(dir)))
}

// cleanup removes what a failed Receive or Restore wrote into dir: dir itself
// when it made it, else dir's entries (dir was empty before).
func cleanup(dir string, made bool) {
	if made {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// syncDir fsyncs a directory, so that the names in it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// syncDirs fsyncs every directory a file of files is in, deepest first, and root.
func syncDirs(root string, files []File) error {
	dirs := map[string]bool{".": true}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	depth := func(d string) int {
		if d == "." {
			return -1
		}
		return strings.Count(d, "/")
	}
	slices.SortFunc(list, func(a, b string) int { return depth(b) - depth(a) })
	for _, d := range list {
		if err := syncDir(filepath.Join(root, filepath.FromSlash(d))); err != nil {
			return err
		}
	}
	return nil
}

// writeFile creates path (0600, parents 0700) from r, fsyncs it, and returns
// its size and SHA-256. It refuses an existing file.
func writeFile(ctx context.Context, p string, r io.Reader, progress func(int64)) (int64, string, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return 0, "", err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", err
	}
	h := newHasher()
	n, err := io.Copy(f, io.TeeReader(ctxReader{ctx, r}, progressWriter{h, progress}))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, "", fmt.Errorf("write %s: %w", p, err)
	}
	return n, h.sum(), nil
}

// ctxReader stops reading once ctx ends (Ctrl-C).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
