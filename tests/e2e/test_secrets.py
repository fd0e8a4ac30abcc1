"""`syrcad secrets rotate` under load: no failed request, old secrets refused, stores untouched."""

from __future__ import annotations

import pytest
import redis
import requests

from syrcad.config.secrets import read, secrets_path

from .conftest import STORES, E2ECluster, syrcad
from .driver import Driver

# Under load with PostgreSQL (its password changed in place) and on the three hosts (Mongo's
# replica set, Redis with Sentinels): the runbook's rotation block is not run again locally.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres_and_hosts]


def store_ids(cluster: E2ECluster) -> dict[str, str]:
    return {
        c.name: c.id
        for c in cluster.containers()
        if c.name.startswith((f"e2e-{cluster.layout.tracker}", "e2e-redis"))
    }


def test_rotate_every_secret_under_load(cluster: E2ECluster) -> None:
    old = cluster.secrets
    stores_before = store_ids(cluster)
    driver = Driver(cluster.public, workers=3).start()
    try:
        done = syrcad("secrets", "rotate", "--hosts", str(cluster.hosts_file))
    finally:
        driver.stop()
    assert (
        "rotated: rasa_token, jwt_secret, tracker_password, redis_password, stats_password"
        in done.stdout
    )
    new = read(secrets_path(cluster.hosts_file))
    assert new is not None
    cluster.secrets = new
    assert driver.failures == [], driver.failures[:5]
    assert driver.lost_or_reordered(cluster.trackers()) == []
    assert store_ids(cluster) == stores_before  # the stores were not recreated

    assert (
        requests.get(
            f"{cluster.api}/status", params={"token": old.rasa_token}, timeout=10
        ).status_code
        == 401
    )
    assert (
        requests.get(
            f"{cluster.api}/status", params={"token": new.rasa_token}, timeout=10
        ).status_code
        == 200
    )
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(
            host=cluster.address_of("redis-1"),
            port=STORES["lock"]["port"],
            password=old.redis_password,
        ).ping()
    assert cluster.redis().ping()
    assert cluster.tracker_accepts(new.tracker_password)
    assert not cluster.tracker_accepts(old.tracker_password)
    for value in (*old.as_dict().values(), *new.as_dict().values()):
        assert value not in done.stdout + done.stderr
