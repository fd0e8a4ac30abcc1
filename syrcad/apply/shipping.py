"""Images to hosts without a registry: `docker save` here, `docker load` there.

Only what a host lacks, or holds under another id, is streamed, through the host's one SSH
connection (its forwarded Docker socket). Image ids survive save/load, so "same id" means
"same image" on both engines.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

from python_on_whales import DockerClient
from python_on_whales.components.image.cli_wrapper import Image

from syrcad.apply.hosts import HostHandle
from syrcad.config.model import Cluster
from syrcad.errors import RemoteError, SyrcadError
from syrcad.plan.placement import Placement, Service

CHUNK = 1 << 20
Progress = Callable[[int, int], None]  # (bytes sent, bytes expected)


def image_of(cluster: Cluster, service: Service) -> str:
    images = cluster.images
    return {
        "frontend": images.rasa,
        "action": images.actions,
        "lb": images.haproxy,
        "action-lb": images.haproxy,
        "mongo": images.mongo,
        "postgres": images.postgres,
        "redis": images.redis,
        "sentinel": images.redis,
        "keepalived": images.keepalived,
        "blackbox": images.prometheus,
        "prometheus": images.prometheus,
        "model-server": images.rasa,  # Python's standard library is all it needs
    }[service]


def needed(cluster: Cluster, placement: Placement, host: str) -> list[str]:
    """The images the containers placed on `host` run; under Swarm, those of every role it
    has as well, as Swarm may start any replica of those roles there."""
    placed = {image_of(cluster, c.service) for c in placement.on(host)}
    if cluster.engine == "swarm":
        roles = cluster.hosts[host].roles
        placed |= {image_of(cluster, s) for s in get_args(Service) if s in roles}
    return sorted(placed)


@dataclass(frozen=True)
class Shipment:
    image: str
    image_id: str
    size: int  # bytes, the image's own size (close to the `docker save` stream's)
    reason: str  # "missing" or "different id"


def missing(host: HostHandle, images: Sequence[str], local: DockerClient) -> list[Shipment]:
    """What `host` lacks of `images`, compared with this machine's engine.

    An image absent here but present on the host is fine (pulled or loaded there by hand).
    """
    remote = {
        name: i.id for name, i in host.run("inspect images", lambda d: _inspect(d, images)).items()
    }
    here = _inspect(local, images)
    result = []
    for image in images:
        if image not in here:
            if image not in remote:
                raise SyrcadError(
                    f"{host.name}: image {image} is neither on its engine nor on this machine's\n"
                    "Build the stand-ins with `syrcad images build`, or load/pull it on that host."
                )
            continue
        if remote.get(image) != here[image].id:
            reason = "missing" if image not in remote else "different id"
            result.append(Shipment(image, here[image].id, int(here[image].size or 0), reason))
    return result


def _inspect(docker: DockerClient, images: Sequence[str]) -> dict[str, Image]:
    return {i: docker.image.inspect(i) for i in images if docker.image.exists(i)}


def ship(host: HostHandle, shipment: Shipment, progress: Progress) -> None:
    """Stream one image: `docker save` from this machine's engine into `docker load` on the host."""
    # No -H: the same engine as `local_engine()` (DOCKER_HOST, else the CLI's default).
    save_argv = ["docker", "save", shipment.image]
    load_argv = ["docker", "-H", host.engine, "load", "--quiet"]
    with (
        subprocess.Popen(save_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as save,
        subprocess.Popen(
            load_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as load,
    ):
        assert save.stdout is not None and load.stdin is not None
        sent = 0
        try:
            while chunk := save.stdout.read(CHUNK):
                load.stdin.write(chunk)
                sent += len(chunk)
                progress(sent, max(sent, shipment.size))
            load.stdin.close()
        except BrokenPipeError:
            pass  # `docker load` stopped early; its exit code and stderr say why
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
        load_out, load_err = (
            (s.read().decode(errors="replace") if s else "") for s in (load.stdout, load.stderr)
        )
        save.wait()
        load.wait()
    if save.returncode != 0:
        raise RemoteError("local", save_argv, save.returncode, "", save_err, step="save image")
    if load.returncode != 0:
        raise RemoteError(
            host.name, load_argv, load.returncode, load_out, load_err, step=f"load {shipment.image}"
        )
    _check_arrived(host, shipment, load_argv, load_out)
    progress(sent, sent)


def _check_arrived(
    host: HostHandle, shipment: Shipment, load_argv: list[str], load_out: str
) -> None:
    """The host now holds the image under the id it has here."""
    arrived = host.run("inspect images", lambda d: d.image.inspect(shipment.image).id)
    if arrived != shipment.image_id:
        raise RemoteError(
            host.name,
            load_argv,
            None,
            load_out,
            "",
            step=f"load {shipment.image}",
            hint=f"the host holds id {arrived[:19]} after loading, expected {shipment.image_id[:19]}",
        )


def local_engine() -> DockerClient:
    """This machine's engine, where images are built (DOCKER_HOST, else the CLI's default)."""
    return DockerClient()
