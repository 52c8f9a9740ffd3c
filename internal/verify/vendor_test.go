package verify

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The vendors' own signers run in Node.js (testdata/js/sign.mjs): npm
// standardwebhooks 1.1.1, stripe 23.1.0 and @octokit/webhooks-methods 6.0.0,
// pinned in testdata/js/package-lock.json and installed by
// scripts/npm-test-deps.sh (make test runs it). One node process serves the
// whole test binary, one JSON line per signature.

var node struct {
	once sync.Once
	err  error // why node could not start
	skip bool  // node is not installed at all

	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func TestMain(m *testing.M) {
	code := m.Run()
	if node.cmd != nil {
		node.in.Close() // sign.mjs exits at the end of its input
		node.cmd.Wait()
	}
	os.Exit(code)
}

func startNode() {
	path, err := exec.LookPath("node")
	if err != nil {
		node.skip = true
		node.err = errors.New("node is not installed: the vendor-library signatures (standardwebhooks, stripe, octokit) need Node.js 20+")
		return
	}
	dir := filepath.Join("testdata", "js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks")); err != nil {
		node.err = errors.New("testdata/js/node_modules is missing: run scripts/npm-test-deps.sh (make test does)")
		return
	}
	cmd := exec.Command(path, "sign.mjs")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		node.err = err
		return
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		node.err = err
		return
	}
	if err := cmd.Start(); err != nil {
		node.err = err
		return
	}
	node.cmd, node.in, node.out = cmd, in, bufio.NewScanner(out)
}

// vendorSign returns the signature header value that the vendor library lib
// ("standardwebhooks", "stripe" or "octokit") makes. It skips the test only
// when node is missing; a missing npm install fails it.
func vendorSign(t testing.TB, lib, secret, id string, ts int64, payload []byte) string {
	t.Helper()
	node.once.Do(startNode)
	if node.skip {
		t.Skip(node.err)
	}
	if node.err != nil {
		t.Fatal(node.err)
	}
	node.mu.Lock()
	defer node.mu.Unlock()
	req, _ := json.Marshal(map[string]any{"lib": lib, "secret": secret, "id": id, "timestamp": ts, "payload": string(payload)})
	if _, err := node.in.Write(append(req, '\n')); err != nil {
		t.Fatalf("write to sign.mjs: %v", err)
	}
	if !node.out.Scan() {
		t.Fatalf("sign.mjs ended early: %v", node.out.Err())
	}
	var resp struct{ Header, Error string }
	if err := json.Unmarshal(node.out.Bytes(), &resp); err != nil {
		t.Fatalf("sign.mjs answered %q: %v", node.out.Text(), err)
	}
	if resp.Error != "" {
		t.Fatalf("%s could not sign: %s", lib, resp.Error)
	}
	return resp.Header
}
