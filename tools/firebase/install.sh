#!/usr/bin/env bash
# The Firebase CLI (firebase-tools 14.x) for the local stack's Auth emulator, into tools/firebase/node_modules
# from package-lock.json. Safe to run again: it does nothing when the installed CLI matches the lock.
# No install scripts are needed (the Auth emulator is plain JavaScript; re2's native build is optional).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the local stack's Auth emulator needs Node 20 and npm" >&2
  exit 1
fi

stamp=node_modules/.jobrelay-installed
if [ -x node_modules/.bin/firebase ] && [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then
  exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
touch "$stamp"
