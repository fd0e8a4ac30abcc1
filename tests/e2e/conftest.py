"""A real cluster for the end-to-end tests: real Docker engine, Rasa, HAProxy, Redis, Mongo.

Two layouts, chosen with `--layout`, and the tracker store syrcad runs, with `--tracker` (mongo
by default, or postgres):
- `local` (default): the whole cluster on this machine's engine, beside the demo (own name, own
  ports);
- `hosts`: three test hosts (network namespaces, each with its own engine and sshd; see
  tests/testhosts.py) deployed over ssh://, with no single point of failure but Mongo:
  frontends, action servers and the LBs (on a virtual address, keepalived) on node1 and node2,
  Mongo on node3, Redis with Sentinels on all three (node3's the primary), so traffic crosses
  host addresses.
The same tests run on both; tests marked `hosts_layout` only on the second (deselected, and
counted as such, on the first). Two more layouts run their own tests only: `swarm` (the three
test hosts as one swarm) and `bots` (the local one with two bots: English and German). Everything is torn down at the end. A missing engine or image
fails the run: these tests are never skipped silently.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests
import yaml
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from syrcad.apply.deployment import Deployment, prepare
from syrcad.config.secrets import Secrets, read, secrets_path

from .. import testhosts
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
STORES = {"tracker": {"port": 37017}, "lock": {"port": 36379, "sentinel_port": 46379}}
POSTGRES_PORT = 35432
PROMETHEUS_PORT = 19090
# The bots layout's two bots, and how each is reached besides its path /bots/NAME/. German has
# action servers of its own (the same package: the words are in each bot's domain), and pulls
# its models from the model server.
BOTS = {
    "en": {
        "path": str(ROOT / "bot"),
        "routes": {"app_ids": ["app-en"], "hosts": ["en.chat.test"], "locales": ["en"]},
        "default": True,
    },
    "de": {
        "path": str(ROOT / "bot-de"),
        "actions": {"path": str(ROOT / "actions"), "replicas": 1},
        "pull_models": True,
        "routes": {"app_ids": ["app-de"], "hosts": ["de.chat.test"], "locales": ["de"]},
    },
}


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


@dataclass(frozen=True)
class Layout:
    """Where the e2e cluster runs, and how the tests reach each host's engine directly."""

    name: str
    hosts: dict[str, dict[str, Any]]  # hosts.yml's `hosts:` section
    engines: dict[str, str]  # host name → Docker URL usable from this machine
    outside: dict[str, str]  # host name → an address of that host that is not the cluster's
    second_client: str  # a source address of this machine other than the usual one
    test_hosts: testhosts.TestHosts | None = None
    tracker: str = "mongo"  # the tracker store syrcad runs: mongo or postgres


def local_layout() -> Layout:
    document = yaml.safe_load((EXAMPLES / "local.yml").read_text(encoding="utf-8"))
    listing = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    )
    addresses = [line.split()[3].split("/")[0] for line in listing.stdout.splitlines()]
    return Layout(
        "local",
        document["hosts"],
        {"local": document["hosts"]["local"]["docker_host"]},
        outside={"local": next(a for a in addresses if not a.startswith("127."))},
        second_client="127.0.0.1",
    )


def hosts_layout() -> Layout:
    # node3 first: the first Redis host's starts as the primary, and a cut of an app host
    # (node1, node2) should not take the primary with it.
    return three_hosts(
        "hosts",
        {
            "node3": ["mongo", "redis"],
            "node1": ["frontend", "action", "lb", "redis", "train"],
            "node2": ["frontend", "action", "lb", "redis"],
        },
    )


def swarm_layout() -> Layout:
    """The three test hosts as one swarm: node1 founds it; frontends, action servers and LBs on
    node1 and node2, the stores on node3."""
    return three_hosts(
        "swarm",
        {
            "node1": ["frontend", "action", "lb"],
            "node2": ["frontend", "action", "lb"],
            "node3": ["mongo", "redis"],
        },
    )


def three_hosts(name: str, roles: dict[str, list[str]]) -> Layout:
    made = testhosts.up(3)
    return Layout(
        name,
        {
            host: {
                "address": made.by_name(host).address,
                "ssh": {"config_file": str(made.ssh_config)},
                "roles": host_roles,
            }
            for host, host_roles in roles.items()
        },
        {h.name: h.engine for h in made.hosts},
        outside={h.name: h.public_address for h in made.hosts},
        second_client=testhosts.SECOND_CLIENT,
        test_hosts=made,
    )


def container(service: str) -> str:
    return f"e2e-{service}-1-1"  # compose's name for replica 1 of the cluster "e2e"


class StoredTrackers(Protocol):
    def events(self, sender: str) -> list[dict[str, Any]]:
        """`sender`'s tracker events as the store holds them, oldest first."""
        ...


class WholeStore(StoredTrackers, Protocol):
    def everything(self) -> dict[str, list[dict[str, Any]]]:
        """Every conversation the store holds: sender → events, oldest first."""
        ...

    def copy(self, senders: list[str], copies: int) -> int:
        """Store `copies` copies of each of `senders`' conversations under new senders, written
        straight into the store as the frontends write them; how many conversations that made."""
        ...


def _event_chunks() -> Any:
    """compose/rasa/syrcad_event_chunks.py: the layout the frontends keep conversations in."""
    path = Path(__file__).resolve().parents[2] / "compose" / "rasa" / "syrcad_event_chunks.py"
    spec = importlib.util.spec_from_file_location("syrcad_event_chunks", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVENT_CHUNKS = _event_chunks()
CHUNK_EVENTS: int = EVENT_CHUNKS.CHUNK_EVENTS


@dataclass(frozen=True)
class MongoTrackers:
    """syrcad's Mongo tracker store: each conversation in documents of CHUNK_EVENTS events in
    `<collection>.chunks`, read here on their own (a bot's collection: conversations_NAME)."""

    client: Any
    collection: str = "conversations"

    @property
    def chunks(self) -> Any:
        return self.client["rasa"][f"{self.collection}.chunks"]

    def events(self, sender: str) -> list[dict[str, Any]]:
        return self._joined(self.chunks.find({"sender_id": sender})).get(sender, [])

    def everything(self) -> dict[str, list[dict[str, Any]]]:
        return self._joined(self.chunks.find({}))

    def out_of_layout(self) -> list[str]:
        """Senders whose chunks are not 0, 1, … with every one but the last full: what a
        frontend writes under the conversation's lock (Rasa's stock lock store, which lets two
        frontends write one conversation at once, can overfill a chunk)."""
        numbered: dict[str, list[tuple[int, int]]] = {}
        for document in self.chunks.find({}, {"sender_id": 1, "chunk": 1, "events": 1}):
            numbered.setdefault(document["sender_id"], []).append(
                (document["chunk"], len(document["events"]))
            )
        return [
            sender
            for sender, chunks in numbered.items()
            if [n for n, _ in sorted(chunks)] != list(range(len(chunks)))
            or any(size != CHUNK_EVENTS for _, size in sorted(chunks)[:-1])
        ]

    @staticmethod
    def _joined(documents: Any) -> dict[str, list[dict[str, Any]]]:
        by_sender: dict[str, list[dict[str, Any]]] = {}
        for document in documents:
            by_sender.setdefault(document["sender_id"], []).append(document)
        joined = {}
        for sender, chunks in by_sender.items():
            chunks.sort(key=lambda chunk: chunk["chunk"])
            joined[sender] = [event for chunk in chunks for event in chunk["events"]]
        return joined

    def copy(self, senders: list[str], copies: int) -> int:
        documents = [
            chunk
            for sender in senders
            for events in [self.events(sender)]
            for n in range(copies)
            for chunk in EVENT_CHUNKS.as_chunks(f"copy-{n}-{sender}", events)
        ]
        self.chunks.insert_many(documents)
        return len(senders) * copies

    def put_in_rasa_layout(self, sender: str, events: list[dict[str, Any]]) -> None:
        """Store a conversation as Rasa's own Mongo tracker store does: one document."""
        self.client["rasa"]["conversations"].insert_one({"sender_id": sender, "events": events})

    def in_rasa_layout(self) -> set[str]:
        """The senders whose conversations are still in Rasa's own layout."""
        return {
            d["sender_id"] for d in self.client["rasa"]["conversations"].find({}, {"sender_id": 1})
        }


@dataclass(frozen=True)
class PostgresTrackers:
    """Rasa's SQL tracker store: a row per event, its JSON in `data`; read with the container's
    own psql (its local socket trusts the container's processes)."""

    engine: DockerClient
    container: str

    def events(self, sender: str) -> list[dict[str, Any]]:
        uuid.UUID(sender)  # the tests' senders: safe to put in the query as they are
        query = f"SELECT data FROM events WHERE sender_id = '{sender}' ORDER BY id"
        return [json.loads(row) for row in self._psql(query).splitlines() if row]

    def everything(self) -> dict[str, list[dict[str, Any]]]:
        # A tab between the columns: JSON writes a tab inside a string as \t.
        rows = self._psql("SELECT sender_id, data FROM events ORDER BY id", "-F", "\t")
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows.splitlines():
            sender, data = row.split("\t", 1)
            found.setdefault(sender, []).append(json.loads(data))
        return found

    def copy(self, senders: list[str], copies: int) -> int:
        for sender in senders:
            uuid.UUID(sender)
        listed = ", ".join(f"'{sender}'" for sender in senders)
        columns = "type_name, timestamp, intent_name, action_name, data"
        self._psql(
            f"INSERT INTO events (sender_id, {columns})"
            f" SELECT 'copy-' || n || '-' || sender_id, {columns}"
            f" FROM events, generate_series(0, {copies - 1}) AS n"
            f" WHERE sender_id IN ({listed}) ORDER BY n, sender_id, id"
        )
        return len(senders) * copies

    def empty(self) -> None:
        self._psql("DELETE FROM events")

    def _psql(self, query: str, *options: str) -> str:
        psql = ["psql", "-X", "-At", *options, "-U", "rasa", "-d", "rasa", "-c", query]
        return str(self.engine.container.execute(self.container, psql) or "")


@dataclass(frozen=True)
class ApiTrackers:
    """The trackers as Rasa's HTTP API reads them from the store (engine: swarm publishes no
    store port)."""

    api: str
    token: str

    def events(self, sender: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.api}/conversations/{sender}/tracker", params={"token": self.token}, timeout=30
        )
        response.raise_for_status()
        return list(response.json()["events"])


@dataclass
class E2ECluster:
    hosts_file: Path
    secrets: Secrets
    layout: Layout
    deployment: Deployment

    @classmethod
    def of(cls, hosts_file: Path, layout: Layout) -> E2ECluster:
        """The cluster `hosts_file` describes, once `up` has written its secrets."""
        secrets = read(secrets_path(hosts_file))
        assert secrets is not None
        return cls(hosts_file, secrets, layout, prepare(hosts_file))

    def address_of(self, replica: str) -> str:
        """The address of the host that runs `replica` (lb-1, mongo-1, frontend-2, …)."""
        return self.deployment.hosts[self.host_of(replica)].address

    def host_of(self, replica: str) -> str:
        return next(c.host for c in self.deployment.placement.containers if c.name == replica)

    def outside_of(self, replica: str) -> str:
        return self.layout.outside[self.host_of(replica)]

    def docker(self, replica: str) -> DockerClient:
        """The engine of the host that runs `replica`, reached directly (not through syrcad)."""
        return DockerClient(host=self.layout.engines[self.host_of(replica)])

    def engines(self) -> list[DockerClient]:
        return [DockerClient(host=url) for url in self.layout.engines.values()]

    def containers(self, service: str | None = None) -> list[Any]:
        """The cluster's containers on every host (of one service)."""
        label = f"io.syrcad.service={service}" if service else "io.syrcad.cluster=e2e"
        return [
            c
            for docker in self.engines()
            for c in docker.container.list(all=True, filters=[("label", label)])
            if c.name.startswith("e2e-")
        ]

    def frontend_urls(self) -> list[str]:
        return [
            f"http://{self.address_of(c.name)}:{c.port('http').host_port}"
            for c in self.deployment.placement.of("frontend")
        ]

    @property
    def public(self) -> str:
        return f"http://{self.deployment.cluster.public_address()}:{LB['public_port']}"

    @property
    def tls(self) -> str:
        return f"https://{self.deployment.cluster.public_address()}:{TLS_PORT}"

    @property
    def api(self) -> str:
        return f"http://{self.address_of('lb-1')}:{LB['api_port']}"

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

    def flood(self, sender: str, message: str, count: int) -> list[requests.Response]:
        """`count` requests of one sender, all sent at once: the LB counts them as they arrive
        (a rate limit sees them within its period however slow the turns are), while the
        frontends answer them one turn at a time (the sender's lock)."""

        def post(_: int) -> requests.Response:
            return requests.post(
                f"{self.public}/webhooks/rest/webhook",
                json={"sender": sender, "message": message},
                timeout=120,
            )

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(post, range(count)))

    def tracker(self, sender: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.api}/conversations/{sender}/tracker",
            params={"token": self.secrets.rasa_token},
            timeout=30,
        )
        response.raise_for_status()
        return dict(response.json())

    def user_texts(self, sender: str) -> list[str]:
        """The user messages `sender`'s tracker holds, in order (read through Rasa's API)."""
        return [e["text"] for e in self.tracker(sender)["events"] if e["event"] == "user"]

    def saved_user_texts(self, sender: str, expected: list[str], within_s: float = 5) -> list[str]:
        """`user_texts` once they are `expected`, or as they are after `within_s`: socket.io
        sends a turn's replies as they come, and the turn is saved just after the last one."""
        deadline = time.monotonic() + within_s
        while (texts := self.user_texts(sender)) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return texts

    def store(self) -> WholeStore:
        """The tracker store itself, read and written directly (compose engine)."""
        if self.layout.tracker == "postgres":
            return PostgresTrackers(self.docker("postgres-1"), container("postgres"))
        return MongoTrackers(self.mongo())

    def trackers(self) -> StoredTrackers:
        """The tracker store itself, read directly (not through Rasa; under Swarm, through
        Rasa's API, as the store publishes no port)."""
        if self.layout.name == "swarm":
            return ApiTrackers(self.api, self.secrets.rasa_token)
        return self.store()

    def mongo(self, password: str | None = None) -> Any:
        import pymongo

        return pymongo.MongoClient(
            self.address_of("mongo-1"),
            STORES["tracker"]["port"],
            username="rasa",
            password=password or self.secrets.tracker_password,
            authSource="admin",
            serverSelectionTimeoutMS=10_000,
        )

    def tracker_accepts(self, password: str) -> bool:
        """Whether the tracker store lets the frontends' user in with `password`, over TCP."""
        if self.layout.tracker == "postgres":
            login = ["psql", "-X", "-h", "127.0.0.1", "-U", "rasa", "-d", "rasa", "-c", "SELECT 1"]
            try:
                self.docker("postgres-1").container.execute(
                    container("postgres"), login, envs={"PGPASSWORD": password}
                )
            except DockerException:
                return False
            return True
        import pymongo.errors

        try:
            return bool(self.mongo(password)["rasa"].command("ping")["ok"])
        except pymongo.errors.OperationFailure:
            return False

    def redis(self) -> Any:
        import redis

        return redis.Redis(
            host=self.address_of("redis-1"),
            port=STORES["lock"]["port"],
            password=self.secrets.redis_password,
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


def write_hosts_file(folder: Path, layout: Layout) -> Path:
    document = yaml.safe_load((EXAMPLES / "local.yml").read_text(encoding="utf-8"))
    document["name"] = "e2e"
    document["hosts"] = layout.hosts
    document["deploy_dir"] = str(folder / "deploy")
    document["project"] = {"path": str(ROOT / "bot"), "actions": str(ROOT / "actions")}
    document["services"]["frontend"]["base_port"] = PORTS["frontend"]
    document["services"]["action"]["base_port"] = PORTS["action"]
    document["services"]["lb"] = {
        **LB,
        "tls": {"certificate": str(self_signed(folder)), "port": TLS_PORT},
    }
    if layout.name == "hosts":  # the second source address stands for a messaging platform
        document["services"]["lb"]["trusted_sources"] = [f"{layout.second_client}/32"]
        document["services"]["lb"]["virtual_address"] = testhosts.VIRTUAL_ADDRESS
    document["stores"] = STORES
    if layout.name == "bots":
        document["bots"] = BOTS
    # Proven on the local layout (test_monitoring.py) and under Swarm (test_swarm.py); the hosts
    # layout need not carry the image.
    monitored = layout.name in ("local", "swarm")
    document["monitoring"] = {"prometheus": monitored, "port": PROMETHEUS_PORT}
    if layout.name == "swarm":  # replicas and stores publish no port under Swarm
        document["engine"] = "swarm"
        for service in ("frontend", "action"):
            del document["services"][service]["base_port"]
        del document["services"]["lb"]["action_port"]
        document["stores"] = {}
    if layout.tracker == "postgres":  # syrcad's own PostgreSQL where Mongo was
        for host in document["hosts"].values():
            host["roles"] = ["postgres" if r == "mongo" else r for r in host["roles"]]
        document["stores"] = {**STORES, "tracker": {"type": "postgres", "port": POSTGRES_PORT}}
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
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


def has_model(project: Path = ROOT / "bot") -> bool:
    return any((project / "models").glob("*.tar.gz"))


@pytest.fixture(scope="session")
def layout(request: pytest.FixtureRequest) -> Iterator[Layout]:
    tracker = str(request.config.getoption("--tracker"))
    if request.config.getoption("--layout") in ("local", "bots"):
        name = str(request.config.getoption("--layout"))
        yield dataclasses.replace(local_layout(), name=name, tracker=tracker)
        return
    made = swarm_layout if request.config.getoption("--layout") == "swarm" else hosts_layout
    try:
        yield dataclasses.replace(made(), tracker=tracker)
    finally:
        if not os.environ.get("SYRCAD_KEEP_TEST_HOSTS"):
            testhosts.down()
            assert testhosts.leftovers() == [], testhosts.leftovers()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, layout: Layout) -> Iterator[E2ECluster]:
    require_engine()
    syrcad("images", "build")  # a no-op when the images are up to date
    hosts_file = write_hosts_file(tmp_path_factory.mktemp("e2e"), layout)
    if layout.name == "bots":
        for bot, settings in BOTS.items():
            if not has_model(Path(str(settings["path"]))):
                syrcad("train", "--bot", bot, "--hosts", str(hosts_file))
    elif not has_model():
        syrcad("train", "--hosts", str(hosts_file))
    started = time.monotonic()
    try:  # a failed `up` is taken down too
        syrcad("up", "--hosts", str(hosts_file))
        print(f"\ne2e cluster ({layout.name} layout) up in {time.monotonic() - started:.0f} s")
        running = E2ECluster.of(hosts_file, layout)
        secrets = running.secrets  # the first ones: a rotation replaces running.secrets
        yield running
        assert_secrets_never_shown(running, secrets)
        assert_secrets_never_shown(running, running.secrets)  # after a rotation, the new ones too
    finally:
        syrcad("down", "--volumes", "--hosts", str(hosts_file), check=False)


def assert_secrets_never_shown(cluster: E2ECluster, secrets: Secrets) -> None:
    """No secret in any container log of the run, nor in anything syrcad printed."""
    texts = list(OUTPUTS)
    for container in cluster.containers():
        texts.append(str(container.logs()))
    leaks = [
        name for name, value in secrets.as_dict().items() if any(value in text for text in texts)
    ]
    assert leaks == [], f"secrets shown in logs or output: {leaks}"


def new_sender() -> str:
    return str(uuid.uuid4())
