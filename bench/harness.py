"""Shared by the benchmarks: a throw-away bench cluster on this machine's engine, and a
closed-loop load generator (Locust as a library) that returns throughput and percentiles.

The load generator shares the cores with the cluster: figures are ratios measured in one run.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PUBLIC_PORT = 28080
FRONTEND_BASE = 25005


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
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
    folder: Path

    @property
    def hosts(self) -> Path:
        return self.folder / "hosts.yml"

    def configure(self, frontends: int, sanic_workers: int = 1, maxconn: int = 2) -> None:
        document = yaml.safe_load((ROOT / "examples" / "local.yml").read_text(encoding="utf-8"))
        document.update(name="bench", deploy_dir=str(self.folder / "deploy"))
        document["project"] = {"path": str(ROOT / "bot"), "actions": str(ROOT / "actions")}
        document["services"] = {
            "frontend": {
                "replicas": frontends,
                "base_port": FRONTEND_BASE,
                "sanic_workers": sanic_workers,
                "maxconn": maxconn,
            },
            "action": {"replicas": 1, "base_port": 25055},
            "lb": {
                "public_port": PUBLIC_PORT,
                "api_port": 28005,
                "action_port": 28055,
                "stats_port": 28404,
                "action_stats_port": 28405,
                "rate_limit": {"requests": 1_000_000, "period_s": 10},
            },
        }
        document["stores"] = {"tracker": {"port": 47017}, "lock": {"port": 46379}}
        self.hosts.write_text(yaml.safe_dump(document), encoding="utf-8")
        self.hosts.with_name("hosts.state.yml").unlink(missing_ok=True)

    def up(self) -> float:
        started = time.monotonic()
        syrcad("up", "--hosts", str(self.hosts))
        return time.monotonic() - started

    def down(self) -> None:
        syrcad("down", "--volumes", "--hosts", str(self.hosts))

    public = f"http://127.0.0.1:{PUBLIC_PORT}"
    direct = f"http://127.0.0.1:{FRONTEND_BASE}"


@dataclass
class Load:
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float


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


def at_rate(per_second: float, users: int) -> type[Greeter]:
    """Greeters that together send `per_second` requests as a Poisson stream, whatever the
    setup's speed (unlike a closed loop, whose rate follows it): each user sends at exponentially
    distributed intervals on its own schedule, catching up when a slow reply made it late.
    Fixed intervals would not do: users spawned together stay in step and send in bursts."""
    per_user = per_second / users

    class Paced(Greeter):
        def on_start(self) -> None:
            super().on_start()
            self.next_send = time.monotonic()

        def wait_time(self) -> float:
            self.next_send += random.expovariate(per_user)
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
    elapsed = time.monotonic() - started
    total = env.stats.total
    load = Load(
        total.num_requests,
        total.num_failures,
        total.num_requests / elapsed,
        total.get_response_time_percentile(0.5) or 0,
        total.get_response_time_percentile(0.99) or 0,
        total.min_response_time or 0,
        total.max_response_time or 0,
    )
    runner.quit()
    return load
