# The front door: make run, make test, make bench, make lint.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages without cgo run under the race detector.
RACE_PKGS := ./internal/ingest/ ./internal/control/ ./internal/state/ ./internal/config/ ./internal/api/ ./client/ ./cmd/hookhouse/
FUZZTIME ?= 10s

.PHONY: build run test test-unit fuzz-short bench soak lint deps clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hookhouse ./cmd/hookhouse

run: build
	./bin/hookhouse serve

deps:
	./scripts/deps.sh

test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz-short

fuzz-short:
	$(GO) test -run='^$$' -fuzz=FuzzSplit -fuzztime=$(FUZZTIME) ./internal/ingest/
	$(GO) test -run='^$$' -fuzz=FuzzFlatten -fuzztime=$(FUZZTIME) ./internal/loader/

bench: deps build
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./internal/ingest/ ./internal/loader/ ./internal/warehouse/... ./internal/state/
	$(GO) run ./cmd/bench -bin bin/hookhouse

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./...

clean:
	rm -rf bin
