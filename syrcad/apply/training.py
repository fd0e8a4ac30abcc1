"""`syrcad train`: the bot trained in a one-off container on the training host."""

from __future__ import annotations

from python_on_whales import DockerClient

from syrcad.apply.deployment import Deployment, Reporter
from syrcad.apply.hosts import HostHandle
from syrcad.config.model import Project


def train(dep: Deployment, host: HostHandle, report: Reporter) -> str:
    """Train the bot in a one-off container on `host`; the model lands in the project's models
    folder. Returns the model's path as Rasa printed it ('' if it did not say)."""
    cluster = dep.cluster
    models = cluster.services.frontend.model
    project = cluster.project
    report.step(
        f"{host.name}: training with {cluster.images.rasa} (models → {project.path}/{models})"
    )

    mounts, volumes = _project_mount(project)

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
            mounts=mounts,
            volumes=volumes,
        )

    output = host.run("train the model", run)
    trained = [line for line in output.splitlines() if "model is trained and saved at" in line]
    return trained[-1].split("'")[1] if trained and "'" in trained[-1] else ""


def _project_mount(project: Project) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """The project at /app, read-write (training writes the model): the NFS export mounted by
    the container, or the host's folder."""
    if not project.nfs:
        return [], [(project.path, "/app")]
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
