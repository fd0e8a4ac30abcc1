"""Shared by the benchmarks: a throw-away bench cluster on this machine's engine, and a
closed-loop load generator (Locust as a library) that returns throughput and percentiles.

The load generator shares the cores with the cluster: figures are ratios measured in one run.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import yaml
from locust import FastHttpUser, constant, task
from locust.env import Environment

from syrcad.apply import haproxy
from syrcad.apply.deployment import prepare

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PUBLIC_PORT = 28080
FRONTEND_BASE = 25005
# Fresh Rasa processes answer several times slower for about their first 10 s under load
# (measured at 46 req/s just after `up`: p50 230-480 ms, then 40-110 ms), so every deployment is
# warmed with this much closed-loop load before anything is measured on it.
WARM_USERS = 10
WARM_S = 20
# An LB log line: ... frontends/frontend-1 TR/Tw/Tc/Tr/Ta STATUS ..., timers in ms.
LB_TIMERS = re.compile(r" frontends/\S+ (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(\d+) \d{3} ")


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
                "rate_limit": {
                    "requests": 1_000_000,
                    "per_conversation": 1_000_000,
                    "period_s": 10,
                },
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

    def lb_own_ms(self, since: float) -> list[float]:
        """For every request the public LB served since the Unix time `since`, the milliseconds
        HAProxy added itself: its whole time on the request (Ta) less the time the request waited
        in its queue (Tw) and the time the frontend took to answer (Tr). Its timers count whole
        milliseconds, finer than any difference of end-to-end percentiles can show here."""
        log = subprocess.run(
            ["docker", "logs", "--since", f"{since:.3f}", f"{self.name}-lb-1-1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            float(total - queued - answered)
            for _, queued, _, answered, total in (
                map(int, timers.groups()) for timers in LB_TIMERS.finditer(log)
            )
            if queued >= 0 and answered >= 0
        ]

    def set_maxconn(self, maxconn: int) -> None:
        """What `services.frontend.maxconn` renders, set on the running LB through HAProxy's
        runtime API instead: no reload, so one cluster can take turns with itself, and a
        comparison of two values is not one of two clusters (whose speeds differ by up to a
        tenth however alike they are made)."""
        dep = prepare(self.hosts)
        commands = "; ".join(
            f"set maxconn server frontends/{replica.name} {maxconn}"
            for replica in dep.placement.of("frontend")
        )
        for lb in dep.placement.of("lb"):
            haproxy.runtime(dep.hosts[lb.host], lb.name, commands)

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{PUBLIC_PORT + self.port_offset}"

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{FRONTEND_BASE + self.port_offset}"


@contextmanager
def running_cluster(frontends: int) -> Iterator[BenchCluster]:
    """A bench cluster of `frontends` frontends in a scratch folder, up and warm; down after."""
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
    ):
        cluster.configure(frontends=frontends)
        cluster.up()
        yield cluster


def percentile(values_ms: list[float], q: float) -> float:
    """The `q` quantile (0.5, 0.99) of exact times; Locust's own statistics round to 10 ms above
    100 ms, a step as big as the differences the benchmarks look for."""
    if len(values_ms) < 2:
        return values_ms[0] if values_ms else 0.0
    return statistics.quantiles(values_ms, n=100, method="inclusive")[round(q * 100) - 1]


def interval(
    statistic: Callable[[list[float], list[float]], float],
    first: list[float],
    second: list[float],
    resamples: int = 400,
) -> tuple[float, float]:
    """The 95 % bootstrap interval of `statistic(first, second)`: how far the figure moves when
    other requests, drawn from the same runs, happen to be the slow ones. A figure whose interval
    straddles the target is not settled by the run either way."""
    draw = random.Random(0)
    values = sorted(
        statistic(draw.choices(first, k=len(first)), draw.choices(second, k=len(second)))
        for _ in range(resamples)
    )
    return values[int(0.025 * resamples)], values[int(0.975 * resamples) - 1]


@dataclass
class Load:
    """What one run measured, or several runs of one setup pooled with `+`: every request's
    response time, the failures among them, and the seconds measured."""

    times_ms: list[float]
    failures: int
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.times_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.times_ms, 0.5)

    @property
    def p99_ms(self) -> float:
        return percentile(self.times_ms, 0.99)

    def __add__(self, other: Load) -> Load:
        return Load(
            self.times_ms + other.times_ms,
            self.failures + other.failures,
            self.seconds + other.seconds,
        )


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
    """Run `users` users of class `user` against `url`; every request of `seconds` after a warm-up."""
    user.host = url
    env = Environment(user_classes=[user])
    outcomes: list[tuple[float, bool]] = []

    def record(response_time: float, exception: BaseException | None, **_: Any) -> None:
        outcomes.append((response_time, exception is not None))

    env.events.request.add_listener(record)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(warmup)
    outcomes.clear()
    started = time.monotonic()
    gevent.sleep(seconds)
    measured, elapsed = list(outcomes), time.monotonic() - started
    runner.quit()
    return Load([t for t, _ in measured], sum(failed for _, failed in measured), elapsed)
