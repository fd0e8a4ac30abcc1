from __future__ import annotations

from pathlib import Path

import pytest

from syrcad.config.secrets import Secrets

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite tests/golden from the templates."
    )
    parser.addoption(
        "--layout",
        choices=("local", "hosts", "swarm", "bots"),
        default="local",
        help="Where the e2e cluster runs: this machine's engine, three test hosts over ssh, or "
        "the same three hosts as one swarm (engine: swarm; only the tests marked swarm_layout), "
        "or this machine's engine with two bots (only the tests marked bots_layout).",
    )
    parser.addoption(
        "--tracker",
        choices=("mongo", "postgres"),
        default="mongo",
        help="The tracker store of the e2e cluster (the one syrcad runs).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests for another e2e layout only are deselected (and counted so). The swarm and bots
    layouts run their own tests only: the others need a compose cluster of one bot."""
    layout = str(config.getoption("--layout"))
    own = ("swarm_layout", "bots_layout")
    others = {"local": ("hosts_layout", *own), "hosts": ("local_layout", *own)}
    if config.getoption("--tracker") == "mongo":
        others["local"] += ("postgres_and_hosts",)

    def chosen_for_layout(item: pytest.Item) -> bool:
        if layout in ("swarm", "bots"):
            return item.get_closest_marker(f"{layout}_layout") is not None
        return not any(item.get_closest_marker(m) for m in others[layout])

    chosen = [i for i in items if chosen_for_layout(i)]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen


@pytest.fixture
def fixed_secrets() -> Secrets:
    """Stable secrets, so rendered files can be compared byte for byte."""
    return Secrets(
        rasa_token="golden-rasa-token-0000",
        jwt_secret="golden-jwt-secret-0000",
        tracker_password="golden-tracker-pass-00",
        redis_password="golden-redis-pass-0000",
        stats_password="golden-stats-pass-0000",
        replica_set_key="golden-replica-set-key-0",
    )
