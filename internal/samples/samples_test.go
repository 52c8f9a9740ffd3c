package samples

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestCopyIsVerbatim(t *testing.T) {
	copyDir := filepath.Join(Root(), "testdata", "vero")
	files, _ := filepath.Glob(filepath.Join(copyDir, "*.json"))
	if len(files) != 14 {
		t.Fatalf("the repository copy has %d Vero samples, want 14", len(files))
	}
	shared := SharedVeroDir()
	if shared == "" {
		t.Logf("no shared samples beside this checkout; using the copy in %s", copyDir)
		return
	}
	sharedFiles, _ := filepath.Glob(filepath.Join(shared, "*"))
	if len(sharedFiles) != 15 { // 14 samples + README.md
		t.Fatalf("shared samples changed: %d files", len(sharedFiles))
	}
	for _, f := range sharedFiles {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(copyDir, filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("testdata/vero/%s differs from the shared sample: copy it again", filepath.Base(f))
		}
	}
}

// TestVeroDirInAFreshClone: without the shared folder beside the checkout the
// samples come from the repository's own testdata/vero; with it, from there.
func TestVeroDirInAFreshClone(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "hookhouse")
	if err := os.MkdirAll(filepath.Join(root, "testdata", "vero"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := veroDir(root), filepath.Join(root, "testdata", "vero"); got != want {
		t.Fatalf("without ../shared: VeroDir = %s, want the repository copy %s", got, want)
	}
	shared := filepath.Join(parent, "shared", "testdata", "vero")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := veroDir(root); got != filepath.Join(root, "testdata", "vero") {
		t.Fatalf("an empty ../shared/testdata/vero was preferred: %s", got)
	}
	if err := os.WriteFile(filepath.Join(shared, "01-sent.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := veroDir(root); filepath.Clean(got) != shared {
		t.Fatalf("with ../shared: VeroDir = %s, want %s", got, shared)
	}
}

// TestVeroDirHoldsTheSamples: whichever directory is chosen holds all 14.
func TestVeroDirHoldsTheSamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(VeroDir(), "*.json"))
	if len(files) != 14 {
		t.Fatalf("%s has %d Vero samples, want 14", VeroDir(), len(files))
	}
	t.Setenv("HOOKHOUSE_VERO_SAMPLES", "/elsewhere")
	if got := VeroDir(); got != "/elsewhere" {
		t.Fatalf("HOOKHOUSE_VERO_SAMPLES ignored: %s", got)
	}
}
