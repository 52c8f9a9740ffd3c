// Package faults lets the crash tests kill hookhouse at chosen moments: mid-fsync,
// mid-batch, between the warehouse commit and what follows it, and during schema
// evolution. It is inert unless HOOKHOUSE_FAULTS is set, e.g.
//
//	HOOKHOUSE_FAULTS="log.after-sync=0.01,warehouse.before-commit=0.2"
//
// names points and the chance that passing one kills the process with SIGKILL.
package faults

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The points hookhouse passes.
const (
	LogBeforeSync         = "log.before-sync"         // group commit built, not yet fsync'd
	LogAfterSync          = "log.after-sync"          // fsync'd, requests not yet answered
	WarehouseAfterEvolve  = "warehouse.after-evolve"  // schema changed inside the load transaction
	WarehouseBeforeCommit = "warehouse.before-commit" // rows and state written, not committed
	LoaderAfterCommit     = "loader.after-commit"     // batch committed, loader not yet told
	// A reset: tables dropped and position set back, not committed; and
	// committed in the warehouse, the control state not yet told.
	WarehouseResetBeforeCommit = "warehouse.reset-before-commit"
	LoaderResetAfterCommit     = "loader.reset-after-commit"
)

var (
	once   sync.Once
	points map[string]float64
)

func load() {
	spec := os.Getenv("HOOKHOUSE_FAULTS")
	if spec == "" {
		return
	}
	points = map[string]float64{}
	for _, part := range strings.Split(spec, ",") {
		name, p, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(p, 64); err == nil {
			points[name] = f
		}
	}
}

// Point kills the process at the named point with the configured chance.
func Point(name string) {
	once.Do(load)
	if points == nil {
		return
	}
	if p, ok := points[name]; ok && rand.Float64() < p {
		os.Stderr.WriteString("hookhouse: fault injection: SIGKILL at " + name + "\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never return: the signal is on its way
	}
}
