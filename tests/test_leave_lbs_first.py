"""A Swarm task's agent (compose/swarm/leave_lbs_first.py), the store breaker that it reads
(compose/rasa/syrcad_store_breaker.py), and the public LB's Lua that keeps a server drained until
its agent says "ready" (haproxy/drained_until_ready.lua.j2), all run for real."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from syrcad.render.templates import render_template

from .conftest import ROOT
from .test_render import tool

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

    def answer_soon(self, wanted: str, within_s: float = 2) -> str:
        """The agent's answer once it is `wanted`, else its last after `within_s`: a signal
        reaches the agent's main thread a moment after it was sent."""
        deadline = time.monotonic() + within_s
        while (answer := self.answer()) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        return answer


@contextmanager
def running_agent(marks: Path, port: int, *server: str, stores: str = "") -> Iterator[Agent]:
    environment = {
        **os.environ,
        "SYRCAD_AGENT_PORT": str(port),
        "SYRCAD_LEAVE_LBS_S": "0.5",
        "SYRCAD_BREAKER_MARKS": str(marks),
        "SYRCAD_WAIT_FOR": stores,
    }
    process = subprocess.Popen([sys.executable, str(AGENT), *server], env=environment)
    try:
        yield Agent(process, port, marks)
    finally:
        # Through the agent, so that the server it started stops too.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


SLEEPING = (sys.executable, "-c", "import time; time.sleep(60)")  # the server under the agent


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    with running_agent(tmp_path / "breakers", free_port(), *SLEEPING) as started:
        yield started


def test_ready_while_serving_drain_once_asked_to_stop(agent: Agent) -> None:
    assert agent.answer() == "ready"
    agent.process.send_signal(signal.SIGTERM)
    assert agent.answer_soon("drain") == "drain"
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


def test_drain_while_a_store_takes_no_connection(tmp_path: Path) -> None:
    """A frontend whose host's link returns took no turns while it was cut off, so its breaker
    is closed: its agent says "ready" only while its stores take a connection."""
    store = socket.create_server(("127.0.0.1", 0))
    port = store.getsockname()[1]
    with running_agent(
        tmp_path / "breakers", free_port(), *SLEEPING, stores=f"127.0.0.1:{port}"
    ) as agent:
        assert agent.answer() == "ready"
        store.close()
        assert agent.answer_soon("drain", within_s=5) == "drain"
        store = socket.create_server(("127.0.0.1", port))
        assert agent.answer_soon("ready", within_s=5) == "ready"
    store.close()


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


FORCED_DRAIN = 0x08  # HAProxy's SRV_ADMF_FDRAIN in `show servers state`


class LB:
    """A real HAProxy with the public LB's Lua, and one server checked by health and agent."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path

    def ask(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(self.socket_path))
            connection.sendall(f"{command}\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        return answer.decode()

    def server(self) -> tuple[str, bool]:
        """The server's status as the stats page shows it (UP, DOWN, DRAIN), and whether it is
        in forced drain."""
        stat = next(
            line.split(",")
            for line in self.ask("show stat").splitlines()
            if line.startswith("frontends,s1,")
        )
        state = next(
            line.split()
            for line in self.ask("show servers state frontends").splitlines()[2:]
            if line.strip()
        )
        return stat[17], bool(int(state[6]) & FORCED_DRAIN)

    def until(self, wanted: Callable[[str, bool], bool], within_s: float = 10) -> tuple[str, bool]:
        deadline = time.monotonic() + within_s
        while not wanted(*(seen := self.server())):
            assert time.monotonic() < deadline, f"the server stayed {seen}"
            time.sleep(0.05)
        return seen


@contextmanager
def running_lb(tmp_path: Path, server_port: int, agent_port: int) -> Iterator[LB]:
    lua = tmp_path / "drained_until_ready.lua"
    bots = [{"rest": "frontends", "socketio": "socketio"}]
    lua.write_text(render_template("haproxy/drained_until_ready.lua.j2", bots=bots))
    sock = tmp_path / "admin.sock"
    config = tmp_path / "haproxy.cfg"
    checks = "check inter 200ms fall 1 rise 1 agent-check agent-inter 200ms"
    config.write_text(
        f"""global
    lua-load {lua}
    stats socket {sock} level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend frontends
    option httpchk GET /
    server s1 127.0.0.1:{server_port} {checks} agent-port {agent_port}
backend socketio
""",
        encoding="utf-8",
    )
    process = subprocess.Popen([tool("haproxy"), "-db", "-f", str(config)])
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert process.poll() is None and time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.05)
        yield LB(sock)
    finally:
        process.kill()
        process.wait()


def test_a_server_back_from_down_stays_drained_until_its_agent_says_ready(tmp_path: Path) -> None:
    marks, server_port, agent_port = tmp_path / "breakers", free_port(), free_port()
    with running_lb(tmp_path, server_port, agent_port) as lb:
        assert lb.until(lambda status, drained: status == "DOWN" and drained) == ("DOWN", True)
        # The server comes back with its store breaker open (a live process's mark: this one's).
        marks.mkdir()
        (marks / str(os.getpid())).touch()
        (served := tmp_path / "served").mkdir()  # an empty listing: a short answer to a check
        http_server = (
            *(sys.executable, "-m", "http.server", "--bind", "127.0.0.1"),
            *("--directory", str(served), str(server_port)),
        )
        with running_agent(marks, agent_port, *http_server) as agent:
            assert agent.answer() == "drain"
            lb.until(lambda status, _: status.startswith("DRAIN"))
            time.sleep(1)  # five health and agent checks: none lets it take a request
            assert lb.server() == ("DRAIN (agent)", True)
            (marks / str(os.getpid())).unlink()
            assert lb.until(lambda status, _: status == "UP") == ("UP", False)
            agent.process.terminate()  # the agent says "drain", then the server stops
            assert lb.until(lambda status, drained: status == "DOWN" and drained) == ("DOWN", True)
