#!/usr/bin/env bash
# One-time setup for the web client and its browser test (CI calls this; safe to run again):
# Debian's Chromium if it is missing, and examples/web/node_modules from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the web client needs Node 20 and npm" >&2
  exit 1
fi

# No install scripts are needed: esbuild's binary comes as an optional dependency (@esbuild/linux-x64).
if [ ! -x node_modules/.bin/esbuild ] || [ ! -d node_modules/firebase ]; then
  npm ci --ignore-scripts --no-audit --no-fund
fi

npm run build --silent
