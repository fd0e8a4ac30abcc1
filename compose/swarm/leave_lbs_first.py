"""Runs a frontend or an action server under Swarm, and takes it out of the LBs before it stops.

Swarm stops a task with SIGTERM, and a server that stops listening resets the connections its
LB was just opening. So the task answers its LBs' agent checks (HAProxy `agent-check`) on
SYRCAD_AGENT_PORT: "ready" while it serves, "drain" once asked to stop. The LBs then send it no
new request; SYRCAD_LEAVE_LBS_S later the server gets the SIGTERM and finishes what it has.

A frontend also answers "drain" while one of its processes refuses turns for want of its stores
(its breaker is open: a file named by the process's pid in SYRCAD_BREAKER_MARKS, written by
syrcad_store_breaker.py), and "ready" again once none does: the LBs send the turns to frontends
that reach their stores. When none does, the LBs answer 503 `no_replica` themselves.

A frontend starts its command only once each store in SYRCAD_WAIT_FOR (`name:port ...`)
takes a connection: the stack's tasks start together, and Rasa exits when its tracker store does
not answer within seconds of loading its model, which it would then load again. From then on it
answers "drain" while a store takes no connection (checked every STORE_CHECK_EVERY_S). Its
breaker opens only once a turn fails: a frontend whose host was cut off took no turns meanwhile,
and when the link returns Swarm's DNS lists it again with its breaker closed, while its own
network may not reach the stores yet (turns sent to it failed with 503s in the e2e host cut).

    python leave_lbs_first.py COMMAND...
"""

# The Rasa image runs Python 3.9: annotations as `X | None` must not be evaluated.
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

AGENT_PORT = int(os.environ["SYRCAD_AGENT_PORT"])
LEAVE_LBS_S = float(os.environ.get("SYRCAD_LEAVE_LBS_S", "5"))
BREAKER_MARKS = os.environ.get("SYRCAD_BREAKER_MARKS")
STORES = os.environ.get("SYRCAD_WAIT_FOR", "").split()
STORE_CHECK_EVERY_S = 1.0
# A store answers a connection within milliseconds; a host that is cut off, never.
STORE_CONNECT_TIMEOUT_S = 1.0
stopping = threading.Event()
stores_reached = threading.Event()


def refusing_turns() -> bool:
    """Whether a live process of the server has its store breaker open."""
    marks = os.listdir(BREAKER_MARKS) if BREAKER_MARKS else []
    # A process that ended with its breaker open left its file behind.
    return any(os.path.exists(f"/proc/{pid}") for pid in marks)


def agent() -> None:
    with socket.create_server(("", AGENT_PORT)) as listening:
        while True:
            connection, _ = listening.accept()
            with connection:
                draining = stopping.is_set() or refusing_turns() or not stores_reached.is_set()
                # An LB that gave up on this check asks again: keep answering.
                with contextlib.suppress(OSError):
                    connection.sendall(b"drain\n" if draining else b"ready\n")


def unreached(address: str) -> OSError | None:
    """Why the store at `address` (`name:port`) took no connection, or None if it took one."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=STORE_CONNECT_TIMEOUT_S).close()
        return None
    # Not resolved yet (Swarm's DNS lists a task once it runs), refused, or no answer.
    except OSError as error:
        return error


def wait_for_stores() -> None:
    for address in STORES:
        started = reported = time.monotonic()
        while error := unreached(address):
            if time.monotonic() - reported >= 10:
                reported = time.monotonic()
                waited = reported - started
                print(f"waiting for {address} for {waited:.0f}s: {error}", flush=True)
            time.sleep(STORE_CHECK_EVERY_S)
    stores_reached.set()


def watch_stores() -> None:
    while True:
        time.sleep(STORE_CHECK_EVERY_S)
        if any(unreached(address) for address in STORES):
            stores_reached.clear()
        else:
            stores_reached.set()


def stop(signum: int, _frame: object) -> None:
    stopping.set()
    time.sleep(LEAVE_LBS_S)
    server.send_signal(signum)


if BREAKER_MARKS:
    os.makedirs(BREAKER_MARKS, exist_ok=True)
wait_for_stores()
server = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
threading.Thread(target=agent, daemon=True).start()
threading.Thread(target=watch_stores, daemon=True).start()
status = server.wait()
sys.exit(128 - status if status < 0 else status)  # killed by signal N: 128 + N, as a shell says
