"""The source table's load: N requests sent within one second, for N = 1, 10, 50, 100.

A load shape starts N users over one second; each sends one message and then idles. The next
burst starts once every reply of this one is in (or 120 s passed). Per-burst latency is in the
stats under the names `burst 1` … `burst 100`.

    locust -f loadtest/bursts.py --headless --host http://127.0.0.1:8080 --csv bench/results/bursts
"""

from __future__ import annotations

import time
import uuid

from locust import HttpUser, LoadTestShape, constant, task

BURSTS = (1, 10, 50, 100)
SETTLE_S = 3  # quiet time between bursts
BURST_TIMEOUT_S = 120


class BurstShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.index = 0
        self.started = 0.0
        self.stopping_since = 0.0

    @property
    def size(self) -> int:
        return BURSTS[min(self.index, len(BURSTS) - 1)]

    def tick(self) -> tuple[int, float] | None:
        if self.index >= len(BURSTS):
            return None
        assert self.runner is not None
        now = time.monotonic()
        if self.stopping_since:  # between bursts: no users, let the system settle
            if now - self.stopping_since < SETTLE_S:
                return 0, 1000
            self.stopping_since = 0.0
            self.index += 1
            return self.tick()
        if not self.started:
            self.started = now
        answered = self.runner.stats.get(f"burst {self.size}", "POST").num_requests
        if answered >= self.size or now - self.started > BURST_TIMEOUT_S:
            self.started, self.stopping_since = 0.0, now
            return 0, 1000
        return self.size, self.size  # N users spawned over one second


class BurstUser(HttpUser):
    wait_time = constant(3600)  # one message per user; the shape decides how many users start

    @task
    def one_message(self) -> None:
        shape = self.environment.shape_class
        size = shape.size if isinstance(shape, BurstShape) else 1
        with self.client.post(
            "/webhooks/rest/webhook",
            json={"sender": str(uuid.uuid4()), "message": "hello"},
            name=f"burst {size}",
            catch_response=True,
        ) as response:
            if response.status_code == 200 and not response.json():
                response.failure("empty reply")
