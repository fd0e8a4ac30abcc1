"""Every command block of docs/runbook.md, run as written and in the runbook's order against the
e2e cluster, from the folder of its hosts.yml (so `-H hosts.yml` and the default both name it).
A block that cannot run here says why in its first line (tests/runbook.py); the unit tests
check that each does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syrcad.apply.deployment import prepare
from syrcad.config.secrets import read, secrets_path

from .. import runbook
from ..conftest import ROOT
from .conftest import OUTPUTS, E2ECluster

pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]

RUN = [b for b in runbook.blocks() if b.not_run_because is None and not b.on_bots]


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_runbook_block(block: runbook.Block, cluster: E2ECluster, tmp_path: Path) -> None:
    run_block(block, cluster, tmp_path)


def run_block(block: runbook.Block, cluster: E2ECluster, tmp_path: Path) -> None:
    """`block` as written, from the folder of the cluster's hosts.yml; fails unless it exits 0."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "syrcad").write_text(f'#!/bin/sh\nexec {sys.executable} -m syrcad.cli "$@"\n')
    (shim / "syrcad").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SYRCAD_HOSTS"}
    env |= {
        "PATH": f"{shim}{os.pathsep}{env['PATH']}",
        "PYTHONPATH": str(ROOT),  # the test-host helper the last section runs
        "COLUMNS": "200",
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.script],
        cwd=cluster.hosts_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    OUTPUTS.append(done.stdout + done.stderr)  # checked for secrets at the end of the run
    print(f"\n{block.name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
    # A block may rotate the secrets: the tests after this one use the new ones.
    secrets = read(secrets_path(cluster.hosts_file))
    assert secrets is not None
    cluster.secrets = secrets
    cluster.deployment = prepare(cluster.hosts_file)
    assert done.returncode == 0, f"{block.script}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
