package client

import "time"

// Integration types (SPEC §2).
const (
	TypeVero     = "vero"     // branded: append-only, no primary key
	TypeWebhooks = "webhooks" // generic, optional primary key
)

// CodeAlreadyRevoked is the Error.Code of RevokeURL for a URL revoked before.
const CodeAlreadyRevoked = "already_revoked"

// ListTablesSQL lists the tables of every integration schema, through Query, on
// either warehouse. (DuckDB's SHOW TABLES lists its main schema, which holds no
// integration; PostgreSQL has no SHOW TABLES.)
const ListTablesSQL = `SELECT table_schema, table_name FROM information_schema.tables ` +
	`WHERE table_schema NOT IN ('_hookhouse','information_schema','pg_catalog') ORDER BY 1, 2`

// Component states in the status report (SPEC §8).
const (
	StatusOperational = "operational"
	StatusDegraded    = "degraded"
	StatusDown        = "down"
)

// Integration is one source of webhooks and the warehouse schema it loads into.
type Integration struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Schema     string    `json:"schema"`
	PrimaryKey string    `json:"primary_key,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// Verify is how deliveries are signed (type webhooks); nil: not verified.
	Verify *Verify `json:"verify,omitempty"`
	// DedupeWindow is how long a delivery id counts as seen ("" : the default).
	DedupeWindow string `json:"dedupe_window,omitempty"`
	// Secrets lists the signing secrets by hint; never the secrets.
	Secrets []Secret `json:"secrets,omitempty"`
	// Secret is a generated signing secret, only in CreateIntegration's answer.
	Secret string `json:"secret,omitempty"`
	// Stats is only filled by Client.Integration, not by the listing.
	Stats *Stats `json:"stats,omitempty"`
}

// Verify is an integration's signature verification (see docs/api.md): the
// scheme (standard-webhooks, stripe, github, shopify, slack, zoom, meta, hmac),
// enforce or monitor, the timestamp tolerance, and for the generic hmac scheme
// how the sender signs. Secret is only sent, on creation; "" asks the server
// to generate one where the scheme allows.
type Verify struct {
	Scheme          string `json:"scheme"`
	Secret          string `json:"secret,omitempty"`
	Mode            string `json:"mode,omitempty"`
	Tolerance       string `json:"tolerance,omitempty"`
	Algorithm       string `json:"algorithm,omitempty"`
	Header          string `json:"header,omitempty"`
	Prefix          string `json:"prefix,omitempty"`
	Encoding        string `json:"encoding,omitempty"`
	Signed          string `json:"signed,omitempty"`
	TimestampHeader string `json:"timestamp_header,omitempty"`
	IDHeader        string `json:"id_header,omitempty"`
	VerifyToken     string `json:"verify_token,omitempty"`
}

// Secret is one signing secret as the server shows it: its hint (last 4
// characters), never the secret, except Secret in the answer that generated it.
type Secret struct {
	ID        int64     `json:"id"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"secret,omitempty"`
}

// Failure is a signature failure: when, and the reason (never a secret).
type Failure struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Stats tells how far loading of one integration has come.
type Stats struct {
	RecordsReceived int64      `json:"records_received"`
	RecordsLoaded   int64      `json:"records_loaded"`
	RecordsRejected int64      `json:"records_rejected"`
	LastReceivedAt  *time.Time `json:"last_received_at"`
	LastLoadedAt    *time.Time `json:"last_loaded_at"`
	Backlog         int64      `json:"backlog"`
	LagSeconds      float64    `json:"lag_seconds"`
	// LoadError says why loading is failing; "" while it works.
	LoadError string `json:"load_error,omitempty"`
	// Paused: loading is paused by an operator; receiving goes on.
	Paused bool `json:"paused,omitempty"`
	// Reset is the progress of the integration's last reset; nil if none.
	Reset *ResetProgress `json:"reset,omitempty"`
	// For integrations that verify signatures.
	SignatureFailures    *int64   `json:"signature_failures,omitempty"`
	LastSignatureFailure *Failure `json:"last_signature_failure,omitempty"`
	RecordsDeduplicated  *int64   `json:"records_deduplicated,omitempty"`
}

// NewIntegration is the request to create an integration. Schema is derived from Name
// by the server when empty; PrimaryKey is for the webhooks type only.
type NewIntegration struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Schema     string  `json:"schema,omitempty"`
	PrimaryKey string  `json:"primary_key,omitempty"`
	Verify     *Verify `json:"verify,omitempty"`
	// DedupeWindow is how long a delivery id counts as seen, e.g. "48h" ("":
	// 168h).
	DedupeWindow string `json:"dedupe_window,omitempty"`
}

// WebhookURL is one secret URL of an integration. URL is set only in the answer to
// Client.GenerateURL: the server never shows it again. Hint is the non-secret last
// four characters of the token.
type WebhookURL struct {
	ID         int64      `json:"id"`
	URL        string     `json:"url,omitempty"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// QueryResult is the answer to a read-only SQL query. Numbers in Rows are json.Number,
// so that 64-bit integers such as _sdc_sequence keep every digit; NULL is nil.
type QueryResult struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated,omitempty"`
}

// Status is the report of /status.json. Integrations is empty when the server was not
// given the admin key.
type Status struct {
	Status       string              `json:"status"`
	Version      string              `json:"version"`
	Components   []Component         `json:"components"`
	Integrations []IntegrationStatus `json:"integrations,omitempty"`
}

// Component is one part of the pipeline: receiver, log, loader or warehouse.
type Component struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // StatusOperational, StatusDegraded or StatusDown
	Message string `json:"message"`
}

// IntegrationStatus is the freshness of one integration in the status report.
type IntegrationStatus struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Schema string `json:"schema"`
	Stats
}

// ResetProgress is how far an integration's last reset has come: records
// reloaded of total, rate and ETA.
type ResetProgress struct {
	RequestedAt      time.Time  `json:"requested_at"`
	CommittedAt      *time.Time `json:"committed_at,omitempty"`
	FinishedAt       *time.Time `json:"finished_at,omitempty"`
	FromPosition     uint64     `json:"from_position"`
	TargetPosition   uint64     `json:"target_position"`
	RecordsReloaded  int64      `json:"records_reloaded"`
	RecordsTotal     int64      `json:"records_total"`
	RecordsPerSecond float64    `json:"records_per_second"`
	ETASeconds       *float64   `json:"eta_seconds,omitempty"`
	Done             bool       `json:"done"`
}
