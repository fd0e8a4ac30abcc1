"""The shell commands syrcad runs on hosts, built as data by small functions. Pure.

The apply layer runs them (over the host's SSH connection, or here for hosts that share this
machine); `--dry-run` prints them; the tests pin them. Every path is quoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from shlex import quote

# HAProxy's runtime API: on the LB container's loopback only, never published.
RUNTIME_PORT = 9999
# Where a reloading HAProxy finds the server states (DRAIN, MAINT) of the workers before it: in
# the container's own filesystem, not its state volume, so that an LB created anew (`down` then
# `up`: a new network, new replica addresses) never loads the addresses its predecessor saved
# (it did, after a reload: its replicas stayed DOWN until DNS corrected them, over a minute).
SERVER_STATE_FILE = "/tmp/haproxy-server-state"


def take_lock(root: str, folder: str) -> str:
    """`mkdir` is atomic: the first run to make the folder holds the lock and writes its record
    (from standard input) there; any other reads the holder's record."""
    return (
        f"mkdir -p {quote(root)} && if mkdir {quote(folder)} 2>/dev/null; "
        f"then cat > {quote(folder)}/holder.json && echo TAKEN; "
        f"else cat {quote(folder)}/holder.json 2>/dev/null; fi"
    )


def read_lock(folder: str) -> str:
    return f"cat {quote(folder)}/holder.json 2>/dev/null || true"


def release_lock(folder: str) -> str:
    return f"rm -rf {quote(folder)}"


def append_audit(folder: str, file: str) -> str:
    """Standard input appended to the audit log."""
    return f"mkdir -p {quote(folder)} && cat >> {quote(folder)}/{quote(file)}"


def tail_audit(folder: str, file: str, lines: int) -> str:
    return f"tail -n {int(lines)} {quote(folder)}/{quote(file)} 2>/dev/null || true"


def unpack_files(folder: str) -> str:
    """A tar stream on standard input unpacked into the host's private folder."""
    return f"mkdir -p {quote(folder)} && chmod 700 {quote(folder)} && tar -C {quote(folder)} -xf -"


def postgres_password(username: str, database: str, verifier: str) -> tuple[str, ...]:
    """argv, inside the PostgreSQL container (its local socket trusts the container's own
    processes): the role's password becomes `verifier`, a SCRAM hash, so the password itself is
    on no command line and in no server log."""
    sql = f"ALTER ROLE \"{username}\" PASSWORD '{verifier}'"
    return ("psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", username, "-d", database, "-c", sql)


def replica_set_config(name: str, members: Sequence[str]) -> dict[str, object]:
    """Mongo's `replSetInitiate` document: every member as the `address:port` the others and
    the frontends dial, in hosts.yml's order."""
    return {"_id": name, "members": [{"_id": i, "host": m} for i, m in enumerate(members)]}


def read_sysctl(name: str) -> str:
    """A kernel setting of the host (its network namespace's, for net.*)."""
    return f"cat /proc/sys/{quote(name.replace('.', '/'))}"


def haproxy_api() -> tuple[str, ...]:
    """argv, inside the LB container, sending its last argument to the runtime API (bash's
    /dev/tcp: in the official image and in the stand-in alike)."""
    talk = f'exec 3<>/dev/tcp/127.0.0.1/{RUNTIME_PORT} && printf "%s\\n" "$1" >&3 && cat <&3'
    return ("bash", "-c", talk, "syrcad")


def set_servers(backend: str, servers: Sequence[str], state: str) -> str:
    """Runtime API: READY takes traffic; DRAIN takes no new traffic and finishes what it has;
    MAINT takes none. One round trip for many servers (`;`-separated)."""
    return "; ".join(f"set server {backend}/{server} state {state}" for server in servers)


def move_clients(backend: str, servers: Sequence[str]) -> str:
    """Runtime API: send `servers`' clients elsewhere. MAINT makes HAProxy ignore their
    persistence cookie (DRAIN would still honour it), and their open connections (websockets,
    long polls) are cut, so each client reconnects to another replica."""
    return "; ".join(
        f"set server {backend}/{server} state maint; shutdown sessions server {backend}/{server}"
        for server in servers
    )


def health_checks(action: str, servers_of: Mapping[str, Sequence[str]]) -> str:
    """Runtime API: `disable` or `enable` the checks of each backend's servers."""
    return "; ".join(
        f"{action} health {backend}/{server}"
        for backend, servers in servers_of.items()
        for server in servers
    )


def haproxy_reload() -> tuple[str, ...]:
    """argv, inside the LB container: save the server states for the new workers, then
    SIGUSR2 the master (PID 1) for a hitless reload."""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{RUNTIME_PORT} && echo 'show servers state' >&3 "
        f"&& cat <&3 > {SERVER_STATE_FILE} && kill -USR2 1"
    )
    return ("bash", "-c", script)


def find_model(path: str) -> str:
    """Prints a model the frontends would load from `path` (a .tar.gz file or a folder of
    them); prints nothing when there is none."""
    if path.endswith(".tar.gz"):
        return f"ls -1 {quote(path)} 2>/dev/null || true"
    return f"ls -1 {quote(path)}/*.tar.gz 2>/dev/null | head -n 1 || true"


def find_actions(path: str) -> str:
    """Prints a Python file of the actions package at `path`; nothing when there is none."""
    return f"ls -1 {quote(path)}/*.py 2>/dev/null | head -n 1 || true"


def listening_sockets() -> str:
    """The kernel's TCP socket tables of the host (the network namespace the command runs in)."""
    return "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true"


def listening_ports(tables: str) -> set[int]:
    """The ports with a listening socket (state 0A) in /proc/net/tcp{,6} text.

    >>> sorted(listening_ports("  0: 0100007F:1F90 00000000:0000 0A ..."))
    [8080]
    """
    ports = set()
    for line in tables.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
