#!/usr/bin/env bash
# Every benchmark, one after the other; figures land in bench/results/. Needs the demo set-up
# (scripts/setup.sh) and a trained model. About 105 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q -e '..[bench]'  # Locust and matplotlib (the PNG plot)
python render.py | tee results/render.txt
python lb_and_scaling.py
python source_table.py
python scale_under_load.py
python cpu_share.py
python host_loss.py
python long_conversation.py
python tracker_layout.py
