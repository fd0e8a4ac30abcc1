"""Every kind of bad hosts.yml, with the exact message a user sees (STYLE.md rule 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syrcad.config import load
from syrcad.errors import ConfigError
from syrcad.plan import place

BASE = """\
hosts:
  app1:
    address: 10.0.0.1
    roles: [frontend, action, lb]
  store1:
    address: 10.0.0.2
    roles: [mongo, redis]
project:
  path: /srv/bot
"""

BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([prev] * 10)}]\n"
        for name, prev in zip("abcde", ["x", "*a", "*b", "*c", "*d"], strict=True)
    )
    + "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
)


def with_host_keys(extra: str) -> str:
    return BASE.replace("    address: 10.0.0.1\n", "    address: 10.0.0.1\n" + extra)


# name: (document, message). {file} stands for the path of the document.
CASES: dict[str, tuple[str, str]] = {
    "unknown top-level key": (
        BASE + "colour: blue\n",
        "{file}:10: unknown key 'colour' (allowed: name, engine, deploy_dir, hosts, project, images, services, stores, monitoring, bots)",
    ),
    "unknown key in a host": (
        BASE.replace("    roles: [mongo, redis]", "    roles: [mongo, redis]\n    rolez: [lb]"),
        "{file}:8: hosts.store1: unknown key 'rolez' (allowed: address, ssh, docker_host, roles, labels)",
    ),
    "wrong type": (
        BASE + "services:\n  frontend:\n    replicas: many\n",
        "{file}:12: services.frontend.replicas: expected a whole number, got 'many'",
    ),
    "unknown role": (
        BASE.replace("[frontend, action, lb]", "[fronted, action, lb]"),
        "{file}:4: hosts.app1.roles[0]: 'fronted' is not a role (frontend, action, lb, mongo, postgres, redis, train)",
    ),
    "replicas below one": (
        BASE + "services:\n  frontend:\n    replicas: 0\n",
        "{file}:12: services.frontend.replicas: must be at least 1, got 0",
    ),
    "a role no host carries": (
        BASE.replace("[frontend, action, lb]", "[frontend, action]"),
        "{file}:1: hosts: no host has the role 'lb', needed for the load balancers",
    ),
    "two hosts with one address": (
        BASE.replace("10.0.0.2", "10.0.0.1"),
        "{file}:6: hosts.store1.address: 10.0.0.1 is already the address of host 'app1'",
    ),
    "port collision between services": (
        BASE + "services:\n  frontend:\n    replicas: 60\n",
        "{file}:11: services.frontend.base_port: port 5055 on host 'app1' is taken twice: "
        "action-1 (http) and frontend-51 (http)",
    ),
    "port collision between stores": (
        BASE + "stores:\n  lock:\n    port: 27017\n",
        "{file}:12: stores.lock.port: port 27017 on host 'store1' is taken twice: mongo-1 (mongo) and redis-1 (redis)",
    ),
    "broken YAML": (
        BASE + "services:\n  frontend: [1, 2\n",
        "{file}:12: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    "image without a tag": (
        BASE + "images:\n  rasa: rasa/rasa\n",
        "{file}:11: images.rasa: 'rasa/rasa' is not valid: expected an image with a tag or a digest, "
        "like rasa/rasa:3.6.21-full",
    ),
    "more replicas than ports allow": (
        BASE + "services:\n  frontend:\n    replicas: 20\n    base_port: 65530\n",
        "{file}:12: services.frontend.replicas: 20 replicas need host ports up to 65549 from base_port 65530 "
        "on 1 host(s); at most 6 fit",
    ),
    "missing section": (
        BASE.split("project:")[0],
        "{file}:1: project: required key is missing",
    ),
    "no hosts": (
        "hosts: {}\nproject:\n  path: /srv/bot\n",
        "{file}:1: hosts: must not be empty",
    ),
    "address is not an IP": (
        BASE.replace("10.0.0.2", "store-one"),
        "{file}:6: hosts.store1.address: expected an IP address, got 'store-one'",
    ),
    "port out of range": (
        BASE + "services:\n  lb:\n    public_port: 70000\n",
        "{file}:12: services.lb.public_port: must be at most 65535, got 70000",
    ),
    "trusted source is not a network": (
        BASE + "services:\n  lb:\n    trusted_sources: [10.0.0.1/24]\n",
        "{file}:12: services.lb.trusted_sources[0]: expected a network like 10.0.0.0/24 "
        "(no host bits set), got '10.0.0.1/24'",
    ),
    "role listed twice": (
        BASE.replace("[mongo, redis]", "[mongo, redis, mongo]"),
        "{file}:7: hosts.store1.roles: role listed twice: mongo",
    ),
    "host name with forbidden characters": (
        BASE.replace("  store1:", "  Store_1:"),
        "{file}:5: hosts.Store_1: 'Store_1' is not valid: expected a name of lower-case letters, digits and '-', "
        "starting with a letter, at most 31 characters",
    ),
    "identity file missing": (
        with_host_keys("    ssh:\n      identity_file: no-such-key\n"),
        "{file}:5: hosts.app1.ssh.identity_file: file not found: {folder}/no-such-key",
    ),
    "ssh config file missing": (
        with_host_keys("    ssh:\n      config_file: /no/ssh_config\n"),
        "{file}:5: hosts.app1.ssh.config_file: file not found: /no/ssh_config",
    ),
    "docker host with an unknown scheme": (
        with_host_keys("    docker_host: http://10.0.0.1:2375\n"),
        "{file}:4: hosts.app1.docker_host: 'http://10.0.0.1:2375' is not valid: expected ssh://user@host[:port], "
        "unix:///path/to/docker.sock or tcp://host:port",
    ),
    "unknown tracker type": (
        BASE + "stores:\n  tracker:\n    type: cassandra\n",
        "{file}:11: stores.tracker: 'cassandra' is not a known type (expected 'mongo', 'postgres')",
    ),
    "mongo role with a postgres tracker": (
        BASE + "stores:\n  tracker:\n    type: postgres\n    host: db.internal\n",
        "{file}:7: hosts.store1.roles: role 'mongo' is only used with stores.tracker.type mongo "
        "(the tracker is postgres)",
    ),
    "postgres tracker without its host": (
        BASE.replace("[mongo, redis]", "[redis]") + "stores:\n  tracker:\n    type: postgres\n",
        "{file}:1: hosts: no host has the role 'postgres', needed for the PostgreSQL tracker store",
    ),
    "postgres role with an outside postgres": (
        BASE.replace("[mongo, redis]", "[postgres, redis]")
        + "stores:\n  tracker:\n    type: postgres\n    host: db.internal\n",
        "{file}:7: hosts.store1.roles: role 'postgres' is not used with stores.tracker.host set "
        "(db.internal runs it)",
    ),
    "two postgres hosts": (
        BASE.replace("[mongo, redis]", "[postgres, redis]").replace(
            "[frontend, action, lb]", "[frontend, action, lb, postgres]"
        )
        + "stores:\n  tracker:\n    type: postgres\n",
        "{file}:1: hosts: only one host may have the role 'postgres' (syrcad runs one PostgreSQL "
        "server)",
    ),
    "virtual address with one LB host": (
        BASE + "services:\n  lb:\n    virtual_address: 10.0.0.10\n",
        "{file}:12: services.lb.virtual_address: a virtual address is shared by two or more hosts "
        "with the role 'lb'; there is one",
    ),
    "virtual address of a host": (
        BASE.replace("[mongo, redis]", "[mongo, redis, lb]")
        + "services:\n  lb:\n    virtual_address: 10.0.0.2\n",
        "{file}:12: services.lb.virtual_address: 10.0.0.2 is a host's own address; the virtual "
        "address must be a free one",
    ),
    "replicated lock store with the stock lock store": (
        BASE.replace("[frontend, action, lb]", "[frontend, action, lb, redis]")
        + "stores:\n  lock:\n    atomic: false\n",
        "{file}:12: stores.lock.atomic: several hosts have the role 'redis': Rasa's stock lock "
        "store cannot follow a failover of the primary (rasa issue 3924); leave atomic true",
    ),
    "several mongo hosts without a replica set": (
        BASE.replace("[frontend, action, lb]", "[frontend, action, lb, mongo]"),
        "{file}:1: stores.tracker.replica_set: several hosts have the role 'mongo': name their replica set here",
    ),
    "path traversal": (
        BASE.replace("/srv/bot", "/srv/../etc"),
        "{file}:9: project.path: '/srv/../etc' is not valid: expected an absolute path without '..', "
        "of letters, digits and _ . / @ + -",
    ),
    "top level is a list": (
        "- hosts\n- project\n",
        "{file}:1: expected a mapping of keys (hosts, project, …)",
    ),
    "NFS with actions outside the export": (
        BASE + "  actions: /opt/actions\n  nfs:\n    server: 10.0.0.9\n    export: /exports/bot\n",
        "{file}:10: project.actions: with project.nfs the actions must live inside project.path "
        "(they are mounted from the same export)",
    ),
    "a replica's host port under Swarm": (
        "engine: swarm\n" + BASE + "services:\n  frontend:\n    base_port: 6000\n",
        "{file}:13: services.frontend.base_port: with engine: swarm the LBs reach the replicas "
        "over the swarm's network; replicas publish no host port",
    ),
    "Redis with Sentinels under Swarm": (
        "engine: swarm\n" + BASE.replace("[frontend, action, lb]", "[frontend, action, lb, redis]"),
        "{file}:2: hosts: several hosts have the role 'redis': Redis with Sentinels runs with "
        "engine: compose only, for now",
    ),
    "Prometheus on a host the file lacks": (
        BASE + "monitoring:\n  prometheus: true\n  host: app9\n",
        "{file}:12: monitoring.host: 'app9' is not a host of this file (app1, store1)",
    ),
    "YAML alias bomb": (
        BOMB,
        "{file}: document expands to too many nodes (YAML alias bomb?)",
    ),
    "memory size format": (
        BASE + "services:\n  frontend:\n    resources:\n      memory: 3 GB\n",
        "{file}:13: services.frontend.resources.memory: '3 GB' is not valid: expected a size like 512m or 2g",
    ),
    "shell metacharacters in a label": (
        with_host_keys("    labels:\n      rack: a;rm -rf /\n"),
        "{file}:5: hosts.app1.labels.rack: 'a;rm -rf /' is not valid: expected a label value of letters, "
        "digits and _ . : / - (at most 128)",
    ),
    "two default bots": (
        BASE + "bots:\n  en:\n    default: true\n  de:\n    default: true\n",
        "{file}:14: bots.de.default: bot 'en' is already the default bot; one bot at most takes "
        "the requests that name none",
    ),
    "one APP_ID for two bots": (
        BASE
        + "bots:\n  en:\n    routes: {app_ids: [a1]}\n  de:\n    routes: {app_ids: [b2, a1]}\n",
        "{file}:14: bots.de.routes.app_ids[1]: APP_ID 'a1' already routes to bot 'en'",
    ),
    "one language for two bots": (
        BASE + "bots:\n  de:\n    routes: {locales: [de]}\n  at:\n    routes: {locales: [de_AT]}\n",
        "{file}:14: bots.at.routes.locales[0]: language 'de_AT' already routes to bot 'de'",
    ),
    "a bot name that reaches backend names": (
        BASE + "bots:\n  de-AT: {}\n",
        "{file}:11: bots.de-AT: 'de-AT' is not valid: expected a bot name of lower-case letters "
        "and digits, like de",
    ),
    "a bot's own host ports": (
        BASE + "bots:\n  de:\n    frontend:\n      base_port: 6005\n",
        "{file}:13: bots.de.frontend: unknown key 'base_port' (allowed: replicas, "
        "sanic_workers, model, maxconn, balance, resources)",
    ),
    "a bot's own actions on an NFS project": (
        BASE.replace(
            "  path: /srv/bot\n", "  path: /srv/bot\n  nfs: {server: 10.0.0.9, export: /bot}\n"
        )
        + "bots:\n  de:\n    actions: {path: /srv/bot/de-actions}\n",
        "{file}:13: bots.de.actions: with project.nfs the action servers run project.actions (the one "
        "export mounted); a bot's own actions need engine: compose without nfs, for now",
    ),
    "a bot on hosts without its role": (
        BASE + "bots:\n  de:\n    hosts: [store1]\n",
        "{file}:12: bots.de.hosts: none of these hosts has the role 'frontend', which bot de's "
        "frontends need",
    ),
    "a bot on a host the file lacks": (
        BASE + "bots:\n  de:\n    hosts: [app1, app9]\n",
        "{file}:12: bots.de.hosts[1]: 'app9' is not a host of this file (app1, store1)",
    ),
    "bots under Swarm": (
        "engine: swarm\n" + BASE + "bots:\n  de: {}\n",
        "{file}:11: bots: several bots run with engine: compose only, for now",
    ),
}


def validate(path: Path) -> None:
    loaded = load(path)
    with loaded.source.locating():
        place(loaded.cluster)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_document_message(name: str, tmp_path: Path) -> None:
    document, expected = CASES[name]
    path = tmp_path / "hosts.yml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        validate(path)
    assert str(caught.value) == expected.format(file=path, folder=tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "nope.yml")
    assert str(caught.value) == f"{tmp_path / 'nope.yml'}: file not found"


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(
        BASE.replace("10.0.0.2", "x") + "services:\n  frontend:\n    replicas: 0\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        validate(path)
    assert [issue.path for issue in caught.value.issues] == [
        "hosts.store1.address",
        "services.frontend.replicas",
    ]


@pytest.mark.parametrize("command", ["validate", "plan", "up"])
def test_cli_exit_code_2_no_traceback_nothing_written(command: str, tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(CASES["unknown role"][0], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "syrcad.cli", command, "--hosts", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "hosts.app1.roles[0]: 'fronted' is not a role" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts.yml"]  # no secrets, no .syrcad


def test_render_writes_nothing_when_invalid(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(CASES["two hosts with one address"][0], encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "syrcad.cli",
            "render",
            "--hosts",
            str(path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "hosts.secrets.yml").exists()
