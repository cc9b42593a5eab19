"""Open files: every agent holds a socket, so thousands of agents need a high RLIMIT_NOFILE."""

from __future__ import annotations

import resource
from typing import Final

# Descriptors a process needs besides its agents' sockets (pipes, the journal, logs, tools).
RESERVED_FDS: Final = 256


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def agents_within_fd_limit(agents: int, soft_limit: int) -> int:
    """How many agents one process can carry (each may hold every agent slot)."""
    return max(1, min(agents, soft_limit - RESERVED_FDS))
