package control_test

import (
	"crypto/sha256"
	"encoding/hex"
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
	// Revoking again changes nothing and says when it happened.
	err = c.RevokeURL(in.ID, u1.ID, now.Add(time.Hour))
	if !errors.Is(err, control.ErrAlreadyRevoked) || !errors.Is(err, control.ErrConflict) ||
		!strings.Contains(err.Error(), "already revoked at "+now.UTC().Format(time.RFC3339)) {
		t.Fatalf("second RevokeURL = %v, want ErrAlreadyRevoked with the first revocation's time", err)
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
	// Integrations and URLs count separately, and a deleted integration's id stays taken.
	in2, err := c.Create(control.NewIntegration{Name: "Other", Type: "webhooks", PrimaryKey: "id"}, now)
	if err != nil || in2.ID != in.ID+1 {
		t.Fatalf("second integration = %+v, %v; want id %d", in2, err, in.ID+1)
	}
	u3, _, err := c.GenerateURL(in2.ID, now)
	if err != nil || u3.ID != 3 {
		t.Fatalf("third URL = %+v, %v; want id 3", u3, err)
	}
	if _, err := c.Create(control.NewIntegration{Name: "Stitch Vero", Type: "vero"}, now); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("a deleted integration's schema was reusable: %v", err)
	}
}

// TestSharedCounterUpgrade opens a state written while integrations and URLs drew
// ids from one counter (meta/next_id): integrations 1 and 3, URLs 2 and 4, and 5
// the last id handed out (URL 5 of integration 1 was revoked). Every id stays, the
// tokens still work, integrations continue at 4 and URLs at 6.
func TestSharedCounterUpgrade(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.OpenPebble(dir, logger, state.Options{MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	tok2, tok4 := strings.Repeat("2", 64), strings.Repeat("4", 64)
	hash := func(tok string) string { h := sha256.Sum256([]byte(tok)); return hex.EncodeToString(h[:]) }
	old := map[string]string{
		"meta/next_id":                     "5",
		"integration/00000000000000000001": `{"id":1,"name":"Stitch Vero","type":"vero","schema":"stitch_vero","created_at":"2026-01-02T10:00:00Z"}`,
		"integration/00000000000000000003": `{"id":3,"name":"Orders","type":"webhooks","schema":"orders","created_at":"2026-01-02T10:01:00Z"}`,
		"url/00000000000000000002":         `{"id":2,"integration_id":1,"hash":"` + hash(tok2) + `","hint":"2222","created_at":"2026-01-02T10:00:00Z","last_used_at":null,"revoked_at":null}`,
		"url/00000000000000000004":         `{"id":4,"integration_id":3,"hash":"` + hash(tok4) + `","hint":"4444","created_at":"2026-01-02T10:01:00Z","last_used_at":null,"revoked_at":null}`,
		"url/00000000000000000005":         `{"id":5,"integration_id":1,"hash":"` + hash("gone") + `","hint":"gone","created_at":"2026-01-02T10:02:00Z","last_used_at":null,"revoked_at":"2026-01-02T10:03:00Z"}`,
	}
	kvs := map[string][]byte{}
	for k, v := range old {
		kvs[k] = []byte(v)
	}
	if err := st.Put(kvs); err != nil {
		t.Fatal(err)
	}
	st.Close()

	c, st := open(t, dir)
	now := time.Now()
	ins := c.Integrations()
	if len(ins) != 2 || ins[0].ID != 1 || ins[1].ID != 3 || ins[1].Schema != "orders" {
		t.Fatalf("integrations after the upgrade = %+v, want ids 1 and 3", ins)
	}
	if !c.Authenticate(1, tok2, now) || !c.Authenticate(3, tok4, now) || c.Authenticate(1, tok4, now) {
		t.Fatal("the old webhook URLs do not authenticate as before")
	}
	in, err := c.Create(control.NewIntegration{Name: "Third", Type: "vero"}, now)
	if err != nil || in.ID != 4 {
		t.Fatalf("next integration = %+v, %v; want id 4 (after the highest, 3)", in, err)
	}
	u, _, err := c.GenerateURL(in.ID, now)
	if err != nil || u.ID != 6 {
		t.Fatalf("next URL = %+v, %v; want id 6 (after the shared counter, 5)", u, err)
	}
	// An older hookhouse reading meta/next_id would continue after every id taken.
	if v, err := st.Get("meta/next_id"); err != nil || string(v) != "6" {
		t.Errorf("meta/next_id = %q, %v; want 6", v, err)
	}

	// The counters themselves survive a restart.
	st.Close()
	c, st = open(t, dir)
	defer st.Close()
	in, err = c.Create(control.NewIntegration{Name: "Fourth", Type: "vero"}, now)
	if err != nil || in.ID != 5 {
		t.Fatalf("integration after a restart = %+v, %v; want id 5", in, err)
	}
	u, _, err = c.GenerateURL(1, now)
	if err != nil || u.ID != 7 {
		t.Fatalf("URL after a restart = %+v, %v; want id 7", u, err)
	}
	urls, err := c.URLs(1)
	if err != nil || len(urls) != 3 || urls[0].ID != 2 || urls[1].ID != 5 || urls[1].RevokedAt == nil || urls[2].ID != 7 {
		t.Fatalf("URLs of integration 1 = %+v, %v; want 2, 5 (revoked) and 7", urls, err)
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
