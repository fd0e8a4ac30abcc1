"""Several Linux hosts on one machine, for multi-host tests and development.

Each host is a network namespace on a bridge, with its own address, its own Docker engine
(started with `nsenter --net=…`: `ip netns exec` remounts /sys and hides the cgroups) and its
own sshd with key authentication. sshd sets DOCKER_HOST for its sessions, so a login on a host
reaches that host's engine, as on a real machine. All hosts share this machine's filesystem,
the way an NFS-mounted deploy folder and project are shared.

    python -m tests.testhosts up [--count 3]     # prints the hosts and the ssh config to use
    python -m tests.testhosts down               # removes everything it made
    python -m tests.testhosts status

Needs root, iproute2, iptables, openssh-server and dockerd.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

PREFIX = "syrcadth"  # namespaces, links and the bridge all start with it
BRIDGE = f"{PREFIX}0"
SUBNET = "10.254.77"  # a /24 used only by these hosts; the bridge is .1, hosts .11, .12, …
SECOND_CLIENT = f"{SUBNET}.2"  # a second source address here, to be another client of the LB
VIRTUAL_ADDRESS = f"{SUBNET}.10"  # free for the LB hosts to share (keepalived)
STATE = Path("/var/lib/syrcad-testhosts")  # engines' data, keys, configs
RUN = Path("/run/syrcad-testhosts")  # sockets and pid files (short paths: sockets max 107 bytes)
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


@dataclass(frozen=True)
class TestHost:
    name: str
    address: str
    netns: str
    engine: str  # unix:// URL of the host's Docker engine, as seen from this machine
    public_address: str  # a second address, not the cluster's: the host's "public" side

    def docker_env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.engine}


@dataclass(frozen=True)
class TestHosts:
    hosts: tuple[TestHost, ...]
    ssh_config: Path  # use with `ssh -F`, or as `ssh.config_file` in hosts.yml

    def by_name(self, name: str) -> TestHost:
        return next(h for h in self.hosts if h.name == name)


def sh(*argv: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    if not quiet and done.returncode != 0:
        print(f"  ({' '.join(argv)}: {done.stderr.strip()})", file=sys.stderr)
    return done


def up(count: int = 3) -> TestHosts:
    """Create `count` hosts (node1, node2, …), each with an engine and sshd; idempotent."""
    if os.geteuid() != 0:
        raise SystemExit("test hosts need root (network namespaces, dockerd, sshd)")
    for tool in ("ip", "iptables", "nsenter", "dockerd", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SystemExit(f"test hosts need `{tool}` (scripts/setup.sh installs it)")
    if not Path("/usr/sbin/sshd").exists():
        raise SystemExit("test hosts need sshd (apt-get install openssh-server)")
    STATE.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder

    if sh("ip", "link", "show", BRIDGE, check=False, quiet=True).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
    for address in (f"{SUBNET}.1", SECOND_CLIENT):
        sh("ip", "addr", "replace", f"{address}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    # The machine's own dockerd sets FORWARD to DROP, and bridged frames pass iptables
    # (br_netfilter): let traffic between the hosts through.
    if sh("iptables", "-C", *FORWARD_RULE, check=False, quiet=True).returncode != 0:
        sh("iptables", "-I", *FORWARD_RULE)

    client_key = STATE / "id_ed25519"
    if not client_key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key))
    hosts = []
    known = []
    for index in range(1, count + 1):
        host = _host(index, client_key)
        hosts.append(host)
        key = (STATE / host.name / "ssh_host_ed25519_key.pub").read_text().split()
        known.append(f"{host.address} {key[0]} {key[1]}")
    (STATE / "known_hosts").write_text("\n".join(known) + "\n")
    config = STATE / "ssh_config"
    config.write_text(
        f"Host {SUBNET}.*\n"
        "  User root\n"
        f"  IdentityFile {client_key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {STATE / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
    )
    return TestHosts(tuple(hosts), config)


def _host(index: int, client_key: Path) -> TestHost:
    name = f"node{index}"
    netns = f"{PREFIX}-{name}"
    address = f"{SUBNET}.{10 + index}"
    state, run = STATE / name, RUN / name
    state.mkdir(exist_ok=True)
    run.mkdir(exist_ok=True)
    public = f"{SUBNET}.{100 + index}"
    host = TestHost(name, address, netns, f"unix://{run / 'docker.sock'}", public)

    if sh("ip", "netns", "pids", netns, check=False, quiet=True).returncode != 0:
        outside = f"{PREFIX}{index}"
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "link", "set", outside, "master", BRIDGE, "up")
        inside = ("ip", "-n", netns)
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "link", "set", "lo", "up")
    for each in (address, public):
        sh("ip", "-n", netns, "addr", "replace", f"{each}/24", "dev", "eth0")
    sh("ip", "-n", netns, "route", "replace", "default", "via", f"{SUBNET}.1")
    # As the runbook asks of LB hosts: listen on the LB hosts' virtual address while not holding it.
    sh("ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
    enter = ("nsenter", f"--net=/run/netns/{netns}")

    if not _alive(run / "docker.pid"):
        with open(state / "dockerd.log", "ab") as log:
            subprocess.Popen(
                [
                    *enter,
                    "dockerd",
                    "--data-root",
                    str(state / "docker"),
                    "--exec-root",
                    str(run / "exec"),
                    "-H",
                    host.engine,
                    "-p",
                    str(run / "docker.pid"),
                    "--bip",
                    f"172.30.{index}.1/24",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait(
            lambda: (
                sh("docker", "-H", host.engine, "info", check=False, quiet=True).returncode == 0
            ),
            f"{name}: dockerd did not start (see {state / 'dockerd.log'})",
        )

    if not _alive(run / "sshd.pid"):
        host_key = state / "ssh_host_ed25519_key"
        if not host_key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        authorized = state / "authorized_keys"
        authorized.write_text(Path(f"{client_key}.pub").read_text())
        config = state / "sshd_config"
        config.write_text(
            f"ListenAddress {address}\n"
            f"HostKey {host_key}\n"
            f"PidFile {run / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            f"SetEnv DOCKER_HOST={host.engine}\n"
        )
        sh(*enter, "/usr/sbin/sshd", "-f", str(config), "-E", str(state / "sshd.log"))
        _wait(lambda: _alive(run / "sshd.pid"), f"{name}: sshd did not start")
    return host


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _wait(ready: Callable[[], bool], failure: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.5)


def down(keep_data: bool = False) -> None:
    """Stop every engine and sshd, remove namespaces, links, bridge, rules and (unless
    `keep_data`) the engines' data. Safe to run when nothing is there."""
    for run in sorted(RUN.glob("node*")) if RUN.exists() else []:
        engine = f"unix://{run / 'docker.sock'}"
        if _alive(run / "docker.pid"):
            ids = sh("docker", "-H", engine, "ps", "-aq", check=False, quiet=True).stdout.split()
            if ids:
                sh("docker", "-H", engine, "rm", "-f", "-v", *ids, check=False)
        for daemon in ("sshd", "docker"):
            _stop(run / f"{daemon}.pid")
    for netns in _namespaces():
        # Whatever still runs inside (an sshd session of a client that has not hung up yet)
        # would keep the namespace, and its end of the link, alive after `ip netns delete`.
        for pid in sh("ip", "netns", "pids", netns, check=False, quiet=True).stdout.split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "delete", netns, check=False)
    for link in _links():  # the bridge, and any link whose namespace outlived its deletion
        sh("ip", "link", "delete", link, check=False, quiet=True)
    while sh("iptables", "-C", *FORWARD_RULE, check=False, quiet=True).returncode == 0:
        sh("iptables", "-D", *FORWARD_RULE, check=False)
    # A container on its host's network (keepalived) leaves dockerd's handle on that namespace
    # mounted under the engine's exec root.
    for mount in _mounts_under(RUN):
        sh("umount", "-l", mount, check=False, quiet=True)
    shutil.rmtree(RUN, ignore_errors=True)
    if not keep_data:
        for mount in _mounts_under(STATE):  # overlay mounts can outlive a killed dockerd
            sh("umount", "-l", mount, check=False, quiet=True)
        shutil.rmtree(STATE, ignore_errors=True)


def cut(host: TestHost) -> None:
    """Take the host's link down, as a pulled cable or a dead switch port would."""
    sh("ip", "link", "set", _outside_link(host), "down")


def reconnect(host: TestHost) -> None:
    sh("ip", "link", "set", _outside_link(host), "up")


def stop_sshd(host: TestHost) -> None:
    """Refuse logins on the host; its engine and containers keep running. `up()` restarts it."""
    _stop(RUN / host.name / "sshd.pid")


def _outside_link(host: TestHost) -> str:
    return f"{PREFIX}{host.name.removeprefix('node')}"


def _namespaces() -> list[str]:
    listing = sh("ip", "netns", "list", check=False, quiet=True).stdout.splitlines()
    return [line.split()[0] for line in listing if line.startswith(f"{PREFIX}-")]


def _links() -> list[str]:
    """This machine's ends of the hosts' links, and the bridge."""
    listing = sh("ip", "-o", "link", "show", check=False, quiet=True).stdout.splitlines()
    names = [line.split(":")[1].strip().split("@")[0] for line in listing if ":" in line]
    return [name for name in names if name.startswith(PREFIX)]


def leftovers() -> list[str]:
    """What `down` should have removed and is still there."""
    found = [f"netns {netns}" for netns in _namespaces()]
    found += [f"link {link}" for link in _links()]
    if sh("iptables", "-C", *FORWARD_RULE, check=False, quiet=True).returncode == 0:
        found.append("iptables FORWARD rule")
    processes = sh("ps", "-eo", "args", check=False, quiet=True).stdout.splitlines()
    found += [f"process {p}" for p in processes if str(RUN) in p or str(STATE) in p]
    found += [f"folder {f}" for f in (RUN, STATE) if f.exists()]
    return found


def _stop(pidfile: Path, seconds: float = 30) -> None:
    if not _alive(pidfile):
        return
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _mounts_under(folder: Path) -> list[str]:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(f"{folder}/")), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("up", help="create (or complete) the hosts")
    create.add_argument("--count", type=int, default=3)
    remove = verbs.add_parser("down", help="remove everything the hosts are made of")
    remove.add_argument("--keep-data", action="store_true", help="keep the engines' images")
    verbs.add_parser("status", help="the hosts and whether their daemons run")
    args = parser.parse_args()
    if args.verb == "up":
        made = up(args.count)
        for host in made.hosts:
            print(f"{host.name}  {host.address}  ssh -F {made.ssh_config} root@{host.address}")
    elif args.verb == "down":
        down(args.keep_data)
    else:
        for run in sorted(RUN.glob("node*")) if RUN.exists() else []:
            states = {d: _alive(run / f"{d}.pid") for d in ("docker", "sshd")}
            print(run.name, " ".join(f"{d}={'up' if ok else 'down'}" for d, ok in states.items()))


if __name__ == "__main__":
    main()
