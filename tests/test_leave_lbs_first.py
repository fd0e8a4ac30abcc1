"""A Swarm task's agent (compose/swarm/leave_lbs_first.py) and the store breaker that it reads
(compose/rasa/syrcad_store_breaker.py), both run for real: what the LBs' agent checks are told."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import ROOT

AGENT = ROOT / "compose" / "swarm" / "leave_lbs_first.py"
BREAKER = ROOT / "compose" / "rasa" / "syrcad_store_breaker.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Agent:
    def __init__(self, process: subprocess.Popen[bytes], port: int, marks: Path):
        self.process, self.port, self.marks = process, port, marks

    def answer(self) -> str:
        """What an LB's agent check reads, once the agent listens."""
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
                    return connection.recv(64).decode().strip()
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the agent never listened"
                time.sleep(0.05)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    port, marks = free_port(), tmp_path / "breakers"
    environment = {
        **os.environ,
        "SYRCAD_AGENT_PORT": str(port),
        "SYRCAD_LEAVE_LBS_S": "0.5",
        "SYRCAD_BREAKER_MARKS": str(marks),
    }
    server = [sys.executable, "-c", "import time; time.sleep(60)"]
    process = subprocess.Popen([sys.executable, str(AGENT), *server], env=environment)
    try:
        yield Agent(process, port, marks)
    finally:
        process.kill()
        process.wait()


def test_ready_while_serving_drain_once_asked_to_stop(agent: Agent) -> None:
    assert agent.answer() == "ready"
    agent.process.send_signal(signal.SIGTERM)
    assert agent.answer() == "drain"
    # The server gets the signal SYRCAD_LEAVE_LBS_S later, and the task ends with it.
    assert agent.process.wait(timeout=10) == 128 + signal.SIGTERM


def test_drain_while_a_live_process_has_its_breaker_open(agent: Agent) -> None:
    assert agent.answer() == "ready"
    live = agent.marks / str(agent.process.pid)
    live.touch()
    assert agent.answer() == "drain"
    live.unlink()
    assert agent.answer() == "ready"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (agent.marks / str(ended.pid)).touch()
    assert agent.answer() == "ready", "a process that ended with its breaker open still counts"


def load_breaker(marks: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SYRCAD_BREAKER_MARKS", str(marks))
    spec = importlib.util.spec_from_file_location("syrcad_store_breaker_under_test", BREAKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_breaker_marks_its_process_while_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "breakers"
    marks.mkdir()
    breaker_module = load_breaker(marks, monkeypatch)
    store_answers = [False]

    def probe() -> None:
        if not store_answers[0]:
            raise ConnectionError("no answer")

    async def outage_and_return() -> tuple[list[str], list[str]]:
        breaker = breaker_module.StoresBreaker()
        breaker.watch("tracker", probe)
        breaker.failed("tracker", TimeoutError("no answer"), time.monotonic())
        while_open = sorted(os.listdir(marks))
        store_answers[0] = True
        while breaker.is_open:
            await asyncio.sleep(0.05)
        return while_open, sorted(os.listdir(marks))

    while_open, after = asyncio.run(asyncio.wait_for(outage_and_return(), 10))
    assert while_open == [str(os.getpid())]
    assert after == []
