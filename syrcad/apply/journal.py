"""The deploy lock and the audit log around every command that changes a cluster.

The lock is a folder made with `mkdir` (atomic) in the cluster folder of the cluster's first
host, holding who took it, for what, and when; a second `up` or `scale` waits for it up to a
timeout, then fails naming the holder. Every mutating command appends one JSON line (when,
who, what, result, seconds) to `audit.log` in each host's folder and in this machine's
workspace; `syrcad audit` shows them.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from syrcad.apply.hosts import HostHandle, each
from syrcad.errors import LockHeld, SyrcadError
from syrcad.plan import commands

AUDIT_FILE = "audit.log"


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    who: str
    command: str
    since: str
    pid: int

    def __str__(self) -> str:
        return f"{self.who} (pid {self.pid}) since {self.since}: {self.command}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            fields = json.loads(text)
            return cls(
                str(fields["who"]), str(fields["command"]), str(fields["since"]), int(fields["pid"])
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class DeployLock:
    host: HostHandle  # the cluster's first host

    @classmethod
    def of(cls, hosts: dict[str, HostHandle]) -> DeployLock:
        """The cluster's lock: on the first host of hosts.yml."""
        return cls(next(iter(hosts.values())))

    @property
    def folder(self) -> str:
        return str(self.host.remote_root / "lock")

    def try_acquire(self, holder: Holder) -> Holder | None:
        """Take the lock; None when taken, else the current holder's record."""
        answer = self.host.shell(
            "take the deploy lock",
            commands.take_lock(str(self.host.remote_root), self.folder),
            json.dumps(asdict(holder)).encode(),
        )
        if answer.strip() == "TAKEN":
            return None
        return Holder.parse(answer) or Holder("someone", "(record being written)", "now", 0)

    def acquire(
        self, holder: Holder, wait_s: float, waiting: Callable[[Holder], None] | None = None
    ) -> None:
        deadline = time.monotonic() + wait_s
        while (current := self.try_acquire(holder)) is not None:
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"cluster is locked by {current}\n"
                    f"(lock: {self.host.name}:{self.host.remote_root}/lock). Wait for that run, "
                    "retry with --lock-wait SECONDS, or if it died: syrcad lock release"
                )
            if waiting:
                waiting(current)
            time.sleep(2)

    def holder(self) -> Holder | None:
        answer = self.host.shell("read the deploy lock", commands.read_lock(self.folder))
        return Holder.parse(answer) if answer.strip() else None

    def release(self) -> None:
        self.host.shell("release the deploy lock", commands.release_lock(self.folder))


@dataclass(frozen=True)
class AuditEntry:
    at: str
    who: str
    command: str
    result: str  # "ok", or "failed: <first line of the error>"
    seconds: float


def record(
    hosts: list[HostHandle], local_log: Path, command: str, result: str, seconds: float
) -> None:
    """An entry by this operator, now, appended locally and on every host of `hosts`; a host
    that cannot be reached is skipped (the command's own error already names it)."""
    entry = AuditEntry(now(), operator(), command, result, round(seconds, 1))
    line = json.dumps(asdict(entry)) + "\n"
    local_log.parent.mkdir(parents=True, exist_ok=True)
    with local_log.open("a", encoding="utf-8") as log:
        log.write(line)

    def on_host(host: HostHandle) -> None:
        folder = str(host.remote_root / host.name)
        with suppress(SyrcadError):
            host.shell(
                "write the audit log", commands.append_audit(folder, AUDIT_FILE), line.encode()
            )

    each(hosts, on_host)


def read(text: str) -> list[AuditEntry]:
    entries = []
    for line in text.splitlines():
        try:
            entries.append(AuditEntry(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a full disk or a crash
    return entries


def read_host(host: HostHandle, lines: int) -> list[AuditEntry]:
    folder = str(host.remote_root / host.name)
    return read(host.shell("read the audit log", commands.tail_audit(folder, AUDIT_FILE, lines)))


@contextmanager
def operation(
    hosts: dict[str, HostHandle],
    local_log: Path,
    argv: list[str],
    lock_wait_s: float,
    waiting: Callable[[Holder], None] | None = None,
) -> Iterator[None]:
    """Hold the deploy lock around a mutating command and audit its result."""
    command = shlex.join(argv)
    started = time.monotonic()
    lock = DeployLock.of(hosts)
    holder = Holder(operator(), command, now(), os.getpid())
    result = "ok"
    try:
        lock.acquire(holder, lock_wait_s, waiting)
    except SyrcadError as error:  # refused: only this machine's log says so
        refused = f"refused: {_first_line(error)}"
        record([], local_log, command, refused, time.monotonic() - started)
        raise
    try:
        yield
    except BaseException as error:
        result = f"failed: {_first_line(error)}"
        raise
    finally:
        try:
            lock.release()
        finally:
            record(list(hosts.values()), local_log, command, result, time.monotonic() - started)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
