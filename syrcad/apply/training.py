"""`syrcad train`: the bot trained in a one-off container on the training host."""

from __future__ import annotations

from python_on_whales import DockerClient

from syrcad.apply.deployment import Deployment, Reporter
from syrcad.apply.hosts import HostHandle
from syrcad.config.model import Project


def train(dep: Deployment, host: HostHandle, report: Reporter, bot: str = "") -> str:
    """Train `bot` in a one-off container on `host`, with the host's GPUs if it has any; the
    model lands in the bot's models folder. Returns the model's path as Rasa printed it ('' if
    it did not say)."""
    cluster = dep.cluster
    models = cluster.frontend_of(bot).model
    path = cluster.project_of(bot)
    gpus = host.run("look for GPUs", _gpus)
    report.step(
        f"{host.name}: training{f' bot {bot}' if bot else ''} with {cluster.images.rasa}"
        f"{' on the GPUs' if gpus else ''} (models → {path}/{models})"
    )

    mounts, volumes = _project_mount(cluster.project, path)

    def run(docker: DockerClient) -> str:
        return docker.run(
            cluster.images.rasa,
            ["train", "--out", models],
            workdir="/app",
            # Root inside, so the container can write the shared project whatever its owner.
            user="0:0",
            envs={
                "RASA_TELEMETRY_ENABLED": "false",
                "RASA_CACHE_DIRECTORY": "/tmp/rasa-cache",
                "HOME": "/tmp",
            },
            remove=True,
            gpus=gpus,
            mounts=mounts,
            volumes=volumes,
        )

    output = host.run("train the model", run)
    trained = [line for line in output.splitlines() if "model is trained and saved at" in line]
    return trained[-1].split("'")[1] if trained and "'" in trained[-1] else ""


def _gpus(docker: DockerClient) -> str | None:
    """ "all" where the engine runs NVIDIA's container runtime (the host has GPUs for Docker)."""
    runtimes = docker.system.info().runtimes or {}
    return "all" if "nvidia" in runtimes else None


def _project_mount(project: Project, path: str) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """The bot's project (`path`) at /app, read-write (training writes the model): the NFS
    export mounted by the container (every bot's is project.path then), or the host's folder."""
    if not project.nfs:
        return [], [(path, "/app")]
    nfs = project.nfs
    options = f'"volume-opt=o=addr={nfs.server},{nfs.options}"'  # quoted: the value has commas
    mount = [
        "type=volume",
        "target=/app",
        "volume-driver=local",
        "volume-opt=type=nfs",
        f"volume-opt=device=:{nfs.export}",
        options,
    ]
    return [mount], []
