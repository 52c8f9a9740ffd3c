#!/usr/bin/env bash
# Installs the npm packages the internal/verify tests sign with: the vendors'
# own webhook signers (standardwebhooks, stripe, @octokit/webhooks-methods),
# at the versions pinned in internal/verify/testdata/js/package-lock.json.
# Skips the install when node_modules already matches the lock file.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/internal/verify/testdata/js"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm-test-deps: npm not found; install Node.js 20 or newer (apt-get install -y nodejs npm), or the verify tests cannot make vendor signatures" >&2
  exit 1
fi
# A copy of the lock file in node_modules marks a finished install of it.
stamp="$dir/node_modules/.hookhouse-lock.json"
if cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null; then
  exit 0
fi
echo "npm-test-deps: installing the webhook signers into $dir/node_modules" >&2
cd "$dir"
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
