"""Rich drawing of what the operations report: a progress bar per stage being waited on."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from syrcad.apply.deploy import Reporter


class RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[pending]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def step(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def waiting(self, stage: str, ready: int, total: int, pending: Sequence[str]) -> None:
        shown = ", ".join(pending[:4]) + (" …" if len(pending) > 4 else "")
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(
                f"ready: {stage}", total=total, pending=shown
            )
        self.progress.update(self.tasks[stage], completed=ready, total=total, pending=shown)

    def done_waiting(self, stage: str) -> None:
        if stage in self.tasks:
            self.progress.update(self.tasks[stage], pending="")
