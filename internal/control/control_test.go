package control_test

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/state"
)

func TestSchemaName(t *testing.T) {
	tests := map[string]string{
		"Stitch Vero":            "stitch_vero",
		"stitch-vero":            "stitch_vero",
		"Vero (prod) #2":         "vero_prod_2",
		"2nd Vero":               "_2nd_vero",
		"Ünïcödé":                "ncd",
		"  Leading":              "__leading",
		"!!!":                    "",
		strings.Repeat("a", 100): strings.Repeat("a", 63),
	}
	for in, want := range tests {
		if got := control.SchemaName(in); got != want {
			t.Errorf("SchemaName(%q) = %q, want %q", in, got, want)
		}
	}
}

func open(t *testing.T, dir string) (*control.Store, *state.Pebble) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(dir, logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.Open(st, state.ErrNotFound, logger)
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

func TestIntegrationsAndURLs(t *testing.T) {
	dir := t.TempDir()
	c, st := open(t, dir)
	now := time.Now()

	key, err := c.EnsureAdminKey()
	if err != nil || !strings.HasPrefix(key, "hhk_") {
		t.Fatalf("EnsureAdminKey = %q, %v", key, err)
	}
	if again, _ := c.EnsureAdminKey(); again != "" {
		t.Fatal("a second EnsureAdminKey revealed a key again")
	}
	if !c.CheckAdminKey(key) || c.CheckAdminKey(key+"x") || c.CheckAdminKey("") {
		t.Fatal("CheckAdminKey is wrong")
	}

	in, err := c.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, now)
	if err != nil || in.Schema != "stitch_vero" || in.ID != 1 {
		t.Fatalf("Create = %+v, %v", in, err)
	}
	refusals := []struct {
		req  control.NewIntegration
		kind error
		msg  string
	}{
		{control.NewIntegration{Name: "stitch-vero", Type: "vero"}, control.ErrConflict, "already used"},
		{control.NewIntegration{Name: "!!!", Type: "vero"}, control.ErrInvalid, "empty schema"},
		{control.NewIntegration{Name: "x", Type: "vero", Schema: "_sdc_x"}, control.ErrInvalid, "reserved"},
		{control.NewIntegration{Name: "pg things", Type: "vero", Schema: "pg_things"}, control.ErrInvalid, "reserved"},
		{control.NewIntegration{Name: "Information Schema", Type: "vero"}, control.ErrInvalid, "reserved"},
		{control.NewIntegration{Name: "x", Type: "segment"}, control.ErrInvalid, "unknown type"},
		{control.NewIntegration{Name: "", Type: "vero"}, control.ErrInvalid, "name is required"},
		{control.NewIntegration{Name: strings.Repeat("n", 101), Type: "vero"}, control.ErrInvalid, "1–100"},
		{control.NewIntegration{Name: "pk", Type: "vero", PrimaryKey: "id"}, control.ErrInvalid, "only for integrations of type webhooks"},
		{control.NewIntegration{Name: "pk", Type: "webhooks", PrimaryKey: strings.Repeat("k", 51)}, control.ErrInvalid, "50 characters"},
		{control.NewIntegration{Name: "x", Type: "vero", Schema: "Bad-Schema"}, control.ErrInvalid, "only a-z"},
	}
	for _, r := range refusals {
		_, err := c.Create(r.req, now)
		if !errors.Is(err, r.kind) || !strings.Contains(err.Error(), r.msg) {
			t.Errorf("Create(%+v) = %v, want %v containing %q", r.req, err, r.kind, r.msg)
		}
	}

	u1, tok1, err := c.GenerateURL(in.ID, now)
	if err != nil || len(tok1) != 64 || strings.Trim(tok1, "0123456789abcdef") != "" {
		t.Fatalf("GenerateURL = %q, %v", tok1, err)
	}
	if u1.Hint != tok1[60:] || strings.Contains(u1.Hash, tok1) {
		t.Fatalf("hint/hash wrong: %+v", u1)
	}
	_, tok2, err := c.GenerateURL(in.ID, now)
	if err != nil || tok2 == tok1 {
		t.Fatalf("second GenerateURL: %v", err)
	}
	if _, _, err := c.GenerateURL(in.ID, now); !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "revoke one") {
		t.Fatalf("third GenerateURL = %v, want conflict saying to revoke one", err)
	}
	if !c.Authenticate(in.ID, tok1, now) || c.Authenticate(in.ID+1, tok1, now) || c.Authenticate(in.ID, nearMiss(tok1), now) {
		t.Fatal("Authenticate is wrong")
	}
	if err := c.RevokeURL(in.ID, u1.ID, now); err != nil {
		t.Fatal(err)
	}
	if c.Authenticate(in.ID, tok1, now) || !c.Authenticate(in.ID, tok2, now) {
		t.Fatal("revoke did not take effect at once, or hit the other URL")
	}
	if err := c.FlushLastUsed(); err != nil {
		t.Fatal(err)
	}

	// Everything survives a restart, ids are never reused, and revoked stays revoked.
	st.Close()
	c, st = open(t, dir)
	defer st.Close()
	if c.Authenticate(in.ID, tok1, now) || !c.Authenticate(in.ID, tok2, now) || !c.CheckAdminKey(key) {
		t.Fatal("state lost across restart")
	}
	urls, err := c.URLs(in.ID)
	if err != nil || len(urls) != 2 || urls[0].RevokedAt == nil || urls[1].LastUsedAt == nil {
		t.Fatalf("URLs after restart = %+v, %v", urls, err)
	}
	if err := c.Delete(in.ID, now); err != nil {
		t.Fatal(err)
	}
	if c.Authenticate(in.ID, tok2, now) {
		t.Fatal("deleting the integration did not revoke its URLs")
	}
	in2, err := c.Create(control.NewIntegration{Name: "Other", Type: "webhooks", PrimaryKey: "id"}, now)
	if err != nil || in2.ID <= u1.ID+1 {
		t.Fatalf("new integration id %d reuses an id (last used %d): %v", in2.ID, u1.ID+1, err)
	}
	if _, err := c.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, now); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("a deleted integration's schema was reusable: %v", err)
	}
}

// nearMiss returns tok with its last hex digit changed, so it can never equal tok.
func nearMiss(tok string) string {
	last := byte('0')
	if tok[len(tok)-1] == '0' {
		last = '1'
	}
	return tok[:len(tok)-1] + string(last)
}
