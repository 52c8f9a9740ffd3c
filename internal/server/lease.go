package server

import (
	"log/slog"

	"github.com/hookhouse/hookhouse/internal/loader"
	"github.com/hookhouse/hookhouse/internal/state"
)

// leasesFor makes this node's loader leases in cluster mode: over the state
// store's control keys (lease/<integration id>), the default 10 s TTL.
//
// Wiring (h-lease; the lead places it when merging h-serve, which adds
// cfg.NATS and cfg.NodeName): in New, where loader.Options are built,
//
//	var leases *loader.Leases
//	if cfg.NATS != "" {
//		leases = leasesFor(st, cfg.NodeName, logger)
//	}
//	... loader.Options{ ..., Leases: leases }
//
// On a single node (no --nats) Leases stays nil: that process loads every
// integration, as before.
func leasesFor(kv loader.LeaseKV, node string, logger *slog.Logger) *loader.Leases {
	return loader.NewLeases(kv, state.ErrNotFound, node, loader.DefaultLeaseTTL, logger.With("component", "lease"))
}
