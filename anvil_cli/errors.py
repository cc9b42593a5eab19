"""Anvil's error tree: one root, each error carries its data."""

from __future__ import annotations

from dataclasses import dataclass

from anvil_cli.exitcodes import ExitCode
from anvil_cli.input_limits import short_repr

# Problems kept in memory (and listed by `validate --json`); the rest are only counted. A file
# of 100,000 duplicate ids must not hold 100,000 messages.
MAX_KEPT_PROBLEMS = 1_000
# Problems printed on the terminal, then "... and N more problems".
MAX_PRINTED_PROBLEMS = 50


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
            parts.append(f"job {short_repr(self.job_id, 80)}")
        if self.field is not None:
            parts.append(f"field {short_repr(self.field, 120)}")
        return ": ".join(parts) + ": " + self.message


class AnvilError(Exception):
    """Root of every error Anvil raises on purpose."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class ProblemLog:
    """Problems in the order found: the first `cap` kept, all of them counted."""

    def __init__(self, cap: int = MAX_KEPT_PROBLEMS) -> None:
        self.kept: list[Problem] = []
        self.total = 0
        self.cap = cap

    def add(self, problem: Problem) -> None:
        self.total += 1
        if len(self.kept) < self.cap:
            self.kept.append(problem)

    def extend(self, problems: list[Problem], total: int | None = None) -> None:
        for problem in problems:
            self.add(problem)
        self.total += max(0, (total or 0) - len(problems))  # counted elsewhere, not kept there

    def __bool__(self) -> bool:
        return self.total > 0


def more_line(shown: int, total: int) -> str | None:
    """'... and N more problems' when `shown` of `total` were listed, else None."""
    rest = total - shown
    return f"... and {rest:,} more problem{'s' if rest != 1 else ''}" if rest > 0 else None


class InputError(AnvilError):
    """Raised when a user-supplied file or option is invalid; carries the problems found (at most
    MAX_KEPT_PROBLEMS of them) and `total`, how many there were."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = problems
        self.total = max(total or 0, len(problems))
        lines = [str(p) for p in problems[:MAX_PRINTED_PROBLEMS]]
        more = more_line(len(lines), self.total)
        super().__init__("\n".join([*lines, more] if more else lines))


class ConfigError(InputError):
    """Raised when the configuration (file, environment or flags) is invalid."""


class BatchError(InputError):
    """Raised when a batch file cannot be loaded or has invalid jobs."""


class UsageError(AnvilError):
    """Raised when a command is used wrongly (missing run, conflicting flags)."""

    exit_code = ExitCode.BAD_INPUT


class UnknownModel(AnvilError):
    """Raised when a request names a model that is not a known model id (e.g. a breaker's)."""


class TooManyJobs(AnvilError):
    """Raised when one request to add jobs carries more than the API takes at once."""


class BacklogFull(AnvilError):
    """Raised when a run already holds as many waiting jobs as it takes."""
