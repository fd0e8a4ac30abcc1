"""Redis replicated with Sentinels: what each host runs and how the frontends find the primary."""

from __future__ import annotations

from pathlib import Path

import yaml

from syrcad.config import load
from syrcad.config.secrets import Secrets
from syrcad.plan import place
from syrcad.render import render

from .conftest import EXAMPLES


def two_redis_hosts(tmp_path: Path) -> Path:
    text = (EXAMPLES / "hosts.yml").read_text(encoding="utf-8")
    text = text.replace("roles: [frontend, action, lb]", "roles: [frontend, action, lb, redis]")
    path = tmp_path / "hosts.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_first_redis_host_is_the_primary_and_a_sentinel_runs_beside_each(
    tmp_path: Path, fixed_secrets: Secrets
) -> None:
    cluster = load(two_redis_hosts(tmp_path)).cluster
    placement = place(cluster)
    assert [(c.name, c.host) for c in placement.of("redis")] == [
        ("redis-1", "app1"),
        ("redis-2", "store1"),
    ]
    assert [(c.name, c.host) for c in placement.of("sentinel")] == [
        ("sentinel-1", "app1"),
        ("sentinel-2", "store1"),
    ]
    files = {(f.host, str(f.path)): f.content for f in render(cluster, placement, fixed_secrets)}

    primary = files[("app1", "redis/redis.conf")]
    replica = files[("store1", "redis/redis.conf")]
    assert "replicaof" not in primary
    assert "replicaof 10.20.0.11 6379" in replica
    assert "replica-announce-ip 10.20.0.13\nreplica-announce-port 6379" in replica
    assert "masterauth golden-redis-pass-0000" in replica

    for host, address in (("app1", "10.20.0.11"), ("store1", "10.20.0.13")):
        sentinel = files[(host, "sentinel/sentinel.conf")]
        # Two Sentinels: both must agree the primary is lost (a majority).
        assert "sentinel monitor syrcad 10.20.0.11 6379 2" in sentinel
        assert f"sentinel announce-ip {address}\nsentinel announce-port 26379" in sentinel
        assert "sentinel auth-pass syrcad golden-redis-pass-0000" in sentinel
        compose = yaml.safe_load(files[(host, "compose.yml")])
        assert any(name.startswith("sentinel-") for name in compose["services"])

    lock = yaml.safe_load(files[("app2", "rasa/endpoints.yml")])["lock_store"]
    assert lock["sentinels"] == ["10.20.0.11:26379", "10.20.0.13:26379"]
    assert (lock["service_name"], lock["replicas"]) == ("syrcad", 1)
    assert "url" not in lock
    one_redis = load(EXAMPLES / "hosts.yml").cluster
    assert not one_redis.redis_sentinels() and not place(one_redis).of("sentinel")
