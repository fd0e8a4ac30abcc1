"""Stand-in images for machines without a registry, built from Debian packages.

`syrcad images build` makes a Debian base with debootstrap, then builds the recipes in
`images/` on top. An image is rebuilt only when its recipe, the CA bundle or the base changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from syrcad.apply.hosts import remote_error
from syrcad.errors import RemoteError, SyrcadError
from syrcad.render.templates import data_root

Suite = Literal["bullseye", "bookworm"]
HASH_LABEL = "io.syrcad.recipe-hash"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Recipe:
    tag: str
    folder: str
    suite: Suite  # Rasa 3.6 needs Python < 3.11: bullseye's 3.9


RECIPES: tuple[Recipe, ...] = (
    Recipe("syrcad/rasa:3.6.21", "rasa", "bullseye"),
    Recipe("syrcad/haproxy:2.6", "haproxy", "bookworm"),
    Recipe("syrcad/redis:7.0", "redis", "bookworm"),
    Recipe("syrcad/mongo:secantus-0.7", "mongo", "bookworm"),
    Recipe("syrcad/postgres:15", "postgres", "bookworm"),
    Recipe("syrcad/keepalived:2.2", "keepalived", "bookworm"),
    Recipe("syrcad/prometheus:2.42", "prometheus", "bookworm"),
)


def base_tag(suite: Suite) -> str:
    return f"syrcad-base:{suite}"


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (a proxy-friendly choice), else the default."""
    candidates = [*sorted(sources.glob("sources.list.d/*.sources")), sources / "sources.list"]
    for file in candidates:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s", text, re.M
        )
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def recipe_hash(recipe: Recipe, ca_bundle: bytes, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    digest.update(ca_bundle)
    folder = data_root() / "images" / recipe.folder
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


Report = Callable[[str], None]


def build_all(
    docker: DockerClient, ca_bundle: Path | None, mirror: str | None, report: Report
) -> None:
    """Build every stand-in image that is missing or out of date on `docker`'s engine."""
    bundle = ca_bundle.read_bytes() if ca_bundle else b""
    for suite in sorted({r.suite for r in RECIPES}):
        if docker.image.exists(base_tag(suite)):
            report(f"{base_tag(suite)}: present")
        else:
            report(f"{base_tag(suite)}: debootstrap {suite} …")
            _bootstrap_base(docker, suite, mirror or apt_mirror())
    for recipe in RECIPES:
        base_id = docker.image.inspect(base_tag(recipe.suite)).id
        wanted = recipe_hash(recipe, bundle, base_id)
        if (
            docker.image.exists(recipe.tag)
            and (docker.image.inspect(recipe.tag).config.labels or {}).get(HASH_LABEL) == wanted
        ):
            report(f"{recipe.tag}: up to date")
            continue
        report(f"{recipe.tag}: building …")
        with tempfile.TemporaryDirectory(prefix="syrcad-image-") as context:
            shutil.copytree(data_root() / "images" / recipe.folder, context, dirs_exist_ok=True)
            Path(context, "ca-bundle.crt").write_bytes(bundle)
            try:
                docker.legacy_build(
                    context,
                    tags=[recipe.tag],
                    labels={HASH_LABEL: wanted},
                    build_args={"BASE": base_tag(recipe.suite)},
                )
            except DockerException as error:
                hint = "Behind a TLS-intercepting proxy? Pass --ca-bundle."
                raise remote_error("local", error, f"build {recipe.tag}", hint) from None
        report(f"{recipe.tag}: built")


def _bootstrap_base(docker: DockerClient, suite: Suite, mirror: str) -> None:
    if os.geteuid() != 0:
        raise SyrcadError(f"building {base_tag(suite)} runs debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        raise SyrcadError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="syrcad-rootfs-") as scratch:
        rootfs = Path(scratch, "rootfs")
        argv = ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RemoteError(
                "local",
                argv,
                done.returncode,
                done.stdout,
                done.stderr,
                step=f"debootstrap {suite}",
            )
        archive = Path(scratch, "rootfs.tar")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        try:
            docker.image.import_(archive, tag=base_tag(suite))
        except DockerException as error:
            raise remote_error("local", error, f"import {base_tag(suite)}") from None
