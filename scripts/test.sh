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
# Again with PostgreSQL as the tracker store (syrcad runs it), what the tracker store changes:
# conversations across frontends and restarts, backup and restore, its password rotated in
# place under load, an outage. Down then up comes after the rotation: a new LB must not load
# the replicas' addresses its predecessor saved at the rotation's reload (a new network).
python -m pytest --tracker postgres tests/e2e/test_backup.py \
  tests/e2e/test_cluster.py::test_continuity_across_frontends \
  tests/e2e/test_cluster.py::test_frontends_use_the_tracker_and_lock_stores \
  tests/e2e/test_secrets.py tests/e2e/test_cluster.py::test_down_then_up_keeps_conversations \
  "tests/e2e/test_failures.py::test_a_store_outage_is_a_503_on_rest_and_an_error_event_on_socketio" "$@"
# The end-to-end suite again, on three test hosts deployed over ssh:// (tests/testhosts.py).
# They stay up, with the images shipped to them, for the swarm run, which takes them down.
SYRCAD_KEEP_TEST_HOSTS=1 python -m pytest tests/e2e --layout hosts "$@"
# The same three hosts as one swarm: its own cluster, brought up under compose and switched.
python -m pytest tests/e2e/test_swarm.py --layout swarm "$@"
# Two bots (English, German) behind one entry point, on this machine: its own cluster and tests.
python -m pytest tests/e2e/test_bots.py --layout bots "$@"
