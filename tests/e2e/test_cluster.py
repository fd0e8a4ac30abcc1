"""The real-cluster acceptance tests (issue: a real cluster on one machine)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from syrcad.apply import haproxy
from syrcad.apply.deployment import prepare

from .conftest import LB, ROOT, STORES, E2ECluster, new_sender, syrcad
from .driver import user_texts

pytestmark = pytest.mark.e2e

BOOKING = [
    ("book a table", "Which cuisine would you like?"),
    ("italian", "For how many people?"),
]


def book(cluster: E2ECluster, sender: str, people: str = "4") -> list[dict[str, object]]:
    for message, reply in BOOKING:
        assert cluster.texts(sender, message) == [reply]
    return list(cluster.say(sender, people).json())


@pytest.mark.local_layout
def test_rest_conversation_through_the_public_lb(cluster: E2ECluster) -> None:
    sender = new_sender()
    assert cluster.texts(sender, "hello") == [
        "Hello! I can book you a table. Just say 'book a table'."
    ]
    replies = book(cluster, sender, people="3")
    texts = [m["text"] for m in replies if "text" in m]
    assert texts[0].startswith(
        "Booked: a table for 3 (italian cuisine). Reference "
    )  # the custom action
    assert texts[1] == "Anything else I can do for you?"


def test_continuity_across_frontends(cluster: E2ECluster) -> None:
    """One conversation, its turns served by two frontends, keeps its slots; the tracker store
    has every event."""
    dep = prepare(cluster.hosts_file)
    host = dep.hosts[cluster.host_of("lb-1")]
    sender = new_sender()
    served = []
    first = cluster.say(sender, "book a table")
    served.append(first.headers["X-Syrcad-Replica"])
    # The sender hash keeps a conversation on one replica: drain that one to force a switch.
    haproxy.set_state(host, "lb-1", "frontends", served[0], "drain")
    try:
        second = cluster.say(sender, "thai")
        served.append(second.headers["X-Syrcad-Replica"])
        assert [m["text"] for m in second.json()] == ["For how many people?"]
    finally:
        haproxy.set_state(host, "lb-1", "frontends", served[0], "ready")
    haproxy.set_state(host, "lb-1", "frontends", served[1], "drain")
    try:
        third = cluster.say(sender, "5")
        served.append(third.headers["X-Syrcad-Replica"])
    finally:
        haproxy.set_state(host, "lb-1", "frontends", served[1], "ready")
    assert len(set(served)) == 2, served
    assert next(m["text"] for m in third.json() if "text" in m).startswith(
        "Booked: a table for 5 (thai cuisine)."
    )

    events = cluster.trackers().events(sender)
    assert user_texts(cluster.trackers(), sender) == ["book a table", "thai", "5"]
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    slots = [(e["name"], e["value"]) for e in events if e["event"] == "slot"]
    assert ("cuisine", "thai") in slots and ("people", "5") in slots


@pytest.mark.local_layout
def test_action_lb_spreads_over_action_servers(cluster: E2ECluster) -> None:
    servers = set()
    for _ in range(6):
        replies = book(cluster, new_sender())
        servers |= {m["custom"]["data"]["served_by"] for m in replies if "custom" in m}
    assert servers == {"action-1", "action-2"}


@pytest.mark.local_layout
def test_public_lb_refuses_rasa_api_internal_side_needs_token(cluster: E2ECluster) -> None:
    for path in ("/status", "/model", "/conversations/x/tracker", "/version", "/domain"):
        assert requests.get(cluster.public + path, timeout=10).status_code == 403, path
    assert requests.put(cluster.public + "/model", timeout=10).status_code == 403
    assert requests.get(cluster.public + "/", timeout=10).text.startswith("Hello from Rasa")
    assert requests.get(cluster.public + "/health", timeout=10).status_code == 200
    socketio = requests.get(
        cluster.public + "/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10
    )
    assert socketio.status_code == 200 and "sid" in socketio.text
    assert "SYRCAD_SIO=" in socketio.headers.get("Set-Cookie", "")
    assert requests.get(cluster.api + "/status", timeout=10).status_code == 401
    status = requests.get(
        cluster.api + "/status", params={"token": cluster.secrets.rasa_token}, timeout=10
    )
    assert status.status_code == 200 and status.json()["model_id"]


@pytest.mark.local_layout
def test_tls_on_the_public_lb(cluster: E2ECluster) -> None:
    url = cluster.tls
    assert requests.get(url + "/health", verify=False, timeout=10).status_code == 200
    assert cluster.texts(new_sender(), "hello") and cluster.say(new_sender(), "hi", url=url).json()
    assert requests.get(url + "/status", verify=False, timeout=10).status_code == 403


def test_frontends_use_the_tracker_and_lock_stores(cluster: E2ECluster) -> None:
    """Checked in the stores themselves: the tracker in Mongo or PostgreSQL, lock traffic in
    Redis."""
    redis = cluster.redis()
    seen: list[str] = []
    sender = new_sender()

    def watch() -> None:
        with redis.monitor() as monitor:
            deadline = time.monotonic() + 20
            for command in monitor.listen():
                seen.append(str(command["command"]))
                if sender in seen[-1] or time.monotonic() > deadline:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)
    cluster.texts(sender, "hello")
    watcher.join(timeout=25)
    assert any(sender in command and "lock" in command for command in seen), seen[-5:]
    assert user_texts(cluster.trackers(), sender) == ["hello"]


def test_status_shows_replicas_up_with_one_model(cluster: E2ECluster) -> None:
    rows = json.loads(syrcad("status", "--json", "--hosts", str(cluster.hosts_file)).stdout)[
        "replicas"
    ]
    frontends = [r for r in rows if r["service"] == "frontend"]
    # With several LB hosts, each one's view: "lb-1:UP/lb-2:UP".
    views = [{view.split(":")[-1] for view in r["lb"].split("/")} for r in frontends]
    assert views == [{"UP"}, {"UP"}], frontends
    assert len({r["model"] for r in frontends}) == 1 and frontends[0]["model"] != "-"
    assert {r["state"] for r in rows} == {"running"}


def test_up_again_changes_nothing(cluster: E2ECluster) -> None:
    done = syrcad("up", "--hosts", str(cluster.hosts_file))
    assert "Nothing to change" in done.stdout


@pytest.mark.local_layout
def test_logs_of_a_service(cluster: E2ECluster) -> None:
    done = syrcad("logs", "action", "--tail", "5", "--hosts", str(cluster.hosts_file))
    assert "action-1 |" in done.stdout and "action-2 |" in done.stdout


def test_missing_image_names_host_and_image(cluster: E2ECluster, tmp_path: Path) -> None:
    text = cluster.hosts_file.read_text(encoding="utf-8").replace(
        "syrcad/redis:7.0", "syrcad/redis:no-such-tag"
    )
    broken = tmp_path / "hosts.yml"
    broken.write_text(text.replace("name: e2e", "name: e2e-broken"), encoding="utf-8")
    done = syrcad("up", "--hosts", str(broken), check=False)
    assert done.returncode == 1
    store_host = cluster.host_of("redis-1")
    assert (
        f"{store_host}: image syrcad/redis:no-such-tag is neither on its engine nor on this "
        "machine's" in done.stderr
    )


@pytest.mark.postgres_and_hosts  # the three hosts keep Mongo's data too (a replica set)
def test_down_then_up_keeps_conversations(cluster: E2ECluster) -> None:
    sender = new_sender()
    book(cluster, sender, people="2")
    before = [e["event"] for e in cluster.tracker(sender)["events"]]
    syrcad("down", "--hosts", str(cluster.hosts_file))
    with pytest.raises(requests.ConnectionError):
        requests.get(cluster.public + "/", timeout=5)
    syrcad("up", "--hosts", str(cluster.hosts_file))
    after = cluster.tracker(sender)["events"]
    assert [e["event"] for e in after][: len(before)] == before
    assert [e["text"] for e in after if e["event"] == "user"] == ["book a table", "italian", "2"]


def test_up_checks_what_its_steps_need_before_touching_anything(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    """A project without a trained model or actions, and a port another cluster holds: `up`
    names every problem, exits 2 and starts nothing (it used to wait 7 minutes for frontends
    that could never load a model)."""
    project = tmp_path / "bot"
    shutil.copytree(ROOT / "bot", project, ignore=shutil.ignore_patterns("models"))
    (project / "models").mkdir()
    (tmp_path / "actions").mkdir()
    document = yaml.safe_load(cluster.hosts_file.read_text(encoding="utf-8"))
    document["name"] = "e2e-preflight"
    document["deploy_dir"] = str(tmp_path / "deploy")
    document["project"] = {"path": str(project), "actions": str(tmp_path / "actions")}
    taken = STORES["lock"]["port"]  # the e2e cluster's Redis holds it on the store host
    document["services"]["frontend"]["base_port"] += 100
    document["services"]["action"]["base_port"] += 100
    document["services"]["lb"] = {key: port + 100 for key, port in LB.items()}
    hosts = tmp_path / "hosts.yml"
    # Hosts in the e2e cluster's order, so the same replicas land on the same hosts.
    hosts.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    started = time.monotonic()
    done = syrcad("up", "--hosts", str(hosts), check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    errors = " ".join(done.stderr.split())
    assert f"no trained model in {project}/models" in errors and "`syrcad train`" in errors
    assert f"no actions package (*.py) in {tmp_path / 'actions'}" in errors
    store = cluster.host_of("redis-1")
    assert f"{store}: port {taken} (redis-1 redis) is already taken on the host" in errors
    started_any = [
        c.name
        for docker in cluster.engines()
        for c in docker.container.list(
            all=True, filters=[("label", "io.syrcad.cluster=e2e-preflight")]
        )
    ]
    assert started_any == []
