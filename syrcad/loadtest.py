"""`syrcad loadtest`: the Locust command line for a cluster, built as data (run by the CLI)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from syrcad.config.model import Cluster
from syrcad.plan.placement import Placement, address_literal
from syrcad.render.templates import data_root


@dataclass(frozen=True)
class LoadOptions:
    headless: bool = False
    users: int = 20
    spawn_rate: float = 5
    run_time: str = "1m"
    out: Path = Path("loadtest-results")
    max_fail_ratio: float = 0.01
    max_p95_ms: float = 0
    web_port: int = 8089
    # With bots: the languages the users speak in turn (routed by metadata.locale), and the
    # path of one bot (/bots/NAME) when the test is for that bot alone.
    languages: tuple[str, ...] = ("en",)
    path_prefix: str = ""


def bot_traffic(cluster: Cluster, bot: str | None) -> tuple[tuple[str, ...], str]:
    """(languages, path prefix) of a load test of `bot`, or of every bot mixed by language."""

    def language(name: str) -> str:
        locales = cluster.bots[name].routes.locales
        return locales[0].replace("_", "-").split("-")[0] if locales else "en"

    if bot:
        return (language(bot),), f"/bots/{bot}"
    return tuple(dict.fromkeys(language(name) for name in cluster.bots)) or ("en",), ""


def public_url(cluster: Cluster, placement: Placement) -> str:
    """The chatbot's entry point: the LB hosts' virtual address, else the first LB host's."""
    port = placement.of("lb")[0].port("http").host_port
    return f"http://{address_literal(cluster.public_address())}:{port}"


def locust_argv(url: str, options: LoadOptions) -> list[str]:
    """The locust command for `url`.

    >>> locust_argv("http://10.0.0.1:80", LoadOptions(headless=True))[-6:]
    ['--languages', 'en', '--max-fail-ratio', '0.01', '--max-p95-ms', '0']
    """
    locustfile = data_root() / "loadtest" / "locustfile.py"
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", url]
    if options.headless:
        prefix = options.out / "locust"
        argv += [
            "--headless",
            "--users",
            str(options.users),
            "--spawn-rate",
            str(options.spawn_rate),
            "--run-time",
            options.run_time,
            "--csv",
            str(prefix),
            "--html",
            f"{prefix}.html",
            "--only-summary",
        ]
    else:
        argv += [
            "--web-port",
            str(options.web_port),
            "--users",
            str(options.users),
            "--spawn-rate",
            str(options.spawn_rate),
        ]
    return [
        *argv,
        "--languages",
        ",".join(options.languages),
        *(["--path-prefix", options.path_prefix] if options.path_prefix else []),
        "--max-fail-ratio",
        str(options.max_fail_ratio),
        "--max-p95-ms",
        str(options.max_p95_ms),
    ]
