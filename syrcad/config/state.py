"""What syrcad commands decided since hosts.yml was written: scaled replica counts and a pinned
model. Kept in `<hosts>.state.yml` beside hosts.yml (shown by `syrcad plan`).

A scale record remembers the count hosts.yml had when it was made: once the user edits that
count in hosts.yml, the file wins again and the record is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from syrcad.config.model import Cluster
from syrcad.config.secrets import write_private
from syrcad.errors import ConfigError, ConfigIssue, UsageError

Scalable = Literal["frontend", "action"]
SCALABLE: tuple[Scalable, ...] = ("frontend", "action")


@dataclass(frozen=True)
class ScaleRecord:
    replicas: int
    file_replicas: int  # what hosts.yml said when the record was made


@dataclass(frozen=True)
class State:
    scale: dict[str, ScaleRecord] = field(default_factory=dict)
    model: str | None = None  # a model file pinned by a failed rollout

    def applied_to(self, cluster: Cluster) -> Cluster:
        """`cluster` with the records that still hold (hosts.yml unchanged since) applied."""
        services = cluster.services
        updates = {}
        for name, record in self.live(cluster).items():
            updates[name] = getattr(services, name).model_copy(update={"replicas": record.replicas})
        if self.model:
            updates["frontend"] = updates.get("frontend", services.frontend).model_copy(
                update={"model": self.model}
            )
        if not updates:
            return cluster
        return cluster.model_copy(update={"services": services.model_copy(update=updates)})

    def live(self, cluster: Cluster) -> dict[str, ScaleRecord]:
        return {
            name: record
            for name, record in self.scale.items()
            if getattr(cluster.services, name).replicas == record.file_replicas
        }


def state_path(hosts_file: Path) -> Path:
    return hosts_file.with_name(f"{hosts_file.stem}.state.yml")


def read_state(path: Path) -> State:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return State()
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot be read: {error}")]) from None
    try:
        scale = {
            str(name): ScaleRecord(int(entry["replicas"]), int(entry["file_replicas"]))
            for name, entry in (data.get("scale") or {}).items()
            if name in SCALABLE
        }
        model = data.get("model")
        return State(scale, str(model) if model else None)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ConfigError(
            [ConfigIssue(str(path), "", "is damaged: delete it to go back to hosts.yml")]
        ) from None


def write_state(path: Path, state: State) -> None:
    document: dict[str, object] = {}
    if state.scale:
        document["scale"] = {
            name: {"replicas": r.replicas, "file_replicas": r.file_replicas}
            for name, r in state.scale.items()
        }
    if state.model:
        document["model"] = state.model
    if not document:
        path.unlink(missing_ok=True)
        return
    header = "# Written by `syrcad scale` / `syrcad rollout`. Editing a count in hosts.yml overrides it.\n"
    write_private(path, header + yaml.safe_dump(document, sort_keys=True))


def put_back(path: Path, text: str) -> Literal["restored", "same", "kept"]:
    """A backed-up state file's `text` at `path` (`syrcad restore`), only where there is none:
    a cluster's own records are newer than any backup."""
    if not path.exists():
        write_private(path, text)
        return "restored"
    return "same" if path.read_text(encoding="utf-8") == text else "kept"


def parse_counts(assignments: Sequence[str]) -> dict[Scalable, int]:
    """`["frontend=8", "action=3"]` → {"frontend": 8, "action": 3}, or a clear error."""
    counts: dict[Scalable, int] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep:
            raise UsageError(f"{text!r}: expected SERVICE=COUNT, like frontend=8")
        if name not in SCALABLE:
            raise UsageError(
                f"{text!r}: unknown service '{name}' (scalable: {', '.join(SCALABLE)})"
            )
        if not value.strip().isdigit():
            raise UsageError(f"{text!r}: '{value}' is not a whole number")
        if int(value) < 1:
            raise UsageError(
                f"{text!r}: at least 1 replica (use `syrcad down` to stop the cluster)"
            )
        counts[name] = int(value)
    if not counts:
        raise UsageError("nothing to scale: give SERVICE=COUNT, like frontend=8")
    return counts
