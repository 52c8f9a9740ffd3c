package web

import (
	"html/template"

	"github.com/hookhouse/hookhouse/internal/verify"
)

// schemeInfo is what the dashboard says about one signature scheme: how it is
// offered in the add form, and the provider's setup steps (where the webhook
// URL and the secret go in its UI) on the form, the reveal and the
// integration page. The steps are written here, not taken from user input,
// so they are HTML.
type schemeInfo struct {
	ID    verify.Scheme // "" is no verification: the secret URL alone
	Label string
	Note  string // after the label in the picker
	// Provider names who signs, in a sentence: "Stripe", "the sender".
	Provider string
	// CanGenerate: hookhouse may choose the secret (verify.GenerateSecret
	// says which schemes); otherwise the provider issues it and it is pasted.
	CanGenerate bool
	// SecretFrom says where the secret comes from, under the secret field.
	SecretFrom template.HTML
	// Steps are the set-up steps in the provider's UI, in order.
	Steps []template.HTML
	// Where is one line for the reveal page: where the URL and secret go.
	Where template.HTML
	// Checks says what is verified and how redeliveries are recognised.
	Checks string
}

// schemes are offered in this order: none first, then verify.Schemes.
var schemes = buildSchemes()

func buildSchemes() []schemeInfo {
	list := []schemeInfo{
		{
			ID: "", Provider: "your service", Label: "None", Note: "the secret URL alone authenticates",
			Steps: []template.HTML{
				"Paste the webhook URL into your service's webhook setting. Anyone who has the URL can send data: keep it secret, and rotate it if it leaks.",
			},
			Where:  "Paste the URL into your service's webhook setting.",
			Checks: "Only the secret URL is checked; redeliveries are not recognised.",
		},
		{
			ID: verify.StandardWebhooks, Provider: "the sender", Label: "Standard Webhooks", Note: "Svix, OpenAI, Clerk, Resend and other senders of webhook-signature",
			SecretFrom: "The endpoint's signing secret, <code>whsec_…</code>. Leave empty to generate one, if the sender lets you set the secret (Svix's API does).",
			Steps: []template.HTML{
				"In the sender's dashboard, add a webhook endpoint (or edit yours): paste the webhook URL as its <strong>Endpoint URL</strong>, choose the events, and set the signing secret hookhouse generated as its <strong>Signing secret</strong>.",
				"A sender that makes its own secret (<code>whsec_…</code>) when the endpoint is created: use that one instead. Once the integration exists, <strong>Add secret</strong> with it, then <strong>Remove</strong> the generated one; deliveries in between get 401 and are retried by the sender.",
			},
			Where:  "In the sender's dashboard: the URL as the endpoint's URL, the secret as its signing secret.",
			Checks: "webhook-signature (v1, HMAC-SHA256 of id.timestamp.body) with webhook-timestamp within the tolerance; redeliveries are recognised by webhook-id.",
		},
		{
			ID: verify.Stripe, Provider: "Stripe", Label: "Stripe", Note: "Stripe-Signature",
			SecretFrom: "The endpoint's signing secret (<code>whsec_…</code>): Stripe issues it, so it must be pasted.",
			Steps: []template.HTML{
				"In the Stripe Dashboard: <strong>Developers → Webhooks → Add endpoint</strong>. Paste the webhook URL into <strong>Endpoint URL</strong>, select the events, and save.",
				"On the endpoint's page, <strong>Signing secret → Reveal</strong>: copy the <code>whsec_…</code> value. It is the integration's signing secret.",
				"Stripe shows the secret only once the endpoint exists: you may create the integration without a secret, create the endpoint with its URL, then <strong>Add secret</strong> with Stripe's. Until then deliveries are refused with 401, and Stripe retries them.",
			},
			Where:  "In Stripe: <strong>Developers → Webhooks</strong>, the URL into the endpoint's <strong>Endpoint URL</strong>.",
			Checks: "Stripe-Signature (t=…, v1=… over timestamp.body) within the tolerance; redeliveries are recognised by the event's id.",
		},
		{
			ID: verify.GitHub, Provider: "GitHub", Label: "GitHub", Note: "X-Hub-Signature-256",
			SecretFrom: "Leave empty to generate one (shown once), or paste your own.",
			Steps: []template.HTML{
				"In the repository or organization: <strong>Settings → Webhooks → Add webhook</strong>. Paste the webhook URL into <strong>Payload URL</strong>, choose <strong>Content type</strong> <code>application/json</code> (hookhouse takes JSON only), paste the signing secret into <strong>Secret</strong>, pick the events, then <strong>Add webhook</strong>.",
			},
			Where:  "In GitHub: <strong>Settings → Webhooks → Add webhook</strong>, the URL into <strong>Payload URL</strong> (content type <code>application/json</code>), the secret into <strong>Secret</strong>.",
			Checks: "X-Hub-Signature-256 (sha256=, HMAC of the body); redeliveries are recognised by X-GitHub-Delivery.",
		},
		{
			ID: verify.Shopify, Provider: "Shopify", Label: "Shopify", Note: "X-Shopify-Hmac-Sha256",
			SecretFrom: "Shopify issues it: paste it.",
			Steps: []template.HTML{
				"Webhooks made in the Shopify admin: <strong>Settings → Notifications → Webhooks</strong> shows the secret they are signed with; it is the integration's signing secret. Webhooks of an app are signed with the app's <strong>client secret</strong>.",
				"<strong>Create webhook</strong>: choose the event, format <strong>JSON</strong>, paste the webhook URL into <strong>URL</strong>, and save.",
			},
			Where:  "In Shopify: <strong>Settings → Notifications → Webhooks → Create webhook</strong>, format JSON, the URL into <strong>URL</strong>.",
			Checks: "X-Shopify-Hmac-Sha256 (base64 HMAC of the body); redeliveries are recognised by X-Shopify-Webhook-Id.",
		},
		{
			ID: verify.Slack, Provider: "Slack", Label: "Slack", Note: "Events API, X-Slack-Signature",
			SecretFrom: "The app's signing secret: Slack issues it, so it must be pasted.",
			Steps: []template.HTML{
				"At api.slack.com/apps, open your app: <strong>Basic Information → App Credentials → Signing Secret → Show</strong>. It is the integration's signing secret.",
				"Once the integration exists, <strong>Event Subscriptions → Enable Events</strong>: paste the webhook URL into <strong>Request URL</strong>. Slack sends a challenge that hookhouse answers, so it shows <em>Verified</em>. Subscribe to the events and <strong>Save Changes</strong>.",
			},
			Where:  "In Slack: <strong>Event Subscriptions → Request URL</strong>; hookhouse answers Slack's challenge.",
			Checks: "X-Slack-Signature (v0=, HMAC of v0:timestamp:body) with X-Slack-Request-Timestamp within the tolerance; the url_verification challenge is answered; redeliveries are recognised by event_id.",
		},
		{
			ID: verify.Zoom, Provider: "Zoom", Label: "Zoom", Note: "x-zm-signature",
			SecretFrom: "The app's secret token: Zoom issues it, so it must be pasted.",
			Steps: []template.HTML{
				"In the Zoom App Marketplace, open your app's <strong>Features → Access</strong>: the <strong>Secret Token</strong> is the integration's signing secret.",
				"Once the integration exists, turn on <strong>Event Subscription</strong>, <strong>Add Event Subscription</strong>: paste the webhook URL into <strong>Event notification endpoint URL</strong> and press <strong>Validate</strong> (hookhouse answers Zoom's challenge), add the events, and save.",
			},
			Where:  "In Zoom: <strong>Event Subscription → Event notification endpoint URL</strong>, then <strong>Validate</strong>.",
			Checks: "x-zm-signature (v0=, HMAC of v0:timestamp:body) with x-zm-request-timestamp within the tolerance; endpoint.url_validation is answered.",
		},
		{
			ID: verify.Meta, Provider: "Meta", Label: "Meta", Note: "Facebook, Instagram, WhatsApp: X-Hub-Signature-256",
			SecretFrom: "The app secret: Meta issues it, so it must be pasted.",
			Steps: []template.HTML{
				"In the Meta App Dashboard: <strong>App settings → Basic → App secret → Show</strong>. It is the integration's signing secret; the verify token is any string you choose.",
				"Once the integration exists, <strong>Webhooks</strong> (or your use case's webhook settings): choose the object, paste the webhook URL into <strong>Callback URL</strong> and the verify token into <strong>Verify token</strong>, press <strong>Verify and save</strong> (hookhouse answers the check), and subscribe to the fields.",
			},
			Where:  "In Meta: <strong>Webhooks</strong>, the URL into <strong>Callback URL</strong> and your verify token into <strong>Verify token</strong>.",
			Checks: "X-Hub-Signature-256 (sha256=, HMAC of the body with the app secret); the GET hub.challenge with your verify token is answered.",
		},
		{
			ID: verify.HMAC, Provider: "the sender", Label: "Generic HMAC", Note: "any sender that signs with a shared secret",
			SecretFrom: "Leave empty to generate one (shown once), or paste the sender's.",
			Steps: []template.HTML{
				"Tell hookhouse how the sender signs: the header with the signature, its prefix, the algorithm and encoding, and what is signed (<code>{body}</code>, or a template with <code>{timestamp}</code> and <code>{id}</code> and the headers that carry them).",
				"Give the sender the webhook URL and the signing secret (its own, or the one hookhouse generated).",
			},
			Where:  "Give the sender the URL and the secret.",
			Checks: "The configured header: an HMAC of the signed template, a timestamp within the tolerance when one is signed; redeliveries are recognised by the id header, when set.",
		},
	}
	for i := range list {
		if list[i].ID != "" {
			_, err := verify.GenerateSecret(list[i].ID)
			list[i].CanGenerate = err == nil
		}
	}
	return list
}

// schemeOf describes scheme s; unknown schemes read as none.
func schemeOf(s verify.Scheme) schemeInfo {
	for _, sc := range schemes {
		if sc.ID == s {
			return sc
		}
	}
	return schemes[0]
}
