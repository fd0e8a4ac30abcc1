"""What syrcad commands decided since hosts.yml was written: scaled replica counts and pinned
models. Kept in `<hosts>.state.yml` beside hosts.yml (shown by `syrcad plan`).

A scale record remembers the count hosts.yml had when it was made: once the user edits that
count in hosts.yml, the file wins again and the record is dropped. With `bots:`, a bot's
frontends (and its own action servers) are scaled and pinned on their own: records
`frontend.BOT` and `action.BOT`, a pin per bot.
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


def record_name(service: Scalable, bot: str) -> str:
    """A scale record's name: the service, and the bot whose pool of it the record counts."""
    return f"{service}.{bot}" if bot else service


def file_replicas(cluster: Cluster, name: str) -> int | None:
    """What hosts.yml says for a scale record's count; None for a pool it no longer has."""
    service, _, bot = name.partition(".")
    if service == "frontend":
        return cluster.frontend_of(bot).replicas if not bot or bot in cluster.bots else None
    return cluster.action_of(bot).replicas if bot in cluster.action_pools() else None


@dataclass(frozen=True)
class State:
    scale: dict[str, ScaleRecord] = field(default_factory=dict)
    # Bot → a model file pinned by a failed rollout ("" for a cluster without `bots:`).
    models: dict[str, str] = field(default_factory=dict)

    def applied_to(self, cluster: Cluster) -> Cluster:
        """`cluster` with the records that still hold (hosts.yml unchanged since) applied."""
        services = cluster.services
        updates = {}
        # bot → its section (frontend, actions) → the keys that change
        bots: dict[str, dict[str, dict[str, object]]] = {}
        for name, record in self.live(cluster).items():
            service, _, bot = name.partition(".")
            if bot:
                section = "frontend" if service == "frontend" else "actions"
                bots.setdefault(bot, {}).setdefault(section, {})["replicas"] = record.replicas
            else:
                updates[service] = getattr(services, service).model_copy(
                    update={"replicas": record.replicas}
                )
        for bot, model in self.models.items():
            if not bot:
                updates["frontend"] = updates.get("frontend", services.frontend).model_copy(
                    update={"model": model}
                )
            elif bot in cluster.bots:
                bots.setdefault(bot, {}).setdefault("frontend", {})["model"] = model
        if not updates and not bots:
            return cluster
        changed_bots = {
            name: bot.model_copy(
                update={
                    section: getattr(bot, section).model_copy(update=keys)
                    for section, keys in bots[name].items()
                }
            )
            for name, bot in cluster.bots.items()
            if name in bots
        }
        return cluster.model_copy(
            update={
                "services": services.model_copy(update=updates),
                "bots": {**cluster.bots, **changed_bots},
            }
        )

    def live(self, cluster: Cluster) -> dict[str, ScaleRecord]:
        return {
            name: record
            for name, record in self.scale.items()
            if file_replicas(cluster, name) == record.file_replicas
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
            if str(name).partition(".")[0] in SCALABLE
        }
        models = {str(bot): str(model) for bot, model in (data.get("models") or {}).items()}
        if data.get("model"):
            models[""] = str(data["model"])
        return State(scale, models)
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
    if "" in state.models:
        document["model"] = state.models[""]
    if bots := {bot: model for bot, model in state.models.items() if bot}:
        document["models"] = bots
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
