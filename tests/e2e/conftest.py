"""A real cluster for the end-to-end tests: real Docker engine, Rasa, HAProxy, Redis, Mongo.

It runs beside the demo (own name, own ports) and is torn down at the end. Missing engine or
images fail the run: these tests are never skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from syrcad.config.secrets import Secrets, read, secrets_path

from ..conftest import EXAMPLES, ROOT

PORTS = {"frontend": 15005, "action": 15055}
LB = {
    "public_port": 18080,
    "api_port": 18005,
    "action_port": 18055,
    "stats_port": 18404,
    "action_stats_port": 18405,
}
TLS_PORT = 18443
STORES = {"tracker": {"port": 37017}, "lock": {"port": 36379}}


OUTPUTS: list[str] = []  # everything syrcad printed during the run, checked for secrets


def syrcad(
    *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "syrcad.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    OUTPUTS.append(done.stdout + done.stderr)
    if check and done.returncode != 0:
        pytest.fail(
            f"syrcad {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


@dataclass
class E2ECluster:
    hosts_file: Path
    secrets: Secrets
    public: str = f"http://127.0.0.1:{LB['public_port']}"
    api: str = f"http://127.0.0.1:{LB['api_port']}"

    def say(self, sender: str, message: str, url: str | None = None) -> requests.Response:
        response = requests.post(  # verify=False: the e2e cluster's TLS certificate is self-signed
            f"{url or self.public}/webhooks/rest/webhook",
            json={"sender": sender, "message": message},
            timeout=60,
            verify=False,
        )
        response.raise_for_status()
        return response

    def texts(self, sender: str, message: str) -> list[str]:
        return [m["text"] for m in self.say(sender, message).json() if "text" in m]

    def tracker(self, sender: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.api}/conversations/{sender}/tracker",
            params={"token": self.secrets.rasa_token},
            timeout=30,
        )
        response.raise_for_status()
        return dict(response.json())

    def mongo(self) -> Any:
        import pymongo

        return pymongo.MongoClient(
            "127.0.0.1",
            STORES["tracker"]["port"],
            username="rasa",
            password=self.secrets.tracker_password,
            authSource="admin",
            serverSelectionTimeoutMS=10_000,
        )

    def redis(self) -> Any:
        import redis

        return redis.Redis(
            host="127.0.0.1", port=STORES["lock"]["port"], password=self.secrets.redis_password
        )


def require_engine() -> None:
    done = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            "no Docker engine answers: the e2e tests need one (scripts/setup.sh starts it)\n"
            + done.stderr
        )


def write_hosts_file(folder: Path) -> Path:
    document = yaml.safe_load((EXAMPLES / "local.yml").read_text(encoding="utf-8"))
    document["name"] = "e2e"
    document["deploy_dir"] = str(folder / "deploy")
    document["project"] = {"path": str(ROOT / "bot"), "actions": str(ROOT / "actions")}
    document["services"]["frontend"]["base_port"] = PORTS["frontend"]
    document["services"]["action"]["base_port"] = PORTS["action"]
    document["services"]["lb"] = {
        **LB,
        "tls": {"certificate": str(self_signed(folder)), "port": TLS_PORT},
    }
    document["stores"] = STORES
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def self_signed(folder: Path) -> Path:
    """A throw-away certificate and key in one PEM, as the demo's TLS would use."""
    key, cert, pem = folder / "tls.key", folder / "tls.crt", folder / "tls.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    pem.write_text(cert.read_text() + key.read_text())
    return pem


def has_model() -> bool:
    return any((ROOT / "bot" / "models").glob("*.tar.gz"))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ECluster]:
    require_engine()
    syrcad("images", "build")  # a no-op when the images are up to date
    hosts_file = write_hosts_file(tmp_path_factory.mktemp("e2e"))
    if not has_model():
        syrcad("train", "--hosts", str(hosts_file))
    started = time.monotonic()
    syrcad("up", "--hosts", str(hosts_file))
    print(f"\ne2e cluster up in {time.monotonic() - started:.0f} s")
    secrets = read(secrets_path(hosts_file))
    assert secrets is not None
    try:
        running = E2ECluster(hosts_file, secrets)
        yield running
        assert_secrets_never_shown(secrets)
        assert_secrets_never_shown(running.secrets)  # after a rotation, the new ones too
    finally:
        syrcad("down", "--volumes", "--hosts", str(hosts_file), check=False)


def assert_secrets_never_shown(secrets: Secrets) -> None:
    """No secret in any container log of the run, nor in anything syrcad printed."""
    from python_on_whales import DockerClient

    docker = DockerClient()
    texts = list(OUTPUTS)
    for container in docker.container.list(all=True, filters=[("label", "io.syrcad.cluster=e2e")]):
        texts.append(str(docker.container.logs(container)))
    leaks = [
        name for name, value in secrets.as_dict().items() if any(value in text for text in texts)
    ]
    assert leaks == [], f"secrets shown in logs or output: {leaks}"


def new_sender() -> str:
    return str(uuid.uuid4())
