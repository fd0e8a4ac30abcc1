"""Read hosts.yml once: YAML → pydantic model, every problem reported with file, line and key path."""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from syrcad.config.model import MEANINGS, ROLES, Cluster
from syrcad.errors import ConfigError, ConfigIssue

MAX_FILE_BYTES = 1024 * 1024
# A YAML alias is a reference: ten nested levels of ten aliases each are 10**10 nodes to validate.
MAX_EXPANDED_NODES = 100_000

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Source:
    """Where a configuration came from, to point messages at file and line."""

    file: str
    lines: Mapping[Loc, int] = field(default_factory=dict)

    def issue(self, loc: Loc, message: str, at: Loc | None = None) -> ConfigIssue:
        """An issue at key path `loc`; its line is that of `at` (default `loc`) or its nearest parent."""
        line, at = None, loc if at is None else at
        for end in range(len(at), -1, -1):
            if at[:end] in self.lines:
                line = self.lines[at[:end]]
                break
        return ConfigIssue(self.file, format_loc(loc), message, line)

    @contextmanager
    def locating(self) -> Iterator[None]:
        """Fill in file and line of ConfigErrors raised by later, file-agnostic stages."""
        try:
            yield
        except ConfigError as error:
            located = [self.issue(parse_loc(i.path), i.message) for i in error.issues]
            raise ConfigError(located) from None


@dataclass(frozen=True)
class Loaded:
    cluster: Cluster
    source: Source
    path: Path


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_loc(path: str) -> Loc:
    parts: list[str | int] = []
    for dotted in path.split("."):
        name, _, rest = dotted.partition("[")
        if name:
            parts.append(name)
        for index in filter(None, rest.replace("]", "").split("[")):
            parts.append(int(index))
    return tuple(parts)


def load(path: str | os.PathLike[str]) -> Loaded:
    """Parse and validate a hosts.yml file.

    >>> load("examples/hosts.yml").cluster.name
    'demo'
    """
    file = Path(path)
    text = _read(file, Source(str(path)))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_yaml_issue(str(path), error)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([Source(str(path)).issue((), f"invalid YAML: {error}")]) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _check_size(node, Source(str(path)))
        _index_lines(node, (), lines)
    source = Source(str(path), lines)
    try:
        data = yaml.safe_load(text) if node is not None else None
    except yaml.MarkedYAMLError as error:  # e.g. an unknown tag: composes, does not construct
        raise ConfigError([_yaml_issue(str(path), error)]) from None
    if not isinstance(data, dict):
        raise ConfigError([source.issue((), "expected a mapping of keys (hosts, project, …)")])
    cluster = _validate(_resolve_relative_paths(data, file.parent), source)
    from syrcad.config.checks import check

    issues = [source.issue(loc, message) for loc, message in check(cluster, base=file.parent)]
    if issues:
        raise ConfigError(issues)
    return Loaded(cluster, source, file)


def _read(file: Path, source: Source) -> str:
    """The file's text: at most MAX_FILE_BYTES of UTF-8."""
    try:
        raw_bytes = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError([source.issue((), "file not found")]) from None
    except OSError as error:
        raise ConfigError([source.issue((), f"cannot be read: {error.strerror}")]) from None
    if len(raw_bytes) > MAX_FILE_BYTES:
        raise ConfigError([source.issue((), f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        return raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([source.issue((), "is not UTF-8 text")]) from None


def _yaml_issue(path: str, error: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    return ConfigIssue(path, "", f"invalid YAML: {problem}", mark.line + 1 if mark else None)


def _validate(data: dict[str, object], source: Source) -> Cluster:
    try:
        return Cluster.model_validate(data)
    except ValidationError as error:
        details = error.errors(include_url=False)
        # A list whose only item failed also reports "too short": the item's error says it all.
        failed_items = {
            tuple(d["loc"][:-1]) for d in details if d["loc"] and isinstance(d["loc"][-1], int)
        }
        details = [
            d for d in details if not (d["type"] == "too_short" and tuple(d["loc"]) in failed_items)
        ]
        raise ConfigError([_located(source, detail) for detail in details]) from None


def _check_size(root: yaml.Node, source: Source) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # breaks recursive aliases
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES:
            raise ConfigError(
                [source.issue((), "document expands to too many nodes (YAML alias bomb?)")]
            )
        return total

    size(root)


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], depth: int = 0) -> None:
    if depth > 32:
        return
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value) if isinstance(key, yaml.ScalarNode) else loc
            lines.setdefault(child, key.start_mark.line + 1)
            _index_lines(value, child, lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*loc, index), lines, depth + 1)


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths are taken from the folder of hosts.yml: handy when the hosts share this disk."""

    def absolute(value: object) -> object:
        if isinstance(value, str) and value and not value.startswith(("/", "~")):
            return os.path.normpath(base.resolve() / value)
        return value

    data = (
        {**data, "deploy_dir": absolute(data.get("deploy_dir"))} if "deploy_dir" in data else data
    )
    lb = (data.get("services") or {}).get("lb") if isinstance(data.get("services"), dict) else None
    if isinstance(lb, dict) and isinstance(lb.get("tls"), dict) and "certificate" in lb["tls"]:
        tls = {**lb["tls"], "certificate": absolute(lb["tls"]["certificate"])}
        data = {**data, "services": {**data["services"], "lb": {**lb, "tls": tls}}}
    hosts = data.get("hosts")
    if isinstance(hosts, dict):
        data = {**data, "hosts": {name: _with_ssh_paths(h, absolute) for name, h in hosts.items()}}
    project = data.get("project")
    if isinstance(project, dict):
        project = {
            key: absolute(v) if key in ("path", "actions") else v for key, v in project.items()
        }
        data = {**data, "project": project}
    return data


def _with_ssh_paths(host: object, absolute: Callable[[object], object]) -> object:
    ssh = host.get("ssh") if isinstance(host, dict) else None
    if not isinstance(host, dict) or not isinstance(ssh, dict):
        return host
    files = ("identity_file", "config_file")
    return {**host, "ssh": {key: absolute(v) if key in files else v for key, v in ssh.items()}}


_UNION_TAGS = {("stores", "tracker"): ("mongo", "postgres")}


def _located(source: Source, detail: ErrorDetails) -> ConfigIssue:
    loc, message = _describe(detail)
    # An unknown key is reported at its parent's path, but on the unknown key's own line.
    at = _strip_tags(tuple(detail["loc"])) if detail["type"] == "extra_forbidden" else None
    return source.issue(loc, message, at)


def _strip_tags(loc: Loc) -> Loc:
    """Drop the union member pydantic puts in the path (`stores.tracker.mongo.port`)."""
    for prefix, tags in _UNION_TAGS.items():
        n = len(prefix)
        if loc[:n] == prefix and len(loc) > n and loc[n] in tags:
            return loc[:n] + loc[n + 1 :]
    return loc


# Pydantic's error kinds → what was expected (the message adds what was given).
_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "string_type": "text",
    "str_type": "text",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
    "ip_any_address": "an IP address",
    "ip_any_network": "a network like 10.0.0.0/24 (no host bits set)",
}
_FIXED = {
    "missing": "required key is missing",
    "union_tag_not_found": "needs a 'type' key",
    "too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _describe(detail: ErrorDetails) -> tuple[Loc, str]:
    loc = _strip_tags(tuple(detail["loc"]))
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    kind, value, ctx = detail["type"], detail.get("input"), detail.get("ctx") or {}
    shown = _show(value)
    if kind in _FIXED:
        return loc, _FIXED[kind]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(tuple(detail["loc"])[:-1])) or "none"
        return loc[:-1], f"unknown key '{loc[-1]}' (allowed: {allowed})"
    if kind == "literal_error" and "roles" in loc:
        return loc, f"{shown} is not a role ({', '.join(ROLES)})"
    if kind == "literal_error":
        return loc, f"{shown} is not allowed (expected {ctx.get('expected')})"
    if kind == "union_tag_invalid":
        return (
            loc,
            f"{_show(ctx.get('tag'))} is not a known type (expected {ctx.get('expected_tags')})",
        )
    if kind == "string_pattern_mismatch":
        meaning = MEANINGS.get(str(ctx.get("pattern")), f"text matching {ctx.get('pattern')}")
        return loc, f"{shown} is not valid: expected {meaning}"
    if kind in _EXPECTED:
        return loc, f"expected {_EXPECTED[kind]}, got {shown}"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return loc, f"must be {words} {ctx.get(key)}, got {shown}"
    if kind == "too_long":
        return loc, f"too many entries (at most {ctx.get('max_length')})"
    if kind == "value_error":
        return loc, str(ctx.get("error", detail["msg"]))
    return loc, detail["msg"]


def _show(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value) if isinstance(value, (int, float, bool)) else type(value).__name__


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys a model accepts at `loc`, walking the model classes the way pydantic did."""
    current: Any = Cluster
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _model_in(current)
    return list(model.model_fields) if model else []


def _step(annotation: Any, part: str | int) -> Any:
    for member in typing.get_args(annotation):  # a tagged union member, named by its tag
        extras = (
            typing.get_args(member)[1:] if typing.get_origin(member) is typing.Annotated else ()
        )
        if any(isinstance(extra, Tag) and extra.tag == part for extra in extras):
            return typing.get_args(member)[0]
    model = _model_in(annotation)
    if model is not None and isinstance(part, str) and part in model.model_fields:
        return model.model_fields[part].annotation
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin in (tuple, list):
        return typing.get_args(annotation)[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
