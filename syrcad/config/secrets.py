"""Cluster secrets: generated once into a 0600 file beside hosts.yml, reused ever after.

They are never printed; a secret reaches only the rendered files that need it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets as random
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from syrcad.errors import ConfigError, ConfigIssue

# URL-safe, so a secret can stand in a URL, a YAML scalar or an HAProxy line without quoting.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


@dataclass(frozen=True, repr=False)
class Secrets:
    rasa_token: str
    jwt_secret: str
    tracker_password: str
    redis_password: str
    stats_password: str
    # The key Mongo replica set members authenticate each other with (their keyFile).
    replica_set_key: str

    def __repr__(self) -> str:  # keeps them out of tracebacks and debug output
        return "Secrets(<hidden>)"

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def new_secret() -> str:
    """32 random bytes, URL-safe, never starting with "-" (command lines read that as a flag)."""
    while True:
        value = random.token_urlsafe(32)
        if not value.startswith("-"):
            return value


def scram_sha256(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a password (RFC 5802/7677, as `ALTER ROLE ... PASSWORD`
    accepts it), so a new password can be set without sending it in clear text."""
    salt = salt if salt is not None else random.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def secrets_path(hosts_file: Path) -> Path:
    """`hosts.yml` → `hosts.secrets.yml` in the same folder."""
    return hosts_file.with_name(f"{hosts_file.stem}.secrets.yml")


def read(path: Path) -> Secrets | None:
    """The secrets in `path`, or None if there is no such file yet."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot be read: {error}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(str(path), "", "expected a mapping of secrets")])
    names = [f.name for f in fields(Secrets)]
    issues = [
        ConfigIssue(str(path), key, f"unknown secret (known: {', '.join(names)})")
        for key in data
        if key not in names
    ]
    issues += [
        ConfigIssue(str(path), key, "expected 16 to 256 characters of A-Z a-z 0-9 _ -")
        for key, value in data.items()
        if key in names and not (isinstance(value, str) and _SECRET.match(value))
    ]
    if issues:
        raise ConfigError(issues)
    values = {name: data.get(name) or new_secret() for name in names}
    return Secrets(**values)


def ensure(path: Path) -> Secrets:
    """Read the secrets file, creating it (mode 0600) or adding missing secrets as needed."""
    current = read(path)
    if current is None:
        current = Secrets(**{f.name: new_secret() for f in fields(Secrets)})
    text = document(current)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_private(path, text)
    return current


def document(secrets: Secrets) -> str:
    """The secrets file's text."""
    header = "# syrcad cluster secrets: generated once, keep private, do not commit.\n"
    return header + yaml.safe_dump(secrets.as_dict(), sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
