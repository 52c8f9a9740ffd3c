package verify

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// whsecPrefix starts a Standard Webhooks secret; Stripe's secrets start with
// it too, but Stripe uses the whole string as the key (see secretKey).
const whsecPrefix = "whsec_"

// generatedBytes is how much randomness a generated secret carries: 32 bytes,
// inside the 24 to 64 bytes the Standard Webhooks spec asks of a secret.
const generatedBytes = 32

// GenerateSecret makes a new secret for an integration created without one,
// for the schemes where the receiver may choose the secret:
//   - standard-webhooks: "whsec_" + base64 of 32 random bytes, the format its
//     libraries read (pasted into the sender, e.g. a Svix-based dashboard);
//   - github and hmac: 64 hex characters (GitHub lets you type any secret).
//
// The other providers issue the secret themselves (Stripe, Shopify, Slack,
// Zoom and Meta show it in their dashboards): paste theirs instead.
func GenerateSecret(s Scheme) (string, error) {
	b := make([]byte, generatedBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("verify: generate a secret: %w", err)
	}
	switch s {
	case StandardWebhooks:
		return whsecPrefix + base64.StdEncoding.EncodeToString(b), nil
	case GitHub, HMAC:
		return hex.EncodeToString(b), nil
	}
	return "", fmt.Errorf("verify: %s issues its own signing secret: copy it from the provider's dashboard and pass it as \"secret\"", s)
}

// ValidateSecret reports whether secret can be used with scheme s, before it
// is stored. The error never contains the secret.
func ValidateSecret(s Scheme, secret []byte) error {
	_, err := secretKey(s, secret)
	return err
}

// secretKey derives the HMAC key from a secret as the user pasted it:
//   - standard-webhooks: the base64 after "whsec_" is decoded and the bytes
//     are the key (the spec's format; a secret without the prefix is decoded
//     whole, as the official libraries do);
//   - stripe: the whole text, "whsec_" included, is the key, not decoded
//     (stripe-node and stripe-go hash the secret string as is);
//   - github, shopify, slack, zoom, meta and hmac: the text as UTF-8 bytes,
//     as each provider's sample code passes it to its HMAC.
//
// Surrounding white space is trimmed first: a secret pasted with a trailing
// newline is the commonest cause of "signature never matches", and no
// provider issues secrets with white space in them.
func secretKey(s Scheme, secret []byte) ([]byte, error) {
	text := strings.TrimSpace(string(secret))
	if text == "" {
		return nil, errors.New("verify: the secret is empty: paste the signing secret from the provider")
	}
	if s != StandardWebhooks {
		return []byte(text), nil
	}
	enc := strings.TrimPrefix(text, whsecPrefix)
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(enc)
	}
	if err != nil || len(key) == 0 {
		return nil, errors.New("verify: a standard-webhooks secret is \"whsec_\" followed by base64; this one does not decode: copy it again from the sender, or omit it to have one generated")
	}
	return key, nil
}
