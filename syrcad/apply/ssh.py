"""One multiplexed SSH connection per host, carrying every Docker call and file copy.

`docker -H ssh://…` starts a new SSH session for each call, and a deploy makes hundreds: real
sshd's MaxStartups/MaxSessions limits then refuse some (docker/compose issues 10117, 9448, 6463,
11677). Instead, syrcad opens one OpenSSH master connection per host and forwards the host's
Docker socket to a local one; Docker and Compose talk to that socket, and shell commands
(file copies, the deploy lock, the audit log) ride the same master.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from syrcad.errors import RemoteError

CONNECT_TIMEOUT_S = 10
# The engine's socket when the host's login does not set DOCKER_HOST.
DEFAULT_REMOTE_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in: `ssh [-F config] [-i identity] -p port user@address`."""

    host: str  # the host's name in hosts.yml, for error messages
    user: str
    address: str
    port: int = 22
    config_file: str | None = None
    identity_file: str | None = None

    def options(self) -> list[str]:
        argv = ["-p", str(self.port), "-o", "BatchMode=yes"]
        argv += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        # A lost host is noticed within ~30 s instead of the TCP timeout's minutes.
        argv += ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if self.config_file:
            argv += ["-F", self.config_file]
        if self.identity_file:
            argv += ["-i", self.identity_file]
        return argv

    @property
    def destination(self) -> str:
        address = self.address.strip("[]")
        return f"{self.user}@{address}"


@dataclass
class SshLink:
    """The master connection to one host, opened on first use and closed at exit."""

    target: SshTarget
    _folder: Path | None = None
    _master: subprocess.Popen[bytes] | None = None
    _engine: str | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def _control(self) -> Path:
        assert self._folder is not None
        return self._folder / "control"

    def argv(self, *command: str) -> list[str]:
        """ssh through the master connection (opened first if needed)."""
        self._open()
        return ["ssh", "-S", str(self._control), *self.target.options(), self.target.destination,
                *command]  # fmt: skip

    def run(self, step: str, script: str, stdin: bytes | None = None) -> str:
        """Run a shell script on the host; a failure names the host and the step."""
        return run_checked(self.target.host, self.argv(script), step, stdin)

    def engine_url(self) -> str:
        """A local unix:// URL that reaches the host's Docker engine through the master."""
        self._open()
        with self._lock:
            if self._engine is None:
                remote = self.run(
                    "find the Docker engine",
                    f'printf %s "${{DOCKER_HOST:-unix://{DEFAULT_REMOTE_SOCKET}}}"',
                )
                if not remote.startswith("unix://"):
                    raise RemoteError(
                        self.target.host,
                        ["ssh", self.target.destination, "echo $DOCKER_HOST"],
                        None,
                        remote,
                        "",
                        step="find the Docker engine",
                        hint="DOCKER_HOST on the host must be a unix:// socket",
                    )
                local = self._control.parent / "docker.sock"
                forward = f"{local}:{remote.removeprefix('unix://')}"
                argv = ["ssh", "-S", str(self._control), "-O", "forward", "-L", forward,
                        *self.target.options(), self.target.destination]  # fmt: skip
                run_checked(self.target.host, argv, "forward the Docker socket")
                self._engine = f"unix://{local}"
            return self._engine

    def _open(self) -> None:
        with self._lock:
            if self._master is not None and self._master.poll() is None:
                return
            self._engine = None
            # Short paths: a unix socket path is limited to 107 bytes.
            self._folder = Path(tempfile.mkdtemp(prefix="syrcad-ssh-"))
            argv = ["ssh", "-M", "-S", str(self._control), "-N", "-o", "ControlPersist=no",
                    "-o", "ExitOnForwardFailure=yes", *self.target.options(),
                    self.target.destination]  # fmt: skip
            with open(self._folder / "ssh.log", "wb") as log:
                self._master = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
                )
            deadline = time.monotonic() + CONNECT_TIMEOUT_S + 5
            while not self._control.exists():
                if self._master.poll() is not None or time.monotonic() > deadline:
                    self._master.kill()
                    self._master.wait()
                    self._master = None
                    stderr = (self._folder / "ssh.log").read_text(errors="replace")
                    raise RemoteError(
                        self.target.host,
                        argv,
                        None,
                        "",
                        stderr,
                        step="connect over ssh",
                        hint=f"Can `ssh {self.target.destination}` log in without a password?",
                    )
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            if self._master is not None:
                self._master.terminate()
                try:
                    self._master.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._master.kill()
                self._master = None
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
            self._engine = None


def run_checked(host: str, argv: list[str], step: str, stdin: bytes | None = None) -> str:
    """Run `argv` here; its stdout, or a RemoteError naming the host and the step."""
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RemoteError(
            host,
            argv,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
            step=step,
        )
    return done.stdout.decode(errors="replace")


_links: dict[SshTarget, SshLink] = {}
_links_lock = threading.Lock()


def link(target: SshTarget) -> SshLink:
    """The process's one link to `target` (several handles of one host share it)."""
    with _links_lock:
        if target not in _links:
            _links[target] = SshLink(target)
        return _links[target]


@atexit.register
def close_all() -> None:
    with _links_lock:
        for each in _links.values():
            each.close()
        _links.clear()
