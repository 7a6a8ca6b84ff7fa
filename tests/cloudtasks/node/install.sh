#!/usr/bin/env bash
# The official Node client for tests/cloudtasks/test_node_client.py, from package-lock.json (CI calls
# this through `make test-deps`; safe to run again). No install scripts are needed.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the Node client test needs Node 18+ and npm" >&2
  exit 1
fi

if [ ! -d node_modules/@google-cloud/tasks ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund
fi
