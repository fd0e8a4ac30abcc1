from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syrcad.config import load
from syrcad.config.model import Cluster
from syrcad.config.secrets import ensure, secrets_path
from syrcad.errors import ConfigError

from . import runbook
from .conftest import EXAMPLES


def syrcad(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syrcad.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.parametrize("example", ["hosts.yml", "local.yml"])
def test_examples_validate(example: str) -> None:
    assert load(EXAMPLES / example).cluster.hosts


def test_commented_example_sets_every_key() -> None:
    """examples/hosts.yml is the reference: every key of the model appears in it."""
    text = (EXAMPLES / "hosts.yml").read_text(encoding="utf-8")

    def keys(model: type) -> set[str]:
        found = set()
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            found.add(name)
            for inner in (*getattr(field.annotation, "__args__", ()), field.annotation):
                if isinstance(inner, type) and hasattr(inner, "model_fields"):
                    found |= keys(inner)
        return found

    missing = sorted(k for k in keys(Cluster) if f"{k}:" not in text)
    assert missing == []


def test_plan_json() -> None:
    done = syrcad("plan", "--json", "--hosts", str(EXAMPLES / "hosts.yml"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["cluster"] == "demo"
    assert {
        "host": "app2",
        "address": "10.20.0.12",
        "service": "frontend",
        "replica": 4,
        "container": "frontend-4",
        "ports": {"http": 5006},
    } in plan["containers"]


def test_plan_table_lists_every_container() -> None:
    done = syrcad("plan", "--hosts", str(EXAMPLES / "hosts.yml"))
    assert done.returncode == 0, done.stderr
    for name in (
        "frontend-1",
        "frontend-4",
        "action-2",
        "lb-1",
        "action-lb-1",
        "mongo-1",
        "redis-1",
    ):
        assert name in done.stdout


def test_schema_is_json_schema() -> None:
    done = syrcad("schema")
    schema = json.loads(done.stdout)
    assert schema["title"] == "Cluster" and "hosts" in schema["properties"]


def test_render_command_is_idempotent_and_keeps_secrets(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yml"
    hosts.write_text((EXAMPLES / "hosts.yml").read_text(encoding="utf-8"), encoding="utf-8")
    first = syrcad("render", "--hosts", str(hosts), "--out", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout
    secrets_file = secrets_path(hosts)
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    secrets = yaml.safe_load(secrets_file.read_text(encoding="utf-8"))
    second = syrcad("render", "--hosts", str(hosts), "--out", str(tmp_path / "out"))
    assert "up to date" in second.stdout
    assert yaml.safe_load(secrets_file.read_text(encoding="utf-8")) == secrets
    for value in secrets.values():  # never printed
        assert value not in first.stdout + first.stderr + second.stdout + second.stderr


def test_secrets_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "hosts.secrets.yml"
    path.write_text("rasa_token: short\nfavourite: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        ensure(path)
    assert str(caught.value) == (
        f"{path}: favourite: unknown secret (known: rasa_token, jwt_secret, tracker_password, "
        f"redis_password, stats_password, replica_set_key)\n"
        f"{path}: rasa_token: expected 16 to 256 characters of A-Z a-z 0-9 _ -"
    )


def test_unknown_command_is_a_usage_error() -> None:
    done = syrcad("frobnicate")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_generated_secrets_never_look_like_flags() -> None:
    from syrcad.config.secrets import new_secret

    assert not any(new_secret().startswith("-") for _ in range(2000))


def test_runbook_blocks_run_or_say_why_not() -> None:
    """tests/e2e/test_runbook.py runs every block (test_bots.py those for a cluster with bots);
    one that cannot run says why, in the block."""
    found = runbook.blocks()
    assert len(found) >= 10
    for block in found:
        assert block.script.strip(), block.name
        reason = block.not_run_because
        assert reason is None or len(reason.split()) >= 4, f"{block.name}: say why it cannot run"
        # A block meant to be left out says so in the very words the runner looks for.
        assert reason is not None or not block.script.startswith("# not run"), block.name
    marked = runbook.blocks("## S\n```bash\n# not run by the tests: a cable is pulled\nx\n```\n")
    assert [(b.section, b.line, b.not_run_because) for b in marked] == [
        ("S", 2, "a cable is pulled")
    ]
