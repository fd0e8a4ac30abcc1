#!/usr/bin/env bash
# Set up this machine and run every check: lint, types, unit tests, end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
# The end-to-end suite again, on three test hosts deployed over ssh:// (tests/testhosts.py).
python -m pytest tests/e2e --layout hosts "$@"
