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
