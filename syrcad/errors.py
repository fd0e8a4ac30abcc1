"""The one exception family. `syrcad.cli` turns each into an exit code, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SyrcadError(Exception):
    """Base of every error syrcad reports to a user. Its text is the whole message."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located by its key path."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(SyrcadError):
    """hosts.yml (or a file it names) is invalid. Nothing was written or run."""

    exit_code = 2

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class UsageError(SyrcadError):
    """A command's arguments are wrong (like `frontend=abc`). Nothing was touched."""

    exit_code = 2


class PreflightError(SyrcadError):
    """What a plan needs is missing on a host (a model, an image, a free port). Nothing was
    touched."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("nothing was changed:\n" + "\n".join(self.problems))


class RenderError(SyrcadError):
    """A template failed to render; the message names the template and line."""

    exit_code = 3


class RemoteError(SyrcadError):
    """A command on a host failed. Carries what was run and what it answered."""

    exit_code = 4

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        step: str = "",
        hint: str = "",
    ) -> None:
        self.host = host
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.step = step
        self.hint = hint
        lines = [
            f"{host}: {step or 'command'} failed" + (f" (exit {returncode})" if returncode else "")
        ]
        detail = (stderr or stdout).strip()
        if detail:
            lines.append(detail[-2000:])
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class HostsFailed(SyrcadError):
    """Several hosts failed in one parallel step; each error names its host and step. The exit
    code is theirs when they agree (every host lacks an image), else a remote error's."""

    exit_code = 4

    def __init__(self, failures: Sequence[SyrcadError]) -> None:
        self.failures = tuple(failures)
        codes = {f.exit_code for f in self.failures}
        self.exit_code = codes.pop() if len(codes) == 1 else RemoteError.exit_code
        super().__init__(
            f"{len(failures)} hosts failed:\n" + "\n".join(str(f) for f in self.failures)
        )


class StepFailed(SyrcadError):
    """A step of a plan failed; its cause names the host and what it answered. Carries the
    cause's exit code."""

    def __init__(self, command: str, step: str, cause: SyrcadError, undone: Sequence[str]) -> None:
        self.cause = cause
        self.exit_code = cause.exit_code
        then = f"\n{command} stopped; then: {'; '.join(undone)}" if undone else ""
        super().__init__(f"{command}: step '{step}' failed:\n{cause}{then}")


class LockHeld(SyrcadError):
    """Another syrcad run holds the cluster's deploy lock."""

    exit_code = 5
