"""Connections to the hosts: a Docker client per host, and putting rendered files there.

`syrcad.apply` is the only package that talks to Docker or SSH.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from syrcad.config.model import Cluster
from syrcad.errors import RemoteError
from syrcad.render import RenderedFile, write_tree

T = TypeVar("T")


@dataclass(frozen=True)
class HostHandle:
    """One host of the cluster, as the apply layer reaches it."""

    name: str
    address: str
    url: str  # the Docker engine: unix://, tcp:// or ssh://
    remote_root: Path  # the cluster folder on the host (files in <root>/<host>/)
    local_root: Path  # this machine's copy of it, which the compose CLI reads
    project: str

    @property
    def shares_our_disk(self) -> bool:
        """A unix:// engine runs on this machine: its files are ours, no copy needed."""
        return self.url.startswith("unix://")

    @property
    def compose_file(self) -> Path:
        return self.local_root / self.name / "compose.yml"

    def docker(self) -> DockerClient:
        return DockerClient(
            host=self.url, compose_files=[self.compose_file], compose_project_name=self.project
        )

    def run(self, step: str, action: Callable[[DockerClient], T], hint: str = "") -> T:
        """Run `action` against this host's engine; a failure names the host and the step."""
        try:
            return action(self.docker())
        except DockerException as error:
            raise remote_error(self.name, error, step, hint) from None

    def start(self, services: Sequence[str]) -> None:
        """`docker compose up -d` for these services: creates or recreates only what changed."""
        names = list(services)
        self.run(
            f"start {', '.join(names)}", lambda d: d.compose.up(names, detach=True, quiet=True)
        )

    def recreate(self, service: str) -> None:
        """A fresh container for `service`, whatever changed (new model, image, config)."""
        self.run(
            f"recreate {service}",
            lambda d: d.compose.up(
                [service], detach=True, force_recreate=True, dependencies=False, quiet=True
            ),
        )

    def remove_orphans(self) -> None:
        """Remove the cluster's containers this host's compose file no longer has."""
        self.run(
            "remove old containers",
            lambda d: d.compose.up(detach=True, remove_orphans=True, quiet=True),
        )

    def restart(self, service: str) -> None:
        self.run(f"restart {service}", lambda d: d.compose.restart([service]))

    def has_image(self, image: str) -> bool:
        return self.run("inspect images", lambda d: d.image.exists(image))

    def log_tail(self, service: str, lines: int) -> str:
        return str(
            self.run(
                f"read logs of {service}", lambda d: d.compose.logs([service], tail=str(lines))
            )
        )

    def sync(self, files: Sequence[RenderedFile]) -> list[str]:
        """Put this host's rendered files in place; returns the relative paths that changed."""
        mine = [f for f in files if f.host == self.name]
        changed = [
            str(p.relative_to(self.local_root / self.name))
            for p in write_tree(self.local_root, mine)
        ]
        if changed and not self.shares_our_disk:
            self._push(changed)
        return changed

    def _push(self, paths: Sequence[str]) -> None:
        """Copy files to the host through one ssh session: a tar stream, unpacked in place."""
        destination = self.url.removeprefix("ssh://")
        port: list[str] = []
        if destination.rsplit(":", 1)[-1].isdigit():
            destination, number = destination.rsplit(":", 1)
            port = ["-p", number]
        folder = shlex.quote(str(self.remote_root / self.name))
        stream = subprocess.run(
            ["tar", "-C", str(self.local_root / self.name), "-cf", "-", *paths],
            capture_output=True,
            check=True,
        ).stdout
        argv = [
            "ssh",
            *port,
            destination,
            f"mkdir -p {folder} && chmod 700 {folder} && tar -C {folder} -xf -",
        ]
        done = subprocess.run(argv, input=stream, capture_output=True, check=False)
        if done.returncode != 0:
            raise RemoteError(
                self.name,
                argv,
                done.returncode,
                "",
                done.stderr.decode(errors="replace"),
                step="copy the rendered files",
            )


def remote_error(host: str, error: DockerException, step: str, hint: str = "") -> RemoteError:
    """python-on-whales' exception as ours: host, argv, exit code, stdout, stderr, step."""
    return RemoteError(
        host,
        error.docker_command,
        error.return_code,
        error.stdout or "",
        error.stderr or "",
        step=step,
        hint=hint,
    )


def handles(cluster: Cluster, workspace: Path) -> dict[str, HostHandle]:
    """A handle per host, in file order. `workspace` keeps local copies for remote hosts."""
    result = {}
    for name, host in cluster.hosts.items():
        url = host.docker_url()
        remote = Path(cluster.cluster_dir())
        result[name] = HostHandle(
            name=name,
            address=str(host.address),
            url=url,
            remote_root=remote,
            local_root=remote if url.startswith("unix://") else workspace / cluster.name,
            project=cluster.name,
        )
    return result
