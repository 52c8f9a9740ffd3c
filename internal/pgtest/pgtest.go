// Package pgtest gives tests a throwaway PostgreSQL.
//
// With HOOKHOUSE_TEST_PG set to a postgres:// URL, tests use that server (they must be
// allowed to create databases there). Otherwise Start runs initdb in a temporary
// directory and starts a private server on a free 127.0.0.1 port, as the `postgres` OS
// user when the tests run as root, because PostgreSQL refuses to run as root.
//
// The server runs as a direct child of the test binary with a parent-death signal, so
// a test binary that panics or is killed does not leave a postmaster behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that points the tests at an existing server.
const EnvURL = "HOOKHOUSE_TEST_PG"

// startTimeout bounds how long a fresh server may take to accept connections.
const startTimeout = 60 * time.Second

// Server is a PostgreSQL started for tests.
type Server struct {
	admin    url.URL // superuser URL of the maintenance database "postgres"
	external bool    // from HOOKHOUSE_TEST_PG: never stopped, only its test databases dropped

	// Local servers only.
	dir     string // temp dir: data/, the unix socket, server.log
	binDir  string
	port    int
	cred    *syscall.Credential // the postgres OS user when running as root
	logPath string

	seq atomic.Int64 // database name counter

	mu      sync.Mutex
	proc    *exec.Cmd     // running postmaster, nil when stopped
	exited  chan struct{} // closed when proc has exited
	created []string      // databases created on an external server
	closed  bool
}

// Start returns a server: the one named by HOOKHOUSE_TEST_PG, or a new private one.
func Start(ctx context.Context) (*Server, error) {
	if raw := os.Getenv(EnvURL); raw != "" {
		return startExternal(ctx, raw)
	}
	return startLocal(ctx)
}

func startExternal(ctx context.Context, raw string) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvURL)
	}
	s := &Server{admin: *u, external: true}
	conn, err := s.connectAdmin(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgtest: cannot connect to the server in %s: %w", EnvURL, err)
	}
	conn.Close(ctx)
	return s, nil
}

func startLocal(ctx context.Context) (_ *Server, err error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{binDir: binDir}
	if os.Geteuid() == 0 {
		if s.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if s.dir, err = os.MkdirTemp("", "hookhouse-pg-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	s.logPath = filepath.Join(s.dir, "server.log")
	dataDir := filepath.Join(s.dir, "data")

	initdb := s.command(filepath.Join(binDir, "initdb"),
		"-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
		"--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb failed: %w\n%s", err, out)
	}
	// Only loopback TCP and a socket in our own dir; durability is pointless here.
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
`, s.dir)
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	_, werr := f.WriteString(conf)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("pgtest: %w", werr)
	}

	// A free port can be taken between choosing and binding it; try a few.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.admin = url.URL{
			Scheme:   "postgres",
			User:     url.User("postgres"),
			Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
			Path:     "/postgres",
			RawQuery: "sslmode=disable",
		}
		err = s.start(ctx)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
			return s, err
		}
	}
}

// findBinDir locates the server binaries: pg_config's bindir first, then the newest
// /usr/lib/postgresql/*/bin (Debian and Ubuntu), then PATH.
func findBinDir() (string, error) {
	return findBinDirIn("pg_config", "/usr/lib/postgresql/*/bin")
}

func findBinDirIn(pgConfig, pattern string) (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob(pattern)
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found " +
		"via pg_config --bindir, /usr/lib/postgresql/*/bin or PATH; install them " +
		"(Debian: apt-get install postgresql) or set " + EnvURL + "=postgres://user@host/db " +
		"to use a server where tests may create databases")
}

// versionOf extracts 15 from /usr/lib/postgresql/15/bin so that 15 sorts above 9.6.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: tests run as root but there is no postgres OS user to run "+
			"the server as (PostgreSQL refuses root): %w; create it, run as another user, or set %s", err, EnvURL)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command prepares a server binary to run as the postgres user (when root) in s.dir.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// start runs the postmaster and waits until it accepts connections.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	logStart, _ := logFile.Seek(0, 2)

	cmd := s.command(filepath.Join(s.binDir, "postgres"),
		"-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// SIGQUIT is PostgreSQL's immediate shutdown: if the test binary dies, so does the
	// server. Its own process group keeps a terminal's ^C from reaching it first.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { // owned by s: ends when the postmaster exits, which Stop waits for
		cmd.Wait()
		close(exited)
	}()
	s.proc, s.exited = cmd, exited

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := s.connectAdmin(cctx)
		ccancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			s.proc = nil
			return fmt.Errorf("pgtest: postgres exited during start-up: %s", s.logSince(logStart))
		case <-ctx.Done():
			s.stopLocked()
			return fmt.Errorf("pgtest: postgres did not accept connections: %w; log: %s", err, s.logSince(logStart))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || off > int64(len(b)) {
		return "(no log)"
	}
	b = b[off:]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

func (s *Server) connectAdmin(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.admin.String())
}

// NewDatabase creates a database with a unique name and returns its postgres:// URL.
func (s *Server) NewDatabase(ctx context.Context) (dsn string, err error) {
	var rnd [4]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("hookhouse_test_%d_%d_%s", os.Getpid(), s.seq.Add(1), hex.EncodeToString(rnd[:]))
	conn, err := s.connectAdmin(ctx)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	if s.external {
		s.mu.Lock()
		s.created = append(s.created, name)
		s.mu.Unlock()
	}
	u := s.admin
	u.Path = "/" + name
	return u.String(), nil
}

// Stop shuts the server down fast (like pg_ctl stop -m fast: sessions are ended,
// nothing waits for clients) and keeps its data directory so that Restart works.
// A server from HOOKHOUSE_TEST_PG cannot be stopped: the error wraps
// errors.ErrUnsupported.
func (s *Server) Stop() error {
	if s.external {
		return fmt.Errorf("pgtest: cannot stop the server from %s: %w", EnvURL, errors.ErrUnsupported)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.proc == nil {
		return nil
	}
	proc, exited := s.proc, s.exited
	s.proc = nil
	// SIGINT is the fast shutdown; escalate to immediate (SIGQUIT) and then SIGKILL.
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		proc.Process.Signal(step.sig)
		select {
		case <-exited:
			return nil
		case <-time.After(step.wait):
		}
	}
	return errors.New("pgtest: postgres did not exit after SIGKILL")
}

// Restart starts the server again on the same port and data directory (stopping it
// first if it runs).
func (s *Server) Restart() error {
	if s.external {
		return fmt.Errorf("pgtest: cannot restart the server from %s: %w", EnvURL, errors.ErrUnsupported)
	}
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(context.Background())
}

// Close stops the server and removes its directory; for a server from
// HOOKHOUSE_TEST_PG it drops the databases NewDatabase created.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	created := s.created
	s.mu.Unlock()

	if s.external {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := s.connectAdmin(ctx)
		if err != nil {
			return fmt.Errorf("pgtest: drop test databases: %w", err)
		}
		defer conn.Close(ctx)
		var errs []error
		for _, name := range created {
			// FORCE ends sessions that tests left open (PostgreSQL 13+).
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}

	s.mu.Lock()
	err := s.stopLocked()
	s.mu.Unlock()
	if s.dir != "" {
		if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
			err = fmt.Errorf("pgtest: %w", rerr)
		}
	}
	return err
}

// URL returns the superuser URL of the server's maintenance database "postgres".
func (s *Server) URL() string { return s.admin.String() }

var shared struct {
	mu  sync.Mutex
	s   *Server
	err error
}

// Shared returns a server started lazily once per test binary. Call CloseShared from
// TestMain after m.Run.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
		shared.s, shared.err = Start(ctx)
		cancel()
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.s
}

// CloseShared stops and removes the server Shared started, if any.
func CloseShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s != nil {
		if err := shared.s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: close shared server:", err)
		}
	}
	shared.s, shared.err = nil, nil
}
