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
# The conversation suite again with PostgreSQL as the tracker store (syrcad runs it).
python -m pytest --tracker postgres tests/e2e/test_backup.py tests/e2e/test_cluster.py tests/e2e/test_secrets.py \
  "tests/e2e/test_failures.py::test_a_store_outage_is_a_503_on_rest_and_an_error_event_on_socketio" "$@"
# The end-to-end suite again, on three test hosts deployed over ssh:// (tests/testhosts.py).
python -m pytest tests/e2e --layout hosts "$@"
# The same three hosts as one swarm (engine: swarm): its own cluster and tests.
python -m pytest tests/e2e/test_swarm.py --layout swarm "$@"
# Two bots (English, German) behind one entry point, on this machine: its own cluster and tests.
python -m pytest tests/e2e/test_bots.py --layout bots "$@"
