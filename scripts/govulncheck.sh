#!/usr/bin/env bash
# govulncheck without internet: vuln.go.dev is not reachable here, so the
# vulnerability database is built from the golang.org/x/vulndb module (served by
# the Go module proxy) with its own indexdb tool, cached, and passed with -db.
set -euo pipefail
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
VULN_VERSION=${VULN_VERSION:-v1.9.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hookhouse-vulndb/$VULNDB_VERSION
if [ ! -f "$cache/index/db.json" ]; then
  echo "govulncheck: building the vulnerability database $VULNDB_VERSION (once)" >&2
  src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$cache.tmp" && mkdir -p "$(dirname "$cache")"
  go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$cache.tmp"
  mv "$cache.tmp" "$cache"
fi
exec go run "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION" -db "file://$cache" ./...
