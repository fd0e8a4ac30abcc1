"""Rendered files: pinned by golden files, accepted by the real haproxy and docker compose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from syrcad.config import load
from syrcad.config.secrets import Secrets
from syrcad.plan import place
from syrcad.render import RenderedFile, render, write_tree

from .conftest import EXAMPLES, ROOT

GOLDEN = ROOT / "tests" / "golden"
EXAMPLE_FILES = ["hosts.yml", "local.yml"]


def templated(files: tuple[RenderedFile, ...]) -> list[RenderedFile]:
    """Files made by templates (the lock store module is copied as it is, checked below)."""
    return [f for f in files if f.path.suffix != ".py"]


def rendered(example: str, secrets: Secrets) -> tuple[RenderedFile, ...]:
    cluster = load(EXAMPLES / example).cluster
    return render(cluster, place(cluster), secrets)


def portable(file: RenderedFile) -> str:
    # local.yml's paths are relative to the checkout; pin them independent of where it lives.
    return file.content.replace(str(ROOT), "<checkout>")


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_golden_files(example: str, fixed_secrets: Secrets, request: pytest.FixtureRequest) -> None:
    folder = GOLDEN / Path(example).stem
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
        done = subprocess.run(
            [tool("haproxy"), "-c", "-f", str(config)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{config}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_compose_accepts_every_file(example: str, fixed_secrets: Secrets, tmp_path: Path) -> None:
    write_tree(tmp_path, rendered(example, fixed_secrets))
    composes = sorted(tmp_path.rglob("compose.yml"))
    assert composes
    for compose in composes:
        done = subprocess.run(
            [tool("docker"), "compose", "-f", str(compose), "config", "-q"],
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
            "rasa/syrcad_lock_store.py",
            "lb/haproxy.cfg",
            "action-lb/haproxy.cfg",
        ],
        "app2": [
            "compose.yml",
            "rasa/endpoints.yml",
            "rasa/credentials.yml",
            "rasa/syrcad_lock_store.py",
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


def test_lock_store_module_ships_as_it_is(fixed_secrets: Secrets) -> None:
    source = (ROOT / "compose" / "rasa" / "syrcad_lock_store.py").read_text(encoding="utf-8")
    modules = [
        f for f in rendered("hosts.yml", fixed_secrets) if f.path.name == "syrcad_lock_store.py"
    ]
    assert [f.host for f in modules] == ["app1", "app2"]
    assert all(f.content == source for f in modules)
