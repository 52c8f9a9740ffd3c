#!/usr/bin/env bash
# govulncheck without internet: vuln.go.dev is not reachable here, so the
# vulnerability database is built from the golang.org/x/vulndb module (served by
# the Go module proxy) with its own indexdb tool, cached, and passed with -db.
# It prints the database's date and warns when it is more than 30 days old.
set -euo pipefail
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
VULN_VERSION=${VULN_VERSION:-v1.9.0}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hookhouse-vulndb/$VULNDB_VERSION

# The database is as new as the pinned vulndb commit: say how old, and warn
# (without failing) once it is past MAX_AGE_DAYS, since newer advisories are not
# checked. The date is the pseudo-version's timestamp (vX.Y.Z-yyyymmddhhmmss-hash).
MAX_AGE_DAYS=${MAX_AGE_DAYS:-30}
stale=""
stamp=$(printf '%s\n' "$VULNDB_VERSION" | sed -n 's/.*-\([0-9]\{8\}\)[0-9]\{6\}-[0-9a-f]\{12\}$/\1/p')
if [ -n "$stamp" ]; then
  day="${stamp:0:4}-${stamp:4:2}-${stamp:6:2}"
  then_s=$(date -u -d "$day" +%s 2>/dev/null || date -u -j -f %Y-%m-%d "$day" +%s 2>/dev/null || true)
  if [ -n "$then_s" ]; then
    age=$(( ($(date -u +%s) - then_s) / 86400 ))
    echo "govulncheck: vulnerability database of $day, $age days old (golang.org/x/vulndb@$VULNDB_VERSION)" >&2
    if [ "$age" -gt "$MAX_AGE_DAYS" ]; then
      stale="govulncheck: WARNING: the vulnerability database of $day is $age days old (more than $MAX_AGE_DAYS): advisories published since are not checked.
govulncheck:   run with the newest: VULNDB_VERSION=\$(go list -m -f '{{.Version}}' golang.org/x/vulndb@latest) make lint
govulncheck:   and make it the default VULNDB_VERSION in scripts/govulncheck.sh"
      echo "$stale" >&2
    fi
  else
    echo "govulncheck: vulnerability database of $day (golang.org/x/vulndb@$VULNDB_VERSION)" >&2
  fi
else
  echo "govulncheck: vulnerability database golang.org/x/vulndb@$VULNDB_VERSION (date unknown: not a pseudo-version)" >&2
fi

if [ ! -f "$cache/index/db.json" ]; then
  echo "govulncheck: building the vulnerability database $VULNDB_VERSION (once)" >&2
  src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$cache.tmp" && mkdir -p "$(dirname "$cache")"
  go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$cache.tmp"
  mv "$cache.tmp" "$cache"
fi
status=0
go run "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION" -db "file://$cache" ./... || status=$?
if [ -n "$stale" ]; then
  echo "$stale" >&2 # again, below govulncheck's report, where it is seen
fi
exit "$status"
