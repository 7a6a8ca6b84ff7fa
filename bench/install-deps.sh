#!/usr/bin/env bash
# What the benchmarks need beyond `make install`: the `bench` extra (Celery with Redis, psutil) and
# redis-server from Debian for bench.peers. Idempotent; run by `make bench` and `make soak`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet -e '.[dev,bench]'
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq redis-server >/dev/null
  else
    echo "bench.peers needs redis-server: run 'apt-get install redis-server' as root" >&2
    exit 1
  fi
fi
