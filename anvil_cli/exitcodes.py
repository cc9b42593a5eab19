"""Exit codes shared by every command."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What a process exit status means to a caller (CI, scripts)."""

    OK = 0  # every job succeeded
    JOBS_FAILED = 1  # the run finished, but some jobs failed permanently
    BAD_INPUT = 2  # bad input or usage: nothing was run
    STOPPED = 3  # stopped early (budget, auth, spend cap): resumable
    INTERRUPTED = 130  # interrupted by Ctrl-C / SIGTERM: resumable


EXIT_CODES_HELP = (
    "Exit codes: 0 all jobs succeeded; 1 finished but some jobs failed; "
    "2 bad input or usage (nothing was run); 3 stopped early on the budget or a "
    "limit that retrying cannot fix (resumable); 130 interrupted (resumable)."
)
