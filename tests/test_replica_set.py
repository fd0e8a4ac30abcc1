"""Mongo's replica set: the exact commands syrcad sends, in order.

The e2e cluster's SecantusDB stand-in is a single server with no replica sets, so the set itself
is not run here (docs/runbook.md says what was exercised); these tests pin what syrcad asks of
the first member, against a recorder of `admin.command` calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo.errors import OperationFailure

from syrcad.apply.replica_set import NOT_YET_INITIALIZED, converge
from syrcad.config import load
from syrcad.config.secrets import Secrets
from syrcad.plan import commands, place, steps
from syrcad.plan.placement import replica_set_members
from syrcad.render import render

from .conftest import EXAMPLES

MEMBERS = ["10.20.0.13:27017", "10.20.0.11:27017", "10.20.0.12:27017"]
CONFIG = commands.replica_set_config("rs0", MEMBERS)


def three_members(tmp_path: Path) -> Path:
    text = (EXAMPLES / "hosts.yml").read_text(encoding="utf-8")
    text = text.replace("roles: [frontend, action, lb]", "roles: [frontend, action, lb, mongo]")
    text = text.replace("roles: [frontend, action]", "roles: [frontend, action, mongo]")
    text = text.replace("# replica_set: rs0", "replica_set: rs0")
    path = tmp_path / "hosts.yml"
    path.write_text(text, encoding="utf-8")
    return path


class Recorder:
    """A member's admin database: records each command, answers from a script."""

    def __init__(self, answers: list[Mapping[str, Any] | OperationFailure]) -> None:
        self.answers: Iterator[Mapping[str, Any] | OperationFailure] = iter(answers)
        self.calls: list[tuple[str, Any]] = []

    def command(self, command: str, value: Any = 1) -> Mapping[str, Any]:
        self.calls.append((command, value))
        if command == "replSetInitiate":
            return {"ok": 1}
        answer = next(self.answers)
        if isinstance(answer, OperationFailure):
            raise answer
        return answer


def status(*states: str, name: str = "rs0") -> dict[str, Any]:
    members = [{"name": m, "stateStr": s} for m, s in zip(MEMBERS, states, strict=True)]
    return {"set": name, "members": members, "ok": 1}


NOT_YET = OperationFailure("no replset config has been received", code=NOT_YET_INITIALIZED)


def test_the_config_names_every_mongo_host_by_address_and_port(tmp_path: Path) -> None:
    cluster = load(three_members(tmp_path)).cluster
    members = replica_set_members(cluster, place(cluster))
    # hosts.yml's order: app1, app2, store1
    assert members == ("10.20.0.11:27017", "10.20.0.12:27017", "10.20.0.13:27017")
    assert commands.replica_set_config("rs0", members) == {
        "_id": "rs0",
        "members": [
            {"_id": 0, "host": "10.20.0.11:27017"},
            {"_id": 1, "host": "10.20.0.12:27017"},
            {"_id": 2, "host": "10.20.0.13:27017"},
        ],
    }


def test_up_initiates_the_set_once_its_members_are_ready(tmp_path: Path) -> None:
    cluster = load(three_members(tmp_path)).cluster
    placement = place(cluster)
    plan = steps.up(placement, {}, {}, cluster.mongo_replica_set())
    actions = [s.action for s in plan.steps]
    init = plan.steps[actions.index("init-replica-set")]
    assert init.names == ("mongo-1", "mongo-2", "mongo-3") and init.note == "rs0"
    stores_ready = actions.index("wait-ready")
    assert actions.index("init-replica-set") == stores_ready + 1
    assert all(s.action != "init-replica-set" for s in steps.up(placement, {}, {}).steps)


def test_a_fresh_member_gets_status_then_initiate_then_status_until_a_primary() -> None:
    admin = Recorder(
        [
            NOT_YET,
            NOT_YET,
            status("STARTUP2", "STARTUP2", "STARTUP2"),
            status("PRIMARY", "SECONDARY", "SECONDARY"),
        ]
    )
    naps: list[float] = []
    initiated, primary = converge(admin, CONFIG, 60, sleep=naps.append)
    assert admin.calls == [
        ("replSetGetStatus", 1),
        ("replSetInitiate", CONFIG),
        ("replSetGetStatus", 1),
        ("replSetGetStatus", 1),
        ("replSetGetStatus", 1),
    ]
    assert (initiated, primary) == (True, MEMBERS[0])
    assert naps == [1, 1]


def test_an_initiated_set_is_left_as_it_is() -> None:
    admin = Recorder([status("SECONDARY", "PRIMARY", "SECONDARY")] * 2)
    assert converge(admin, CONFIG, 60) == (False, MEMBERS[1])
    assert [c for c, _ in admin.calls] == ["replSetGetStatus", "replSetGetStatus"]


def test_a_set_with_other_members_is_reported_not_changed() -> None:
    other = commands.replica_set_config("rs0", MEMBERS[:2])
    admin = Recorder([status("PRIMARY", "SECONDARY", "SECONDARY")])
    with pytest.raises(ValueError, match=r"syrcad does not change the members of a running set"):
        converge(admin, other, 60)
    assert [c for c, _ in admin.calls] == ["replSetGetStatus"]


def test_no_primary_in_time_names_each_member_state() -> None:
    clock = iter(range(0, 1000, 30))
    admin = Recorder([NOT_YET] + [status("STARTUP2", "STARTUP2", "STARTUP2")] * 5)
    with pytest.raises(TimeoutError, match=r"no primary after 60s .*STARTUP2"):
        converge(admin, CONFIG, 60, sleep=lambda _: None, clock=lambda: next(clock))


def test_another_error_is_not_taken_for_a_fresh_member() -> None:
    admin = Recorder([OperationFailure("requires authentication", code=13)])
    with pytest.raises(OperationFailure):
        converge(admin, CONFIG, 60)
    assert [c for c, _ in admin.calls] == ["replSetGetStatus"]


def test_members_run_with_the_set_and_its_key_and_frontends_list_every_member(
    tmp_path: Path, fixed_secrets: Secrets
) -> None:
    cluster = load(three_members(tmp_path)).cluster
    files = {
        (f.host, str(f.path)): f.content for f in render(cluster, place(cluster), fixed_secrets)
    }
    for host in ("app1", "app2", "store1"):
        assert files[(host, "mongo/replica-set-key")] == "golden-replica-set-key-0\n"
        compose = yaml.safe_load(files[(host, "compose.yml")])
        mongo = next(s for name, s in compose["services"].items() if name.startswith("mongo-"))
        assert mongo["command"] == [
            "mongod",
            "--replSet",
            "rs0",
            "--keyFile",
            "/data/configdb/replica-set-key",
            "--port",
            "27017",
            "--bind_ip_all",
        ]
        assert any(p.endswith(":27017:27017") for p in mongo["ports"])
    endpoints = yaml.safe_load(files[("app2", "rasa/endpoints.yml")])
    url = endpoints["tracker_store"]["url"]
    assert url.startswith("mongodb://10.20.0.11:27017,mongo-2:27017,10.20.0.13:27017/?")
    assert "replicaSet=rs0" in url
