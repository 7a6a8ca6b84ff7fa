#!/usr/bin/env bash
# The operator console's npm packages (firebase, esbuild) from package-lock.json, then its build
# (dist/console/). `make test-deps` and `make demo` run it; safe to run again: npm ci only when
# node_modules is missing or older than the lock.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the console is built with Node 20 and npm" >&2
  exit 1
fi
stamp=node_modules/.jobrelay-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  # No install scripts are needed: esbuild's binary comes as an optional dependency (@esbuild/linux-x64).
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
npm run build --silent
