"""`syrcad train`: the bot trained in a one-off container on the training host."""

from __future__ import annotations

from python_on_whales import DockerClient

from syrcad.apply.deployment import Deployment, Reporter
from syrcad.apply.hosts import HostHandle


def host_for(dep: Deployment) -> str:
    """The first host with the `train` role, else the first frontend host."""
    cluster = dep.cluster
    return (cluster.hosts_with("train") or cluster.hosts_with("frontend"))[0]


def train(dep: Deployment, host: HostHandle, report: Reporter) -> str:
    """Train the bot in a one-off container on `host`; the model lands in the project's models
    folder. Returns the model's path as Rasa printed it ('' if it did not say)."""
    cluster = dep.cluster
    models = cluster.services.frontend.model
    project = cluster.project
    report.step(
        f"{host.name}: training with {cluster.images.rasa} (models → {project.path}/{models})"
    )

    mounts: list[list[str]] = []
    volumes: list[tuple[str, str]] = []
    if project.nfs:
        nfs = project.nfs
        # Read-write here, unlike the frontends' read-only mount: training writes the model.
        options = f'"volume-opt=o=addr={nfs.server},{nfs.options}"'  # quoted: the value has commas
        mounts.append(
            [
                "type=volume",
                "target=/app",
                "volume-driver=local",
                "volume-opt=type=nfs",
                f"volume-opt=device=:{nfs.export}",
                options,
            ]
        )
    else:
        volumes.append((project.path, "/app"))

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
