package control_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookhouse/hookhouse/internal/control"
	"github.com/hookhouse/hookhouse/internal/secretbox"
	"github.com/hookhouse/hookhouse/internal/verify"
)

func box(t *testing.T) *secretbox.Box {
	t.Helper()
	key := make([]byte, secretbox.KeySize)
	rand.Read(key)
	b, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigningSecrets: secrets are stored sealed, opened again after a restart
// with the same key (and refused with another), limited to two for a
// rotation, and the last one cannot be removed.
func TestSigningSecrets(t *testing.T) {
	dir := t.TempDir()
	key := box(t)
	s, st := open(t, dir)
	if err := s.SetSealer(key); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	github := &verify.Config{Scheme: verify.GitHub}
	if _, err := s.Create(control.NewIntegration{Name: "GH", Type: "webhooks", Verify: github}, now); err == nil {
		t.Fatal("Create dropped a generated secret instead of refusing")
	}
	if _, _, err := s.CreateRevealing(control.NewIntegration{Name: "Vero", Type: "vero", Verify: github, Secret: "x"}, now); !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("verify on a vero integration: %v, want ErrInvalid", err)
	}
	const pasted = "It's a Secret to Everybody"
	in, revealed, err := s.CreateRevealing(control.NewIntegration{Name: "GH", Type: "webhooks", Verify: github, Secret: pasted}, now)
	if err != nil || revealed != "" {
		t.Fatalf("CreateRevealing = %v, %q, %v", in, revealed, err)
	}
	gen, revealed, err := s.CreateRevealing(control.NewIntegration{Name: "Svix", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.StandardWebhooks}}, now)
	if err != nil || !strings.HasPrefix(revealed, "whsec_") {
		t.Fatalf("generated secret: %q, %v", revealed, err)
	}
	list, _ := s.Secrets(gen.ID)
	if len(list) != 1 || !strings.HasSuffix(revealed, list[0].Hint) {
		t.Fatalf("secrets %+v", list)
	}
	// Stripe issues its secret only once the endpoint (the URL) exists: the
	// integration starts without one and refuses deliveries until it is added.
	stripe, revealed2, err := s.CreateRevealing(control.NewIntegration{Name: "Stripe", Type: "webhooks",
		Verify: &verify.Config{Scheme: verify.Stripe}}, now)
	if err != nil || revealed2 != "" {
		t.Fatalf("Stripe without a secret: %v, %q, %v", stripe, revealed2, err)
	}
	if v, verifying := s.Verifier(stripe.ID); !verifying || v != nil {
		t.Fatalf("Stripe without a secret: verifier %v, verifying %v; want refuse-all", v, verifying)
	}
	if _, _, err := s.AddSecret(stripe.ID, "whsec_from_stripe", now); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Verifier(stripe.ID); v == nil {
		t.Fatal("no verifier after the secret was added")
	}
	// Nothing stored holds a secret in the clear.
	st.Scan("", func(k string, v []byte) error {
		if bytes.Contains(v, []byte(pasted)) || bytes.Contains(v, []byte(revealed)) {
			t.Errorf("key %s holds a secret in the clear", k)
		}
		return nil
	})
	// GitHub's example from its docs verifies with the pasted secret.
	sign := func(v *verify.Verifier) bool {
		h := http.Header{"X-Hub-Signature-256": {"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}}
		return v.Verify(h, []byte("Hello, World!"), now).Valid
	}
	v, verifying := s.Verifier(in.ID)
	if !verifying || v == nil || !sign(v) {
		t.Fatalf("verifier %v %v: GitHub's documented example does not verify", v, verifying)
	}
	if _, verifying := s.Verifier(999); verifying {
		t.Fatal("an unknown integration verifies")
	}

	// Rotation: a second secret, a third refused, the last not removable.
	second, _, err := s.AddSecret(in.ID, "the new secret", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddSecret(in.ID, "a third", now); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("a third secret: %v, want ErrConflict", err)
	}
	if err := s.RemoveSecret(in.ID, list[0].ID+100, now); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("removing an unknown secret: %v", err)
	}
	first, _ := s.Secrets(in.ID)
	if err := s.RemoveSecret(in.ID, first[0].ID, now); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveSecret(in.ID, second.ID, now); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("removing the last secret: %v, want ErrConflict", err)
	}
	if v, _ := s.Verifier(in.ID); sign(v) {
		t.Fatal("the removed secret still verifies")
	}
	st.Close()

	// After a restart: the same key opens them, another key is refused.
	s, st = open(t, dir)
	if err := s.SetSealer(box(t)); err == nil || !strings.Contains(err.Error(), "secret.key") {
		t.Fatalf("SetSealer with another key: %v, want a refusal naming the key file", err)
	}
	st.Close()
	s, st = open(t, dir)
	defer st.Close()
	if err := s.SetSealer(key); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.Secrets(in.ID); len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("after a restart: secrets %+v", list)
	}
	if v, verifying := s.Verifier(gen.ID); !verifying || v == nil {
		t.Fatal("after a restart the generated secret's verifier is missing")
	}
}
