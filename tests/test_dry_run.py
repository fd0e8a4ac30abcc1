"""--dry-run prints every step and touches nothing, even when no host can be reached.

The hosts are loopback addresses this machine does not use, reached on a port where nothing
listens: each connection is refused at once. The documentation addresses of examples/hosts.yml
are never dialled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import EXAMPLES
from .test_examples_and_cli import syrcad

UNREACHABLE = {"app1": "127.0.0.2", "app2": "127.0.0.3", "store1": "127.0.0.4"}
NOTHING_LISTENS = 1  # tcpmux: no ssh here


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    document = yaml.safe_load((EXAMPLES / "hosts.yml").read_text(encoding="utf-8"))
    for name, address in UNREACHABLE.items():
        document["hosts"][name]["address"] = address
        document["hosts"][name]["ssh"] = {"port": NOTHING_LISTENS}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def plan_of(*args: str) -> dict[str, object]:
    done = syrcad(*args, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_up_dry_run_prints_every_step_per_host_without_reading_facts(unreachable: Path) -> None:
    """No host answers, and none is waited for (bench/render.py times it: under 2 s)."""
    plan = plan_of("up", "-H", str(unreachable))
    assert plan["facts_read"] is False
    steps = plan["steps"]
    assert isinstance(steps, list)
    started_on = {s["host"]: s["names"] for s in steps if s["action"] == "start"}
    assert set(started_on) == set(UNREACHABLE)
    assert started_on["store1"] == ["mongo-1", "redis-1"]
    assert [s["host"] for s in steps if s["action"] == "write-files"] == ["store1", "app1", "app2"]
    assert steps[-1]["action"] == "wait-in-lbs"
    table = syrcad("up", "--dry-run", "-H", str(unreachable)).stdout
    assert "Facts were not read" in table and "nothing done yet" in table


@pytest.mark.parametrize(
    "command",
    [
        ["scale", "frontend=8"],
        ["rollout", "--batch", "2"],
        ["down", "--volumes"],
        ["train"],
        ["images", "push"],
        ["secrets", "rotate", "stats_password"],
    ],
)
def test_every_changing_command_has_a_dry_run_that_writes_nothing(
    unreachable: Path, command: list[str]
) -> None:
    plan_of("up", "-H", str(unreachable))  # makes the secrets file, as any first use does
    before = sorted(p.relative_to(unreachable.parent) for p in unreachable.parent.rglob("*"))
    secrets = (unreachable.parent / "hosts.secrets.yml").read_text(encoding="utf-8")
    plan = plan_of(*command, "-H", str(unreachable))
    assert plan["steps"]
    after = sorted(p.relative_to(unreachable.parent) for p in unreachable.parent.rglob("*"))
    assert after == before
    assert (unreachable.parent / "hosts.secrets.yml").read_text(encoding="utf-8") == secrets


def test_scale_dry_run_drains_before_it_removes(unreachable: Path) -> None:
    plan = plan_of("scale", "frontend=2", "-H", str(unreachable))
    steps = plan["steps"]
    assert isinstance(steps, list)
    assert steps[0] == {
        "action": "drain",
        "host": "",
        "names": ["frontend-3", "frontend-4"],
        "seconds": 0,
        "note": "",
        "wave": 0,
    }
    assert steps[-1]["action"] == "record-state"
    # What the drain sends to the public LB: socket.io clients are moved, not waited for.
    assert plan["sends"][0] == [
        "app1 lb-1: set server frontends/frontend-3 state drain; "
        "set server frontends/frontend-4 state drain",
        "app1 lb-1: set server socketio/frontend-3 state drain; "
        "set server socketio/frontend-4 state drain",
        "app1 lb-1: set server socketio/frontend-3 state maint; "
        "shutdown sessions server socketio/frontend-3; "
        "set server socketio/frontend-4 state maint; shutdown sessions server socketio/frontend-4",
    ]
    around = plan["around"]
    assert isinstance(around, dict) and around["after, on app1"].startswith("rm -rf ")
