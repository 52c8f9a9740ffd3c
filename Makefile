# The front door: make run, make test, make bench, make lint.
# Go 1.27.3 is the toolchain we build with: go1.26.8's standard library has
# reachable vulnerabilities (govulncheck, make lint) fixed there. The go command
# fetches it from the module proxy on first use (about 76 MB).
export GOTOOLCHAIN ?= go1.27.3
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages without cgo run under the race detector.
RACE_PKGS := ./internal/ingest/ ./internal/control/ ./internal/state/ ./internal/config/ ./internal/api/ ./client/ ./cmd/hookhouse/ ./internal/verify/ ./internal/secretbox/ ./internal/history/
FUZZTIME ?= 10s

.PHONY: build nats-server cluster-demo run test fuzz-short fuzz-long bench bench-smoke soak screenshots lint deps clean

# DuckDB's cgo bindings take about 2 minutes on 2 cores to compile, with no
# output; say so before a build that has to compile them (the first one, or after
# the build cache was cleaned). go list only checks the build cache (and shows
# the toolchain and module downloads a fresh clone needs).
DUCKDB_PKG := github.com/duckdb/duckdb-go/v2

build:
	@if [ "$$($(GO) list -f '{{.Stale}}' $(DUCKDB_PKG))" != false ]; then \
		echo "build: compiling DuckDB's cgo bindings first; this takes about 2 minutes on 2 cores and prints nothing until it is done (once: later builds reuse Go's build cache)"; \
	fi
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hookhouse ./cmd/hookhouse

# The NATS server for cluster mode (docs/cluster.md), built from the
# nats-server module version pinned in go.mod: no download site involved.
nats-server:
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2

run: build
	./bin/hookhouse serve

# A whole cluster on loopback (docs/cluster.md): 3 nats-server processes
# (sync_interval: always), a throwaway PostgreSQL and 3 hookhouse nodes; it
# prints their URLs and the admin key, and Ctrl-C stops everything.
cluster-demo: build nats-server
	$(GO) build -o bin/clusterdemo ./cmd/clusterdemo
	./bin/clusterdemo -bin bin/hookhouse

deps:
	./scripts/deps.sh
	./scripts/npm-test-deps.sh

test: deps build nats-server
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz-short
	$(MAKE) bench-smoke

# make bench's Go benchmarks, each run once, so that none breaks unnoticed
# (BenchmarkLoaderVero once panicked for weeks); about 40 s.
bench-smoke:
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x $(BENCH_PKGS)
	$(GO) test -count=1 -run='^$$' -bench=BenchmarkImport -benchtime=1x ./cmd/hookhouse/

BENCH_PKGS = ./internal/ingest/ ./internal/loader/ ./internal/warehouse/... ./internal/state/ ./internal/verify/ ./internal/history/ ./internal/server/

fuzz-short:
	$(GO) test -run='^$$' -fuzz=FuzzSplit -fuzztime=$(FUZZTIME) ./internal/ingest/
	$(GO) test -run='^$$' -fuzz=FuzzFlatten -fuzztime=$(FUZZTIME) ./internal/loader/
	$(GO) test -run='^$$' -fuzz=FuzzVerify -fuzztime=$(FUZZTIME) ./internal/verify/

# The crash matrix with many kills per warehouse (make test runs 5 per warehouse).
SOAK_KILLS ?= 25
soak: deps build
	HOOKHOUSE_CRASH_KILLS=$(SOAK_KILLS) $(GO) test -count=1 -v -timeout 60m -run 'TestCrashExactlyOnce' ./e2e/

# Long fuzzing runs (10 minutes per target by default).
fuzz-long:
	$(MAKE) fuzz-short FUZZTIME=10m

# Refresh the README's screenshots from the browser test.
screenshots: deps
	HOOKHOUSE_SCREENSHOTS_DIR=$(CURDIR)/docs/img $(GO) test -count=1 -run 'TestDashboardInBrowser' ./e2e/

bench: deps build nats-server
	$(GO) test -run='^$$' -bench=. -benchtime=2s $(BENCH_PKGS)
	$(GO) test -run='^$$' -bench=BenchmarkImport -benchtime=1x ./cmd/hookhouse/
	$(GO) run ./cmd/bench -bin bin/hookhouse
	$(GO) run ./cmd/bench -cluster

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	./scripts/govulncheck.sh

clean:
	rm -rf bin
