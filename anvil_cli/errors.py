"""Anvil's error tree: one root, each error carries its data."""

from __future__ import annotations

from dataclasses import dataclass

from anvil_cli.exitcodes import ExitCode


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None
    job_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.job_id is not None:
            parts.append(f"job {self.job_id!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join(parts) + ": " + self.message


class AnvilError(Exception):
    """Root of every error Anvil raises on purpose."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class InputError(AnvilError):
    """Raised when a user-supplied file or option is invalid; carries every problem found."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(InputError):
    """Raised when the configuration (file, environment or flags) is invalid."""


class BatchError(InputError):
    """Raised when a batch file cannot be loaded or has invalid jobs."""


class UsageError(AnvilError):
    """Raised when a command is used wrongly (missing run, conflicting flags)."""

    exit_code = ExitCode.BAD_INPUT
