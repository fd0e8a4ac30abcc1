#!/usr/bin/env bash
# Set up this machine and bring up the demo cluster (examples/local.yml) on its Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
if ! compgen -G "bot/models/*.tar.gz" >/dev/null; then
  syrcad train --hosts examples/local.yml
fi
syrcad up --hosts examples/local.yml
echo
echo "Use it:  source .venv/bin/activate && syrcad status --hosts examples/local.yml"
