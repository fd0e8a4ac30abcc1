"""Pure parts of scale, rollout and loadtest: argument parsing, recorded state, command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from syrcad.config import Cluster, load
from syrcad.config.state import (
    ScaleRecord,
    State,
    parse_counts,
    put_back,
    read_state,
    state_path,
    write_state,
)
from syrcad.errors import HostsFailed, RemoteError, SyrcadError, UsageError
from syrcad.loadtest import LoadOptions, locust_argv, public_url
from syrcad.plan import place

from .conftest import EXAMPLES


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["frontend=abc"], "'frontend=abc': 'abc' is not a whole number"),
        (["unknown=2"], "'unknown=2': unknown service 'unknown' (scalable: frontend, action)"),
        (
            ["frontend=0"],
            "'frontend=0': at least 1 replica (use `syrcad down` to stop the cluster)",
        ),
        (["frontend"], "'frontend': expected SERVICE=COUNT, like frontend=8"),
        ([], "nothing to scale: give SERVICE=COUNT, like frontend=8"),
    ],
)
def test_scale_arguments_are_checked(arguments: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_counts(arguments)
    assert str(caught.value) == message


def test_scale_arguments() -> None:
    assert parse_counts(["frontend=8", "action=3"]) == {"frontend": 8, "action": 3}


def test_state_applies_until_hosts_yml_changes() -> None:
    cluster = load(EXAMPLES / "local.yml").cluster  # frontend replicas: 2
    state = State(scale={"frontend": ScaleRecord(replicas=5, file_replicas=2)})
    assert state.applied_to(cluster).services.frontend.replicas == 5
    edited = cluster.model_copy(
        update={
            "services": cluster.services.model_copy(
                update={"frontend": cluster.services.frontend.model_copy(update={"replicas": 3})}
            )
        }
    )
    assert state.applied_to(edited).services.frontend.replicas == 3  # the file wins again


def test_pinned_model_applies() -> None:
    cluster = load(EXAMPLES / "local.yml").cluster
    assert (
        State(models={"": "models/old.tar.gz"}).applied_to(cluster).services.frontend.model
        == "models/old.tar.gz"
    )


def test_a_bot_is_scaled_and_pinned_on_its_own() -> None:
    cluster = load(EXAMPLES / "local.yml").cluster
    own_actions = {"path": "/srv/actions-de", "resources": {"cpus": 0.5}}
    bots = {"en": {"default": True}, "de": {"actions": own_actions}}
    cluster = Cluster.model_validate({**cluster.model_dump(mode="json"), "bots": bots})
    state = State(
        scale={
            "frontend.de": ScaleRecord(4, cluster.frontend_of("de").replicas),
            "action.de": ScaleRecord(3, cluster.action_of("de").replicas),
        },
        models={"de": "models/de.tar.gz"},
    )
    applied = state.applied_to(cluster)
    assert applied.frontend_of("de").replicas == 4
    assert applied.frontend_of("de").model == "models/de.tar.gz"
    assert applied.frontend_of("en") == cluster.frontend_of("en")
    assert applied.action_of("de").replicas == 3
    assert applied.action_of("de").resources.cpus == 0.5  # its own, over services.action's
    assert applied.action_of("") == cluster.action_of("")  # the shared pool, unchanged
    placed = place(applied)
    assert [c.name for c in placed.of("frontend", "de")][-1] == "frontend-de-4"
    assert [c.name for c in placed.of("action", "de")] == [
        "action-de-1",
        "action-de-2",
        "action-de-3",
    ]
    assert set(placed.listed("action")) == {"action_servers", "action_servers_de"}


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = state_path(tmp_path / "hosts.yml")
    assert path.name == "hosts.state.yml"
    state = State(scale={"action": ScaleRecord(4, 2)}, models={"": "models/a.tar.gz"})
    write_state(path, state)
    assert read_state(path) == state
    by_bot = State(scale={"frontend.de": ScaleRecord(3, 1)}, models={"de": "models/de.tar.gz"})
    write_state(path, by_bot)
    assert read_state(path) == by_bot
    assert path.stat().st_mode & 0o777 == 0o600
    write_state(path, State())
    assert not path.exists()


def test_loadtest_command_line() -> None:
    loaded = load(EXAMPLES / "hosts.yml")
    url = public_url(loaded.cluster, place(loaded.cluster))
    assert url == "http://10.20.0.11:80"
    argv = locust_argv(
        url,
        LoadOptions(
            headless=True,
            users=50,
            spawn_rate=5,
            run_time="5m",
            out=Path("r"),
            max_fail_ratio=0.001,
            max_p95_ms=1500,
        ),
    )
    assert argv[argv.index("--host") + 1] == url
    assert argv[argv.index("--users") + 1] == "50" and argv[argv.index("--csv") + 1] == "r/locust"
    assert argv[-4:] == ["--max-fail-ratio", "0.001", "--max-p95-ms", "1500"]
    assert "--headless" not in locust_argv(url, LoadOptions())


def test_hosts_failing_alike_keep_their_exit_code() -> None:
    """Every host lacking an image is a usage problem (1), as one host lacking it is; hosts
    failing in different ways are a remote error (4)."""
    alike = HostsFailed([SyrcadError("node1: lacks x"), SyrcadError("node3: lacks x")])
    mixed = HostsFailed([SyrcadError("node1: lacks x"), RemoteError("node3", ["up"], 1)])
    assert (alike.exit_code, mixed.exit_code) == (1, 4)


def test_a_restored_state_file_never_replaces_the_clusters_own(tmp_path: Path) -> None:
    path = tmp_path / "hosts.state.yml"
    assert put_back(path, "scale: {}\n") == "restored"
    assert path.read_text(encoding="utf-8") == "scale: {}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert put_back(path, "scale: {}\n") == "same"
    assert put_back(path, "model: old.tar.gz\n") == "kept"
    assert path.read_text(encoding="utf-8") == "scale: {}\n"
