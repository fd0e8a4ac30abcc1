"""A cluster as decided before touching a host: hosts.yml with its recorded state applied, the
placement, the secrets and every rendered file, with a handle per host. And how operations
report what they do (the CLI draws it with Rich)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from syrcad import config, plan, render
from syrcad.apply.hosts import HostHandle, handles
from syrcad.config.model import Cluster
from syrcad.config.secrets import Secrets, ensure, secrets_path
from syrcad.config.state import State, read_state, state_path
from syrcad.errors import SyrcadError
from syrcad.plan.placement import Container, Placement
from syrcad.render.stack import render_stack


@dataclass(frozen=True)
class Deployment:
    """Everything decided before touching a host."""

    loaded: config.Loaded
    cluster: Cluster  # hosts.yml with the recorded state (scale, pins) applied
    state: State
    placement: Placement
    secrets: Secrets
    files: tuple[render.RenderedFile, ...]
    hosts: dict[str, HostHandle]

    def used_hosts(self) -> list[HostHandle]:
        return [h for name, h in self.hosts.items() if self.placement.on(name)]


def prepare(
    hosts_file: Path, state: State | None = None, secrets: Secrets | None = None
) -> Deployment:
    """Validate, place and render; creates the secrets file on first use. Touches no host.

    `state` replaces the recorded state (`syrcad scale` tries its new counts this way), and
    `secrets` the stored ones (`syrcad secrets rotate` renders the new ones before keeping them).
    """
    loaded = config.load(hosts_file)
    if state is None:
        state = read_state(state_path(loaded.path))
    cluster = state.applied_to(loaded.cluster)
    with loaded.source.locating():
        placement = plan.place(cluster)
    secrets = secrets or ensure(secrets_path(loaded.path))
    if cluster.engine == "swarm":
        files = render_stack(cluster, placement, secrets)
    else:
        files = render.render(cluster, placement, secrets)
    return Deployment(
        loaded, cluster, state, placement, secrets, files, handles(cluster, workspace(loaded))
    )


def holding(names: Sequence[str], *deps: Deployment | None) -> tuple[Deployment, list[Container]]:
    """The first of `deps` that places every one of `names` (the cluster after a change, then
    before it: `scale` drains replicas only the old placement has), and their containers."""
    for dep in deps:
        if dep is None:
            continue
        placed = {c.name: c for c in dep.placement.containers}
        if all(n in placed for n in names):
            return dep, [placed[n] for n in names]
    raise SyrcadError(f"not placed in this cluster: {', '.join(names)}")


def workspace(loaded: config.Loaded) -> Path:
    """This machine's folder for the cluster beside hosts.yml: copies of remote hosts' files
    and the local audit log."""
    return loaded.path.resolve().parent / ".syrcad"


class Reporter:
    """How operations tell the user what they do; the CLI draws it with Rich."""

    def step(self, message: str) -> None: ...

    def waiting(self, stage: str, ready: int, total: int, pending: Sequence[str]) -> None: ...

    def done_waiting(self, stage: str) -> None: ...

    def host(self, host: str, message: str, finished: bool = False) -> None:
        """The host's one progress line: what syrcad does there now (or last, when finished)."""

    def transfer(self, host: str, what: str, sent: int, total: int) -> None:
        """Bytes streamed to a host so far (image shipping)."""
