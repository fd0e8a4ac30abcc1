"""Shared by the benchmarks: a throw-away bench cluster on this machine's engine, and a
closed-loop load generator (Locust as a library) that returns throughput and percentiles.

The load generator shares the cores with the cluster: figures are ratios measured in one run.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import yaml
from locust import FastHttpUser, constant, task
from locust.env import Environment
from locust.stats import StatsEntry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PUBLIC_PORT = 28080
FRONTEND_BASE = 25005
# Fresh Rasa processes answer several times slower for about their first 10 s under load
# (measured at 46 req/s just after `up`: p50 230-480 ms, then 40-110 ms), so every deployment is
# warmed with this much closed-loop load before anything is measured on it.
WARM_USERS = 10
WARM_S = 20


def commit() -> str:
    """The commit measured; "-dirty" when the working tree had changes (figures of a draft)."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def machine() -> str:
    return f"{os.cpu_count()} cores, commit {commit()}"


def syrcad(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "syrcad.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    if done.returncode:
        raise SystemExit(f"syrcad {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class BenchCluster:
    """A cluster on this machine's engine; a second one, beside it, needs its own name and ports.
    Used as a context manager, it is taken down with its volumes however the block ends, so a
    bench that fails half-way leaves nothing running on the engine."""

    folder: Path
    name: str = "bench"
    port_offset: int = 0

    def __enter__(self) -> BenchCluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.hosts.exists():
            self.down()

    @property
    def hosts(self) -> Path:
        return self.folder / "hosts.yml"

    def configure(self, frontends: int, sanic_workers: int = 1, maxconn: int = 2) -> None:
        document = yaml.safe_load((ROOT / "examples" / "local.yml").read_text(encoding="utf-8"))
        self.folder.mkdir(parents=True, exist_ok=True)
        document.update(name=self.name, deploy_dir=str(self.folder / "deploy"))
        offset = self.port_offset
        document["project"] = {"path": str(ROOT / "bot"), "actions": str(ROOT / "actions")}
        document["services"] = {
            "frontend": {
                "replicas": frontends,
                "base_port": FRONTEND_BASE + offset,
                "sanic_workers": sanic_workers,
                "maxconn": maxconn,
            },
            "action": {"replicas": 1, "base_port": 25055 + offset},
            "lb": {
                "public_port": PUBLIC_PORT + offset,
                "api_port": 28005 + offset,
                "action_port": 28055 + offset,
                "stats_port": 28404 + offset,
                "action_stats_port": 28405 + offset,
                "rate_limit": {"requests": 1_000_000, "period_s": 10},
            },
        }
        document["stores"] = {"tracker": {"port": 47017 + offset}, "lock": {"port": 46379 + offset}}
        self.hosts.write_text(yaml.safe_dump(document), encoding="utf-8")
        self.hosts.with_name("hosts.state.yml").unlink(missing_ok=True)

    def up(self) -> float:
        """Deploy and warm; returns the seconds `syrcad up` took to have every replica ready."""
        return self.timed_then_warmed("up")

    def scale(self, frontends: int) -> float:
        """Scale and warm; returns the seconds `syrcad scale` took."""
        return self.timed_then_warmed("scale", f"frontend={frontends}")

    def timed_then_warmed(self, *command: str) -> float:
        """The seconds `syrcad COMMAND` took on this cluster; the warm-up after it not counted."""
        started = time.monotonic()
        syrcad(*command, "--hosts", str(self.hosts))
        took_s = time.monotonic() - started
        self.warm()
        return took_s

    def warm(self) -> None:
        measure(self.public, WARM_USERS, WARM_S, warmup=0)

    def down(self) -> None:
        syrcad("down", "--volumes", "--hosts", str(self.hosts))

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{PUBLIC_PORT + self.port_offset}"

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{FRONTEND_BASE + self.port_offset}"


@dataclass
class Load:
    """What one run measured, or several runs of one setup pooled with `+`: percentiles over
    every request of every run, the rate over their summed time."""

    stats: StatsEntry
    seconds: float

    @property
    def requests(self) -> int:
        return self.stats.num_requests

    @property
    def failures(self) -> int:
        return self.stats.num_failures

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return self.stats.get_response_time_percentile(0.5) or 0

    @property
    def p99_ms(self) -> float:
        return self.stats.get_response_time_percentile(0.99) or 0

    def __add__(self, other: Load) -> Load:
        pooled = StatsEntry(self.stats.stats, "pooled", "")
        pooled.extend(self.stats)
        pooled.extend(other.stats)
        return Load(pooled, self.seconds + other.seconds)


class Greeter(FastHttpUser):
    """Closed loop: each user sends the next message as soon as the reply is in, and starts a new
    conversation (a new sender) every few turns, as people do. One endless conversation would
    measure tracker growth instead: Rasa 3.6 reads a sender's whole stored conversation from
    Mongo twice per turn, so its cost per turn grows with the conversation's length."""

    wait_time = constant(0)
    turns_per_conversation = 5

    def on_start(self) -> None:
        self.turn = 0

    @task
    def hello(self) -> None:
        if self.turn % self.turns_per_conversation == 0:
            self.sender = str(uuid.uuid4())
        self.turn += 1
        self.client.post(
            "/webhooks/rest/webhook", json={"sender": self.sender, "message": "hello"}, name="hello"
        )


def at_rate(per_second: float, users: int, seed: int = 0) -> type[Greeter]:
    """Greeters that together send `per_second` requests as a Poisson stream, whatever the
    setup's speed (unlike a closed loop, whose rate follows it): each user sends at exponentially
    distributed intervals on its own schedule, catching up when a slow reply made it late.
    Fixed intervals would not do: users spawned together stay in step and send in bursts.
    The same seed gives the same stream, so two setups compared at one seed meet the same bursts
    and the burst-to-burst luck drops out of their difference."""
    per_user = per_second / users
    spawned = itertools.count()

    class Paced(Greeter):
        def on_start(self) -> None:
            super().on_start()
            self.intervals = random.Random(f"{seed}/{next(spawned)}")
            self.next_send = time.monotonic()

        def wait_time(self) -> float:
            self.next_send += self.intervals.expovariate(per_user)
            return max(0.0, self.next_send - time.monotonic())

    return Paced


def measure(url: str, users: int, seconds: float, warmup: float = 5, user: Any = Greeter) -> Load:
    """Run `users` users of class `user` against `url`; stats of `seconds` after a warm-up."""
    user.host = url
    env = Environment(user_classes=[user])
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(warmup)
    env.stats.reset_all()
    started = time.monotonic()
    gevent.sleep(seconds)
    load = Load(env.stats.total, time.monotonic() - started)
    runner.quit()
    return load
