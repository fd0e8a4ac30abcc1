"""Hostile hosts.yml documents: never a traceback, always file + key path, nothing written.

Hypothesis mutates a valid document: wrong types, huge numbers, unicode, shell metacharacters
and path traversal in names and paths; plus alias bombs and raw garbage. Every outcome is
either a valid cluster (then its names must be safe) or a ConfigError naming file and key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syrcad.config import load
from syrcad.errors import ConfigError
from syrcad.plan import place

VALID: dict[str, Any] = {
    "name": "demo",
    "hosts": {
        "app1": {
            "address": "10.0.0.1",
            "roles": ["frontend", "action", "lb"],
            "ssh": {"user": "deploy"},
        },
        "store1": {"address": "10.0.0.2", "roles": ["mongo", "redis"], "labels": {"rack": "r1"}},
    },
    "project": {"path": "/srv/bot", "nfs": {"server": "10.0.0.9", "export": "/exports/bot"}},
    "images": {"rasa": "rasa/rasa:3.6.21-full"},
    "services": {
        "frontend": {"replicas": 2, "base_port": 5005, "resources": {"memory": "2g"}},
        "lb": {"public_port": 80},
    },
    "stores": {"tracker": {"type": "mongo", "port": 27017}, "lock": {"port": 6379}},
}

HOSTILE_TEXT = st.sampled_from(
    [
        "../../etc/passwd",
        "/srv/../../root",
        "$(reboot)",
        "`id`",
        "a;rm -rf /",
        "x' OR '1'='1",
        "a\nb",
        "\x00",
        "ünïcödé",
        "名字",
        "🙂",
        "-rf",
        "--privileged",
        "a b",
        "${HOME}",
        "%s%s",
        "{{ 7*7 }}",
        "*",
        "",
        " ",
        "\u202e",
        "A" * 300,
        "0",
        "-1",
        "1e999",
        "null",
        "~",
        "C:\\Windows",
    ]
)
HOSTILE = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


ALL_PATHS = paths(VALID)


def mutated(path: tuple[Any, ...], value: Any, as_key: bool) -> dict[str, Any]:
    document = yaml.safe_load(yaml.safe_dump(VALID))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if as_key and isinstance(parent, dict):
        parent[str(value) if not isinstance(value, (str, int)) else value] = parent.pop(last)
    else:
        parent[last] = value
    return document


def check(tmp_path: Path, text: str) -> None:
    file = tmp_path / "hosts.yml"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        loaded = load(file)
        with loaded.source.locating():
            placement = place(loaded.cluster)
    except ConfigError as error:
        assert error.issues
        for issue in error.issues:
            assert issue.file == str(file)
            assert issue.message
        return
    finally:
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    # Accepted: whatever reaches shell commands, compose or HAProxy is plain.
    safe = re.compile(r"^[A-Za-z0-9_./:@+-]*$")
    for name, host in loaded.cluster.hosts.items():
        assert safe.match(name) and safe.match(str(host.address)), name
    assert safe.match(
        loaded.cluster.project.path
    ) and ".." not in loaded.cluster.project.path.split("/")
    assert placement.containers


FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(path=st.sampled_from(ALL_PATHS), value=HOSTILE, as_key=st.booleans())
def test_mutated_documents(tmp_path: Path, path: tuple[Any, ...], value: Any, as_key: bool) -> None:
    try:
        text = yaml.safe_dump(mutated(path, value, as_key), allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    check(tmp_path, text)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#%@` \n\tab01é")), max_size=120))
def test_garbage_text(tmp_path: Path, text: str) -> None:
    check(tmp_path, text)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(width=st.integers(2, 12), depth=st.integers(2, 9))
def test_alias_bombs(tmp_path: Path, width: int, depth: int) -> None:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{d}: &l{d} [{', '.join([f'*l{d - 1}'] * width)}]" for d in range(1, depth)]
    check(tmp_path, "\n".join(lines) + "\nhosts: *l1\n")
