"""Connections to the hosts: a Docker client per host, and putting rendered files there.

`syrcad.apply` is the only package that talks to Docker or SSH.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from syrcad.apply.ssh import SshTarget, link, run_checked
from syrcad.config.model import Cluster
from syrcad.errors import HostsFailed, RemoteError, SyrcadError
from syrcad.plan import commands
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
    ssh: SshTarget | None = None  # for ssh:// engines

    @property
    def shares_our_disk(self) -> bool:
        """unix:// and tcp:// engines see this machine's files (tcp:// only on a shared disk)."""
        return self.ssh is None

    @property
    def engine(self) -> str:
        """The URL Docker clients use: for ssh:// hosts, the socket forwarded by the one
        SSH connection to the host (opened on first use)."""
        return link(self.ssh).engine_url() if self.ssh else self.url

    @property
    def compose_file(self) -> Path:
        return self.local_root / self.name / "compose.yml"

    def docker(self) -> DockerClient:
        return DockerClient(
            host=self.engine, compose_files=[self.compose_file], compose_project_name=self.project
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

    def shell(self, step: str, script: str, stdin: bytes | None = None) -> str:
        """Run a shell script on the host: over its SSH connection, or here for hosts that
        share this machine. A failure names the host and the step."""
        argv = link(self.ssh).argv(script) if self.ssh else ["sh", "-c", script]
        return run_checked(self.name, argv, step, stdin)

    def _push(self, paths: Sequence[str]) -> None:
        """Copy files to the host as one tar stream, unpacked in place."""
        stream = subprocess.run(
            ["tar", "-C", str(self.local_root / self.name), "-cf", "-", *paths],
            capture_output=True,
            check=True,
        ).stdout
        folder = str(self.remote_root / self.name)
        self.shell("copy the rendered files", commands.unpack_files(folder), stream)


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


def each(hosts: Iterable[HostHandle], action: Callable[[HostHandle], T]) -> dict[str, T]:
    """`action` on every host at once; returns results by host name.

    Every host's action runs to its end even when another fails, so hosts that succeed are
    left complete; then the failures are raised together, each naming its host and step.
    """
    chosen = list(hosts)
    if len(chosen) <= 1:
        return {h.name: action(h) for h in chosen}
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = {h.name: pool.submit(action, h) for h in chosen}
    failures: list[SyrcadError] = []
    results: dict[str, T] = {}
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            results[name] = future.result()
        elif isinstance(error, SyrcadError):
            failures.append(error)
        else:
            raise error
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise HostsFailed(failures)
    return results


def handles(cluster: Cluster, workspace: Path) -> dict[str, HostHandle]:
    """A handle per host, in file order. `workspace` keeps local copies for remote hosts."""
    result = {}
    for name, host in cluster.hosts.items():
        url = host.docker_url()
        remote = Path(cluster.cluster_dir())
        ssh = None
        if url.startswith("ssh://"):
            parts = urlsplit(url)
            ssh = SshTarget(
                host=name,
                user=parts.username or host.ssh.user,
                address=parts.hostname or str(host.address),
                port=parts.port or host.ssh.port,
                config_file=host.ssh.config_file,
                identity_file=host.ssh.identity_file,
            )
        result[name] = HostHandle(
            name=name,
            address=str(host.address),
            url=url,
            remote_root=remote,
            local_root=workspace / cluster.name if ssh else remote,
            project=cluster.name,
            ssh=ssh,
        )
    return result
