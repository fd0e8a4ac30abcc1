"""The runbook's command blocks (docs/runbook.md), for the test that runs them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
NOT_RUN = "# not run by the tests:"
# Blocks for a cluster with bots: tests/e2e/test_bots.py runs them on its own cluster.
ON_BOTS = "# run on the bots cluster"
_HEADING = re.compile(r"^#{2,3} (.+)$")


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # of the opening fence
    script: str

    @property
    def not_run_because(self) -> str | None:
        first = self.script.splitlines()[0] if self.script else ""
        return first.removeprefix(NOT_RUN).strip() if first.startswith(NOT_RUN) else None

    @property
    def on_bots(self) -> bool:
        return self.script.startswith(ON_BOTS)

    @property
    def name(self) -> str:
        return f"{self.section} (line {self.line})"


def blocks(text: str | None = None) -> list[Block]:
    """Every ```bash block, with the section it stands in."""
    found: list[Block] = []
    section = ""
    opened: int | None = None
    lines: list[str] = []
    source = RUNBOOK.read_text(encoding="utf-8") if text is None else text
    for number, line in enumerate(source.splitlines(), start=1):
        if opened is None:
            if heading := _HEADING.match(line):
                section = heading[1]
            elif line.strip() == "```bash":
                opened, lines = number, []
        elif line.strip() == "```":
            found.append(Block(section, opened, "\n".join(lines)))
            opened = None
        else:
            lines.append(line)
    return found
