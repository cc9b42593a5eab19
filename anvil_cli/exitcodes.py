"""Exit codes shared by every command.

1 means "finished, but not good enough": some jobs failed permanently, or (`--fail-under`,
`checks.fail_under`) the pass rate of the answers' checks is under the gate. Both are a
finished run whose results need a look, and neither is resumable (2, 3 and 130 keep their
meanings), so the CI gate on checks the issue asks for ("exit 1") shares it; the summary says
which it was."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What a process exit status means to a caller (CI, scripts)."""

    OK = 0  # every job succeeded
    JOBS_FAILED = 1  # the run finished, but some jobs failed permanently
    CHECKS_BELOW = 1  # ... or the pass rate of its checks is under --fail-under (an alias of 1)
    BAD_INPUT = 2  # bad input or usage: nothing was run
    STOPPED = 3  # stopped early (budget, auth, spend cap): resumable
    INTERRUPTED = 130  # interrupted by Ctrl-C / SIGTERM: resumable


EXIT_CODES_HELP = (
    "Exit codes: 0 all jobs succeeded; 1 finished but some jobs failed, or the pass "
    "rate of their checks is under --fail-under; "
    "2 bad input or usage (nothing was run); 3 stopped early on the budget or a "
    "limit that retrying cannot fix (resumable); 130 interrupted (resumable)."
)
