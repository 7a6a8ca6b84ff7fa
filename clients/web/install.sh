#!/usr/bin/env bash
# @jobrelay/client's dependencies (firebase, typescript) from package-lock.json, then its build (dist/).
# Safe to run again: npm ci only when node_modules is missing or older than the lock, and the build
# only when a source file (or the compiler's settings) is newer than dist/.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: @jobrelay/client is built with Node 20 and npm" >&2
  exit 1
fi
stamp=node_modules/.jobrelay-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
built=dist/.jobrelay-built
if [ ! -f "$built" ] || [ -n "$(find src tsconfig.json package.json "$stamp" -newer "$built" -print -quit)" ]; then
  npm run build --silent
  touch "$built"
fi
