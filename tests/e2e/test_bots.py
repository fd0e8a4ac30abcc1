"""Two bots behind one entry point (the bots layout: English, the default, and German).

Each is reached by its path, its APP_ID, the Host asked for and the language; each answers only
its own requests, and a request that names two bots, or none there is, gets a 404. One sender's
conversations with both stay apart. Training one bot and rolling its model out under load on
both leaves the other bot's frontends as they were, serving throughout.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from syrcad.apply import facts

from .. import runbook
from .conftest import BOTS, LB, E2ECluster, MongoTrackers, new_sender, syrcad
from .driver import Driver
from .sockets import SocketUser, Transport
from .test_runbook import run_block

pytestmark = [pytest.mark.e2e, pytest.mark.bots_layout]

# The runbook's blocks for a cluster with bots; two run inside the tests below, under load.
ON_BOTS = {b.section: b for b in runbook.blocks() if b.on_bots}
TRAIN = ON_BOTS.pop("Adding a bot or a language")
ROLLOUT = ON_BOTS.pop("Ship a model for one bot")
RUNBOOK = list(ON_BOTS.values())

GREETING = {"en": "Hello! I can book you a table.", "de": "Hallo! Ich reserviere Ihnen gern"}
GERMAN_TURNS = (
    ("tisch reservieren", "Welche Küche möchten Sie?"),
    ("griechisch", "Für wie viele Personen?"),
    ("7", "Gebucht: ein Tisch für 7 (griechisch Küche)."),
)


def post(
    cluster: E2ECluster,
    message: str,
    sender: str | None = None,
    path: str = "",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(
        f"{cluster.public}{path}/webhooks/rest/webhook",
        json={"sender": sender or new_sender(), "message": message, "metadata": metadata or {}},
        headers=headers,
        params=params,
        timeout=60,
    )


def texts(response: requests.Response) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text)
    return [m["text"] for m in response.json() if "text" in m]


def answered_by(response: requests.Response) -> str:
    """Which bot answered a greeting, by its language (and the replica, by its name)."""
    first = texts(response)[0]
    bot = next(bot for bot, greeting in GREETING.items() if first.startswith(greeting))
    assert response.headers["X-Syrcad-Replica"].startswith(f"frontend-{bot}-"), response.headers
    return bot


ROUTES: dict[str, tuple[dict[str, Any], str]] = {
    "path en": ({"path": "/bots/en"}, "en"),
    "path de": ({"path": "/bots/de"}, "de"),
    "X-App-Id": ({"headers": {"X-App-Id": "app-de"}}, "de"),
    "app_id query": ({"params": {"app_id": "app-de"}}, "de"),
    "Host": ({"headers": {"Host": "de.chat.test"}}, "de"),
    "Host of the default bot": ({"headers": {"Host": "en.chat.test:18080"}}, "en"),
    "metadata.locale": ({"metadata": {"locale": "de_AT"}}, "de"),
    "Accept-Language": ({"headers": {"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}}, "de"),
    "the body's locale before Accept-Language": (
        {"metadata": {"locale": "en-GB"}, "headers": {"Accept-Language": "de"}},
        "en",
    ),
    "an APP_ID before the language": (
        {"headers": {"X-App-Id": "app-en"}, "metadata": {"locale": "de"}},
        "en",
    ),
    "a language no bot speaks: the default": ({"headers": {"Accept-Language": "fr-FR"}}, "en"),
    "nothing: the default": ({}, "en"),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_each_route_reaches_its_bot(cluster: E2ECluster, route: str) -> None:
    how, bot = ROUTES[route]
    assert answered_by(post(cluster, "hi", **how)) == bot


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ({"path": "/bots/fr"}, "unknown_bot"),
        ({"path": "/bots/en", "headers": {"X-App-Id": "app-de"}}, "ambiguous_bot"),
        ({"headers": {"X-App-Id": "app-en", "Host": "de.chat.test"}}, "ambiguous_bot"),
        ({"params": {"app_id": "app-de"}, "headers": {"X-App-Id": "app-en"}}, "ambiguous_bot"),
    ],
)
def test_a_request_for_no_bot_or_two_is_a_404(
    cluster: E2ECluster, how: dict[str, Any], error: str
) -> None:
    response = post(cluster, "hi", **how)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == error


def test_one_sender_holds_two_conversations_apart(cluster: E2ECluster) -> None:
    """The same sender id books with both bots, turns interleaved: each bot's form goes on from
    its own tracker, held in its own collection."""
    sender = new_sender()
    said: dict[str, list[str]] = {"en": [], "de": []}
    served_by: set[str] = set()
    for bot, message, expected in [
        ("en", "book a table", "Which cuisine would you like?"),
        ("de", "hallo", GREETING["de"]),  # not inside the English form
        ("en", "italian", "For how many people?"),
        ("de", "tisch reservieren", "Welche Küche möchten Sie?"),
        ("en", "3", "Booked: a table for 3 (italian cuisine). Reference "),
        ("de", "thailändisch", "Für wie viele Personen?"),
        ("de", "2", "Gebucht: ein Tisch für 2 (thailändisch Küche). Referenz "),
    ]:
        response = post(cluster, message, sender, path=f"/bots/{bot}")
        assert texts(response)[0].startswith(expected)
        said[bot].append(message)
        served_by.update(m["custom"]["data"]["served_by"] for m in response.json() if "custom" in m)
    # The confirmations: German by its own action server, English by the shared ones.
    assert served_by >= {"action-de-1"} and served_by - {"action-de-1"} <= {"action-1", "action-2"}
    assert len(served_by) == 2, served_by
    mongo = cluster.mongo()
    for bot, messages in said.items():
        stored = MongoTrackers(mongo, f"conversations_{bot}").events(sender)
        assert [e["text"] for e in stored if e["event"] == "user"] == messages
        # Rasa's API on the internal side, by the bot's path: the same conversation.
        api = requests.get(
            f"{cluster.api}/bots/{bot}/conversations/{sender}/tracker",
            params={"token": cluster.secrets.rasa_token},
            timeout=30,
        )
        assert [e["text"] for e in api.json()["events"] if e["event"] == "user"] == messages
    assert MongoTrackers(mongo).events(sender) == []  # the single-bot collection is not used


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_socketio_by_the_bots_path(cluster: E2ECluster, transport: Transport) -> None:
    user = SocketUser(cluster.public, transport, path="bots/de/socket.io").connect()
    try:
        assert user.say("tisch reservieren") == ["Welche Küche möchten Sie?"]
        if transport == "polling":  # the LB's cookie binds it to a German replica
            assert user.replica.startswith("frontend-de-"), user.replica
    finally:
        user.close()
    stored = MongoTrackers(cluster.mongo(), "conversations_de").events(user.session_id)
    assert [e["text"] for e in stored if e["event"] == "user"] == ["tisch reservieren"]


@pytest.mark.parametrize("block", RUNBOOK, ids=[b.name for b in RUNBOOK])
def test_runbook_block(block: runbook.Block, cluster: E2ECluster, tmp_path: Path) -> None:
    run_block(block, cluster, tmp_path)


def test_a_bot_that_pulls_takes_a_new_model_without_a_restart(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    """The runbook's `train --bot de` and `up`, under German load: the model server serves the
    new model, and each German frontend pulls it and switches to it by itself (the same
    containers), without a failed request."""
    assert "train --bot de" in TRAIN.script
    before, running = models(cluster, "de"), containers(cluster, "de")
    german = Driver(f"{cluster.public}/bots/de", workers=2, turns=GERMAN_TURNS).start()
    try:
        run_block(TRAIN, cluster, tmp_path)
        trained = time.monotonic()
        pull_every_s = cluster.deployment.cluster.services.model_server.pull_every_s
        while time.monotonic() - trained < pull_every_s + 60:
            now = models(cluster, "de")
            if len(set(now.values())) == 1 and set(now.values()) != set(before.values()):
                break
            time.sleep(1)
        took = time.monotonic() - trained
    finally:
        german.stop()
    print(f"\nthe German frontends ran the new model {took:.0f} s after the training ended")
    assert len(set(now.values())) == 1 and set(now.values()) != set(before.values()), now
    assert took <= pull_every_s + 60
    assert containers(cluster, "de") == running  # taken up by the running frontends
    assert german.failures == [], german.failures[:3]
    trackers = MongoTrackers(cluster.mongo(), "conversations_de")
    assert german.lost_or_reordered(trackers) == []


def test_scale_one_bots_frontends(cluster: E2ECluster) -> None:
    hosts = str(cluster.hosts_file)
    refused = syrcad("scale", "frontend=3", "--hosts", hosts, check=False)
    assert refused.returncode == 2 and "give --bot" in refused.stderr + refused.stdout
    english = containers(cluster, "en")
    syrcad("scale", "frontend=3", "action=2", "--bot", "de", "--hosts", hosts)
    try:
        rows = status(cluster, "de")
        assert {r["container"]: r["lb"] for r in rows if r["bot"] == "de"} == {
            **{f"frontend-de-{n}": "UP" for n in (1, 2, 3)},
            **{f"action-de-{n}": "UP" for n in (1, 2)},
        }
        assert {r["bot"] for r in rows if r["service"] == "frontend"} == {"de"}
        assert answered_by(post(cluster, "hi", path="/bots/de")) == "de"
    finally:
        syrcad("scale", "frontend=2", "action=1", "--bot", "de", "--hosts", hosts)
    assert containers(cluster, "en") == english  # the English frontends were left alone
    plan = syrcad("plan", "--hosts", hosts).stdout
    assert "frontend-de-3" not in plan and "action-de-2" not in plan


def test_train_one_bot_and_roll_it_out_under_load(cluster: E2ECluster, tmp_path: Path) -> None:
    """The runbook's `train --bot de --rollout` while both bots are under load: no request
    fails, the German frontends end on the new model, the English ones are the same containers
    on the same model, having served all along."""
    assert "train --bot de --rollout" in ROLLOUT.script
    english_models, german_models = models(cluster, "en"), models(cluster, "de")
    english_containers = containers(cluster, "en")
    english = Driver(f"{cluster.public}/bots/en", workers=2).start()
    german = Driver(f"{cluster.public}/bots/de", workers=2, turns=GERMAN_TURNS).start()
    started = time.monotonic()
    try:
        time.sleep(5)
        run_block(ROLLOUT, cluster, tmp_path)
        took = time.monotonic() - started
        time.sleep(5)
    finally:
        english.stop()
        german.stop()
    print(f"\ntrain --bot de --rollout under load: {took:.0f} s")
    for driver, bot in ((english, "en"), (german, "de")):
        sent = sum(len(m) for m in driver.sent.values())
        print(f"{bot}: {sent} messages, {len(driver.failures)} failed")
        assert driver.failures == [] and sent > 30, driver.failures[:3]
        trackers = MongoTrackers(cluster.mongo(), f"conversations_{bot}")
        assert driver.lost_or_reordered(trackers) == []
    new = models(cluster, "de")
    assert len(set(new.values())) == 1 and set(new.values()) != set(german_models.values())
    assert models(cluster, "en") == english_models
    assert containers(cluster, "en") == english_containers


def test_locust_mixes_both_bots_by_language(cluster: E2ECluster, tmp_path: Path) -> None:
    done = syrcad(
        "loadtest",
        "--hosts",
        str(cluster.hosts_file),
        "--headless",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "30s",
        "--out",
        str(tmp_path),
    )
    with (tmp_path / "locust_stats.csv").open(encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows.pop("Aggregated")
    print(
        f"\nLocust, both bots by locale: {total['Request Count']} requests, "
        f"{total['Failure Count']} failed"
    )
    assert int(total["Request Count"]) > 20 and int(total["Failure Count"]) == 0, done.stdout
    assert {name.split(":")[0] for name in rows} == set(BOTS)  # "en: greet", "de: greet", …


def models(cluster: E2ECluster, bot: str) -> dict[str, str]:
    """Frontend → the model id it runs, for one bot's frontends."""
    return {
        c.name: facts.model_id(
            cluster.address_of(c.name), c.port("http").host_port, cluster.secrets.rasa_token
        )
        for c in cluster.deployment.placement.of("frontend", bot)
    }


def containers(cluster: E2ECluster, bot: str) -> dict[str, tuple[str, str]]:
    """One bot's frontend containers: name → (id, when it started)."""
    return {
        c.name: (c.id, str(c.state.started_at))
        for c in cluster.containers("frontend")
        if c.config.labels.get("io.syrcad.bot") == bot
    }


def status(cluster: E2ECluster, bot: str) -> list[dict[str, str]]:
    done = syrcad("status", "--bot", bot, "--json", "--hosts", str(cluster.hosts_file))
    return list(json.loads(done.stdout)["replicas"])


def test_the_lb_lists_each_bots_frontends_in_its_own_backends(cluster: E2ECluster) -> None:
    states = facts.lb_servers(
        cluster.address_of("lb-1"), LB["stats_port"], cluster.secrets.stats_password
    )
    for bot in BOTS:
        for backend in (f"frontends_{bot}", f"socketio_{bot}"):
            servers = {s: state for (b, s), state in states.items() if b == backend}
            assert servers == {f"frontend-{bot}-1": "UP", f"frontend-{bot}-2": "UP"}, backend


def test_retiring_a_bot(cluster: E2ECluster, tmp_path: Path) -> None:
    """Last: the runbook's retirement of bot de, with its edit of hosts.yml. Its conversations
    are backed up first; then its frontends and routes are gone, and English goes on."""
    hosts = str(cluster.hosts_file)
    sender = new_sender()
    assert texts(post(cluster, "tisch reservieren", sender, path="/bots/de"))
    backup = tmp_path / "de.jsonl.gz"
    syrcad("backup", "--bot", "de", "--out", str(backup), "--hosts", hosts)
    with gzip.open(backup, "rt", encoding="utf-8") as file:
        backed_up = {json.loads(line).get("sender_id") for line in file}
    assert sender in backed_up
    document = yaml.safe_load(cluster.hosts_file.read_text(encoding="utf-8"))
    del document["bots"]["de"]
    cluster.hosts_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    syrcad("up", "--hosts", hosts)
    assert [c.name for c in cluster.containers("frontend") if "-de-" in c.name] == []
    gone = post(cluster, "hallo", path="/bots/de")
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_bot"
    assert answered_by(post(cluster, "hi", headers={"Accept-Language": "de"})) == "en"
    assert MongoTrackers(cluster.mongo(), "conversations_de").events(sender) != []
