"""The Jinja2 environment: StrictUndefined, and errors that name the template and line."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from syrcad.errors import RenderError


def data_root() -> Path:
    """Folder holding compose/, haproxy/ and images/.

    In a wheel they travel inside the package (`syrcad/_data`); in a source checkout they sit at
    the top of the repository, where a reader expects them.
    """
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_data"
    return packaged if packaged.is_dir() else package.parent


def _quote(value: object) -> str:
    """A scalar as a double-quoted string, valid in YAML (JSON is YAML)."""
    return json.dumps(str(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_root())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = _quote
    return env


def render_template(name: str, **context: Any) -> str:
    """Render `name` (e.g. `haproxy/public.cfg.j2`) with `context`.

    >>> render_template("compose/compose.yml.j2", **ctx)  # doctest: +SKIP
    """
    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as error:
        raise RenderError(f"{error.filename or name}:{error.lineno}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise RenderError(f"{name}:{_template_line(error, name)}: {error}") from None


def _template_line(error: BaseException, name: str) -> int | str:
    # Jinja rewrites tracebacks so that template frames carry the template's file and line.
    line: int | str = "?"
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def static(name: str) -> str:
    """A file shipped as it is, from the same folders as the templates."""
    return (data_root() / name).read_text(encoding="utf-8")
