"""Rendered files: pinned by golden files, accepted by the real haproxy and docker compose."""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml

from syrcad.config import load
from syrcad.config.model import Cluster, PostgresTracker, Role
from syrcad.config.secrets import Secrets
from syrcad.plan import place
from syrcad.render import RenderedFile, render, write_tree
from syrcad.render.files import RASA_MODULES
from syrcad.render.stack import render_stack

from .conftest import EXAMPLES, ROOT

GOLDEN = ROOT / "tests" / "golden"
# local.yml with syrcad's own PostgreSQL as the tracker store, where Mongo was; hosts.yml with
# no single point of failure: both app hosts LB hosts on a virtual address, Redis with Sentinels
# and a Mongo replica set on all three hosts.
WITH_POSTGRES = "local.yml+postgres"
HIGHLY_AVAILABLE = "hosts.yml+ha"
# hosts.yml on Docker Swarm: one stack for the whole cluster.
ON_SWARM = "hosts.yml+swarm"
# hosts.yml with two bots, each from its own folder: English (the default; by APP_ID, host and
# language; the shared action servers) and German (on app2 only, with action servers of its own,
# pulling its models from the model server).
WITH_BOTS = "hosts.yml+bots"
EXAMPLE_FILES = ["hosts.yml", "local.yml", WITH_POSTGRES, HIGHLY_AVAILABLE, ON_SWARM, WITH_BOTS]
TWO_BOTS = {
    "en": {
        "path": "/srv/syrcad/bot-en",
        "frontend": {"replicas": 3},
        "routes": {"app_ids": ["app-en-1"], "hosts": ["chat.example.com"], "locales": ["en"]},
        "default": True,
    },
    "de": {
        "path": "/srv/syrcad/bot-de",
        "frontend": {"replicas": 2, "sanic_workers": 2, "resources": {"cpus": 1}},
        "actions": {"path": "/srv/syrcad/actions-de", "replicas": 1, "idempotent": ["action_x"]},
        "hosts": ["app2"],
        "pull_models": True,
        "routes": {"app_ids": ["app-de-1"], "locales": ["de", "de_AT"]},
    },
}
HA_ROLES: dict[str, tuple[Role, ...]] = {
    "app1": ("frontend", "action", "lb", "mongo", "redis"),
    "app2": ("frontend", "action", "lb", "mongo", "redis"),
    "store1": ("mongo", "redis", "train"),
}


def templated(files: tuple[RenderedFile, ...]) -> list[RenderedFile]:
    """Files made by templates (the lock store module is copied as it is, checked below)."""
    return [f for f in files if f.path.suffix != ".py"]


def example_cluster(example: str) -> Cluster:
    file, _, variant = example.partition("+")
    cluster = load(EXAMPLES / file).cluster
    if variant == "ha":
        return highly_available(cluster)
    if variant == "bots":
        # Each bot from its own folder, which project.nfs (one export) does not mount yet.
        project = {"path": "/srv/syrcad/bot-en", "actions": "/srv/syrcad/actions"}
        document = cluster.model_dump(mode="json")
        return Cluster.model_validate({**document, "project": project, "bots": TWO_BOTS})
    if variant == "swarm":  # with Prometheus, which the example leaves off
        monitoring = cluster.monitoring.model_copy(update={"prometheus": True})
        return cluster.model_copy(update={"engine": "swarm", "monitoring": monitoring})
    if variant != "postgres":
        return cluster
    hosts = {
        name: host.model_copy(
            update={"roles": tuple("postgres" if r == "mongo" else r for r in host.roles)}
        )
        for name, host in cluster.hosts.items()
    }
    stores = cluster.stores.model_copy(update={"tracker": PostgresTracker(type="postgres")})
    return cluster.model_copy(update={"hosts": hosts, "stores": stores})


def highly_available(cluster: Cluster) -> Cluster:
    hosts = {n: h.model_copy(update={"roles": HA_ROLES[n]}) for n, h in cluster.hosts.items()}
    lb = cluster.services.lb.model_copy(update={"virtual_address": ip_address("10.20.0.10")})
    services = cluster.services.model_copy(update={"lb": lb})
    tracker = cluster.stores.tracker.model_copy(update={"replica_set": "rs0"})
    stores = cluster.stores.model_copy(update={"tracker": tracker})
    return cluster.model_copy(update={"hosts": hosts, "services": services, "stores": stores})


def rendered(example: str, secrets: Secrets) -> tuple[RenderedFile, ...]:
    cluster = example_cluster(example)
    if cluster.engine == "swarm":
        return render_stack(cluster, place(cluster), secrets)
    return render(cluster, place(cluster), secrets)


def portable(file: RenderedFile) -> str:
    # local.yml's paths are relative to the checkout; pin them independent of where it lives.
    return file.content.replace(str(ROOT), "<checkout>")


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_golden_files(example: str, fixed_secrets: Secrets, request: pytest.FixtureRequest) -> None:
    folder = GOLDEN / example.replace(".yml", "").replace("+", "-")
    files = templated(rendered(example, fixed_secrets))
    if request.config.getoption("--update-golden"):
        shutil.rmtree(folder, ignore_errors=True)
        for file in files:
            target = folder / file.host / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(portable(file), encoding="utf-8")
    expected = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(f"{f.host}/{f.path}" for f in files) == expected
    for file in files:
        assert portable(file) == (folder / file.host / file.path).read_text(encoding="utf-8"), (
            f"{file.host}/{file.path}"
        )


def tool(name: str) -> str:
    found = shutil.which(name)
    # The real tools are part of the test environment: missing means a broken set-up, not a skip.
    assert found, f"{name} is not installed (see .ci/run)"
    return found


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_haproxy_accepts_every_config(example: str, fixed_secrets: Secrets, tmp_path: Path) -> None:
    write_tree(tmp_path, rendered(example, fixed_secrets))
    configs = sorted(tmp_path.rglob("haproxy.cfg"))
    assert configs
    for config in configs:
        # Swarm mounts the public LB's Lua beside its config, in /run/secrets: HAProxy loads it
        # while it checks the config.
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("lua-load /run/secrets/", f"lua-load {config.parent}/"))
        done = subprocess.run(
            [tool("haproxy"), "-c", "-f", str(config)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{config}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_compose_accepts_every_file(example: str, fixed_secrets: Secrets, tmp_path: Path) -> None:
    write_tree(tmp_path, rendered(example, fixed_secrets))
    composes = sorted(tmp_path.rglob("compose.yml"))
    stacks = sorted(tmp_path.rglob("stack.yml"))
    assert composes or stacks
    for compose in composes + stacks:
        check = ["compose", "-f"] if compose.name == "compose.yml" else ["stack", "config", "-c"]
        done = subprocess.run(
            [tool("docker"), *check, str(compose), *(["config", "-q"] * (compose in composes))],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{compose}:\n{done.stdout}{done.stderr}"


def test_rendering_again_rewrites_nothing(fixed_secrets: Secrets, tmp_path: Path) -> None:
    files = rendered("hosts.yml", fixed_secrets)
    assert len(write_tree(tmp_path, files)) == len(files)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert write_tree(tmp_path, files) == []
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_host_folders_are_private(fixed_secrets: Secrets, tmp_path: Path) -> None:
    write_tree(tmp_path, rendered("hosts.yml", fixed_secrets))
    for host in ("app1", "app2", "store1"):
        assert (tmp_path / host).stat().st_mode & 0o777 == 0o700


def test_each_host_gets_only_what_is_placed_on_it(fixed_secrets: Secrets) -> None:
    by_host: dict[str, list[str]] = {}
    for file in rendered("hosts.yml", fixed_secrets):
        by_host.setdefault(file.host, []).append(str(file.path))
    assert by_host == {
        "app1": [
            "compose.yml",
            "rasa/endpoints.yml",
            "rasa/credentials.yml",
            "rasa/syrcad_event_chunks.py",
            "rasa/syrcad_lock_store.py",
            "rasa/syrcad_store_breaker.py",
            "rasa/syrcad_turns.py",
            "lb/haproxy.cfg",
            "action-lb/haproxy.cfg",
        ],
        "app2": [
            "compose.yml",
            "rasa/endpoints.yml",
            "rasa/credentials.yml",
            "rasa/syrcad_event_chunks.py",
            "rasa/syrcad_lock_store.py",
            "rasa/syrcad_store_breaker.py",
            "rasa/syrcad_turns.py",
        ],
        "store1": ["compose.yml", "redis/redis.conf", "mongo/initial-password"],
    }


def test_stores_publish_on_the_cluster_address_only(fixed_secrets: Secrets) -> None:
    store = next(f for f in rendered("hosts.yml", fixed_secrets) if f.host == "store1")
    assert '- "10.20.0.13:27017:27017"' in store.content
    assert '- "10.20.0.13:6379:6379"' in store.content
    assert "MONGO_INITDB_ROOT_PASSWORD_FILE" in store.content
    # No password in a container definition: rotating one must not recreate a store.
    assert "golden-" not in store.content


def test_public_lb_denies_rasa_admin_api(fixed_secrets: Secrets) -> None:
    lb = next(f for f in rendered("hosts.yml", fixed_secrets) if str(f.path) == "lb/haproxy.cfg")
    assert "http-request deny deny_status 403 unless channel or socketio or hello" in lb.content
    assert "http-check send meth GET uri /status?token=golden-rasa-token-0000" in lb.content
    assert "balance leastconn" in lb.content


def test_sender_balance_and_maxconn_per_rasa_process(fixed_secrets: Secrets) -> None:
    cluster = load(EXAMPLES / "hosts.yml").cluster
    frontend = cluster.services.frontend.model_copy(
        update={"balance": "sender", "maxconn": 3, "sanic_workers": 2}
    )
    cluster = cluster.model_copy(
        update={"services": cluster.services.model_copy(update={"frontend": frontend})}
    )
    lb = next(
        f for f in render(cluster, place(cluster), fixed_secrets) if str(f.path) == "lb/haproxy.cfg"
    )
    backend = lb.content.split("\nbackend frontends")[1].split("\nbackend socketio")[0]
    assert "balance hash req.body,json_query('$.sender')" in backend
    assert "balance leastconn" not in backend
    assert "on-error mark-down maxconn 6" in backend  # 3 per Rasa process, 2 per replica


@pytest.mark.parametrize("module", RASA_MODULES)
def test_rasa_modules_ship_as_they_are(module: str, fixed_secrets: Secrets) -> None:
    source = (ROOT / "compose" / "rasa" / module).read_text(encoding="utf-8")
    modules = [f for f in rendered("hosts.yml", fixed_secrets) if f.path.name == module]
    assert [f.host for f in modules] == ["app1", "app2"]
    assert all(f.content == source for f in modules)


def test_frontends_load_the_honest_channels_and_stores(fixed_secrets: Secrets) -> None:
    files = {
        str(f.path): f.content for f in rendered("hosts.yml", fixed_secrets) if f.host == "app1"
    }
    credentials = yaml.safe_load(files["rasa/credentials.yml"])
    assert set(credentials) == {"syrcad_turns.RestInput", "syrcad_turns.SocketIOInput"}
    endpoints = yaml.safe_load(files["rasa/endpoints.yml"])
    assert endpoints["tracker_store"]["type"] == "syrcad_turns.MongoTrackerStore"
    assert endpoints["action_endpoint"]["idempotent_actions"] == ["action_opening_hours"]


def test_lbs_send_again_only_what_a_replica_can_recognise(fixed_secrets: Secrets) -> None:
    """Only a REST message, which carries its id, is sent to another frontend after reaching
    one; an action call, a socket.io packet or an API call only when its connection failed."""
    for file in rendered("hosts.yml", fixed_secrets):
        if file.path.name != "haproxy.cfg":
            continue
        backends = file.content.split("\nbackend ")[1:]
        servers = {
            b.split()[0]: [ln for ln in b.splitlines() if "default-server" in ln] for b in backends
        }
        if str(file.path).startswith("action-lb"):
            assert "retry-on conn-failure\n" in file.content
            assert all("on-marked-down shutdown-sessions" in s for s in servers["action_servers"])
        else:
            assert "retry-on conn-failure empty-response\n" in file.content
            frontend, api = file.content.split("\nfrontend ")[1:3]
            assert "http-request disable-l7-retry unless channel\n" in frontend
            assert "http-request disable-l7-retry\n" in api
            # A lost host's connections are found dead (keepalive) and their messages sent on.
            assert "option srvtcpka" in backends[0] and "shutdown-sessions" not in backends[0]
            assert all("on-marked-down shutdown-sessions" in s for s in servers["socketio"])
        # The LB's own 503 asks to send again as long as the frontends' own 503 does.
        turns = (ROOT / "compose" / "rasa" / "syrcad_turns.py").read_text(encoding="utf-8")
        retry_after = re.search(r"^RETRY_AFTER_S = (\d+)$", turns, re.M)
        assert retry_after and f"hdr Retry-After {retry_after[1]} " in file.content
