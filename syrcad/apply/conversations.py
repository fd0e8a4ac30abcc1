"""`syrcad backup` and `syrcad restore`: every conversation (tracker events) out of the tracker
store into a compressed JSON-lines file, and back.

The store is read and written from inside a running frontend (compose/rasa/syrcad_conversations.py,
sent with `docker exec`), which reaches it with its own credentials; the conversations stream
through this process one line at a time, so memory stays flat whatever the store holds.

A backup file, gzip-compressed, one JSON object per line:
- first, the header: {"syrcad_backup": 1, "cluster", "tracker", "created", "state"} where `state`
  is the text of the cluster's state file (scale records, a pinned model) or null, and "bot"
  for one bot's conversations (a cluster with `bots:`);
- a line per conversation: {"sender_id", "events"};
- last, the trailer: {"end": true, "conversations", "events"}. A file without it was cut short,
  and restore refuses it before touching the store.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from syrcad.apply import facts, swarm
from syrcad.apply.deployment import Deployment
from syrcad.apply.hosts import HostHandle
from syrcad.errors import RemoteError, SyrcadError, UsageError
from syrcad.render.context import endpoints_file
from syrcad.render.templates import static

FORMAT = 1
IN_FRONTEND = "compose/rasa/syrcad_conversations.py"


@dataclass(frozen=True)
class Header:
    cluster: str
    tracker: str
    created: str
    state: str | None


@dataclass(frozen=True)
class Counts:
    conversations: int
    events: int


@dataclass(frozen=True)
class Frontend:
    """The running frontend container the store is reached through."""

    host: HostHandle
    container: str  # its id
    endpoints: str  # the endpoints file of its bot, beside syrcad's modules

    def exec_argv(self, command: str) -> list[str]:
        docker = [str(part) for part in self.host.docker().client_config.docker_cmd]
        code = static(IN_FRONTEND)
        return [
            *docker,
            "exec",
            "-i",
            self.container,
            "python",
            "-c",
            code,
            command,
            self.endpoints,
        ]


def a_running_frontend(dep: Deployment, bot: str = "") -> Frontend:
    """A ready frontend (of `bot`): it reaches the bot's conversations with its own settings."""
    endpoints = endpoints_file(bot)
    if dep.cluster.engine == "swarm":
        for task in swarm.tasks(dep):
            running = task.state == "running" and task.container_id and task.host
            if task.service == "frontend" and running:
                return Frontend(dep.hosts[task.host], task.container_id, endpoints)
    else:
        for replica in dep.placement.of("frontend", bot):
            host = dep.hosts[replica.host]
            fact = facts.containers(host).get(replica.name)
            if fact and fact.ready:
                return Frontend(host, fact.id, endpoints)
    whose = f"of bot {bot} " if bot else ""
    raise SyrcadError(
        f"cluster {dep.cluster.name}: no frontend {whose}is running to reach the tracker store "
        "through; run `syrcad up` first"
    )


def backup(dep: Deployment, out: Path, state: str | None, bot: str = "") -> Counts:
    """Write every conversation (of `bot`) into `out` (replaced only once the backup is whole)."""
    frontend = a_running_frontend(dep, bot)
    header = {
        "syrcad_backup": FORMAT,
        "cluster": dep.cluster.name,
        **({"bot": bot} if bot else {}),
        "tracker": dep.cluster.stores.tracker.type,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "state": state,
    }
    partial = out.with_name(out.name + ".partial")
    conversations = events = 0
    argv = frontend.exec_argv("dump")
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors) as dump,
        gzip.open(partial, "wt", encoding="utf-8") as file,
    ):
        assert dump.stdout is not None
        file.write(json.dumps(header) + "\n")
        for line in dump.stdout:
            conversation = json.loads(line)
            conversations += 1
            events += len(conversation["events"])
            file.write(line.decode("utf-8"))
        file.write(json.dumps({"end": True, "conversations": conversations, "events": events}))
        file.write("\n")
        _check(frontend, argv, dump, errors, "read the tracker store")
    partial.replace(out)
    return Counts(conversations, events)


def read_header(path: Path) -> tuple[Header, Counts]:
    """The backup's header and its trailer's counts; a UsageError if it is not a whole backup."""
    first: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            for line in file:
                if first is None:
                    first = json.loads(line)
                last_line = line
            last = json.loads(last_line) if first is not None else {}
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not a readable syrcad backup ({error})") from None
    if not first or first.get("syrcad_backup") != FORMAT:
        raise UsageError(f"{path}: not a syrcad backup (format {FORMAT})")
    if not last.get("end"):
        raise UsageError(f"{path}: the backup was cut short (no end line); take it again")
    header = Header(first["cluster"], first["tracker"], first["created"], first.get("state"))
    return header, Counts(last["conversations"], last["events"])


def restore(dep: Deployment, path: Path, bot: str = "") -> dict[str, int]:
    """Load the backup's conversations into the tracker store (as `bot`'s); the store's summary
    (restored, appended, unchanged, kept, events). Call `read_header` first: it checks the file
    is whole."""
    frontend = a_running_frontend(dep, bot)
    argv = frontend.exec_argv("load")
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        ) as load,
    ):
        assert load.stdin is not None and load.stdout is not None
        try:
            for line in _conversation_lines(path):
                load.stdin.write(line)
            load.stdin.close()
        except BrokenPipeError:
            pass  # it stopped reading: its exit code and stderr say why
        answer = load.stdout.read().decode("utf-8", errors="replace")
        _check(frontend, argv, load, errors, "write the tracker store")
    return dict(json.loads(answer.strip().splitlines()[-1]))


def _conversation_lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as file:
        next(file)  # the header
        for line in file:
            if not line.startswith(b'{"end":'):
                yield line


def _check(
    frontend: Frontend,
    argv: list[str],
    process: subprocess.Popen[bytes],
    errors: IO[bytes],
    step: str,
) -> None:
    if process.wait() != 0:
        errors.seek(0)
        raise RemoteError(
            frontend.host.name,
            [*argv[: argv.index("-c") + 1], "<syrcad_conversations.py>", argv[-1]],
            process.returncode,
            stderr=errors.read().decode("utf-8", errors="replace"),
            step=step,
        )
