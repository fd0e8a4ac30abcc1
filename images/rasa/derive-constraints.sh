#!/usr/bin/env bash
# Derive constraints.txt: the set Rasa 3.6.21's own lock file installs, for the stand-in image.
#
# Rasa builds rasa/rasa from its poetry.lock, but publishes no lock with the release (neither the
# wheel nor the sdist carries it), and `pip install rasa==3.6.21` resolves today's newest allowed
# versions instead (python-socketio 5.18, whose AsyncServer.enter_room is a coroutine that
# Rasa 3.6 never awaits: socket.io replies reach nobody). The lock of the 3.6.x line was made
# when 3.6.0 came out and later patch releases moved only the packages whose bounds they raised.
# So this resolves like that lock: every package as it was when rasa 3.6.0 was published, except
# the packages whose requirement 3.6.21 raised over 3.6.0 (see RAISED; compare the two wheels'
# Requires-Dist) and what those newly need, taken as of 3.6.21's own publication.
# Re-run it (needs uv from PyPI, `pip install uv`) only when moving to another Rasa release.
set -euo pipefail
cd "$(dirname "$0")"

RASA=3.6.21
RASA_SDK=3.6.2
LOCKED_AT=2023-06-14T15:11:50Z     # rasa 3.6.0's upload to PyPI
RELEASED_AT=2025-01-14T11:00:00Z   # rasa 3.6.21's upload (10:40:10Z), rounded up
RAISED=(rasa rasa-sdk aiohttp certifi cryptography dnspython protobuf pydantic pyyaml ruamel-yaml
        safetensors scipy setuptools skops tensorflow tensorflow-io-gcs-filesystem tensorflow-hub
        tensorflow-text wheel huggingface-hub)

newer=()
for package in "${RAISED[@]}"; do newer+=(--exclude-newer-package "$package=$RELEASED_AT"); done
{
  sed -n '/^# BEGIN HEADER/,/^# END HEADER/p' "$0" | sed '1d;$d'
  printf 'rasa==%s\nrasa-sdk==%s\n' "$RASA" "$RASA_SDK" |
    UV_PYTHON_DOWNLOADS=never uv pip compile - --quiet --no-header --no-annotate \
      --python-version 3.9 --python-platform x86_64-manylinux_2_31 \
      --exclude-newer "$LOCKED_AT" "${newer[@]}"
} >constraints.txt
echo "wrote $(grep -c '==' constraints.txt) pins to images/rasa/constraints.txt"
exit 0

# BEGIN HEADER
# Rasa 3.6.21 and rasa-sdk 3.6.2 as Rasa's own lock for the 3.6.x line installs them, for CPython
# 3.9 on x86-64 Linux (the stand-in image). Reconstructed by derive-constraints.sh, which says how
# (Rasa publishes no lock with a release); do not edit by hand. The image build fails when the
# installed set differs from this list.
# Among them: python-socketio 5.8.0 (AsyncServer.enter_room is a plain function, as Rasa 3.6's
# socket.io channel calls it), sanic 21.12.2, websockets 10.4, aiohttp 3.9.5, pymongo 4.3.3,
# redis 4.5.5, tensorflow 2.12.0.
# END HEADER
