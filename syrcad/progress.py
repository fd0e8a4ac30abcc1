"""Rich drawing of what the operations report: a line per host, a bar per stage waited on."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from syrcad.apply.deployment import Reporter


class RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
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

    def _task(self, key: str, description: str) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(
                description, total=None, figures="", pending=""
            )
        return self.tasks[key]

    def step(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def waiting(self, stage: str, ready: int, total: int, pending: Sequence[str]) -> None:
        shown = ", ".join(pending[:4]) + (" …" if len(pending) > 4 else "")
        task = self._task(f"stage {stage}", f"ready: {stage}")
        self.progress.update(
            task, completed=ready, total=total, figures=f"{ready}/{total}", pending=shown
        )

    def done_waiting(self, stage: str) -> None:
        self.progress.update(self._task(f"stage {stage}", f"ready: {stage}"), pending="")

    def host(self, host: str, message: str, finished: bool = False) -> None:
        task = self._task(f"host {host}", host)
        self.progress.update(
            task,
            description=f"{host}: {message}",
            total=1 if finished else None,
            completed=1 if finished else 0,
            figures="",
        )

    def transfer(self, host: str, what: str, sent: int, total: int) -> None:
        task = self._task(f"host {host}", host)
        self.progress.update(
            task,
            description=f"{host}: {what}",
            completed=sent,
            total=total,
            figures=f"{decimal(sent)}/{decimal(total)}",
        )
