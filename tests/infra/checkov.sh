#!/usr/bin/env bash
# checkov on terraform/ (or the directory given first), installed on first use into its own venv,
# .venv-checkov, because its dependencies are heavy and must not reach the project's .venv.
#   tests/infra/checkov.sh                      # human-readable, failed checks only
#   tests/infra/checkov.sh terraform -o json    # what tests/infra/test_checkov.py reads
#   tests/infra/checkov.sh --install-only       # CI: install ahead of the test run
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-checkov
VERSION=3.3.30
PYTHON=${PYTHON:-python3}
if [ "$("$VENV/bin/checkov" --version 2>/dev/null)" != "$VERSION" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
  exec "$VENV/bin/checkov" --version
fi
DIR=${1:-terraform}
shift || true
# --skip-download: no calls home (guidelines, policies); the checks ship with the package.
exec "$VENV/bin/checkov" --directory "$DIR" --framework terraform --skip-download --compact "$@"
