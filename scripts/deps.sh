#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing:
# PostgreSQL server binaries (throwaway servers for the warehouse tests) and
# Chromium (dashboard tests). Needs root for apt-get; otherwise it only checks.
set -euo pipefail
need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  need+=(chromium)
fi
if ! id postgres >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # The postgresql package creates this user; the tests run initdb as it.
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run make test as root" >&2
  exit 1
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
