"""Python's cyclic garbage collector, set for a long-lived process of many small short-lived
objects (the conductor's loop, a worker's agents).

With the defaults a collection runs every 700 allocations and, now and then, walks every object
alive: the SDK's thousands of classes and modules included. In benchmark 5 that was ~30% of a
worker's CPU. `for_the_run()` moves what exists once the process is set up (imports, clients,
settings) out of the collector's sight (`gc.freeze`: a forked worker then also leaves the
pages it shares with the fork server unwritten) and collects the young objects every 10,000
allocations instead. Reference counting still frees almost everything at once; cycles wait for
a collection. The oldest generation is still collected every `MIDDLE * OLD` young collections
(~4,000 jobs of benchmark 5), so the cycles it holds are bounded by a few times what the calls
in flight hold, whatever the length of the run; a full collection walks only what is not frozen.
`restore()` puts things back for a caller that goes on (a test, the CLI's own process).
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG: Final = 10_000  # allocations between collections of the youngest generation
MIDDLE: Final = 10  # young collections per middle one
OLD: Final = 5  # middle collections per old one (and only while a quarter of the old is new)


def for_the_run() -> tuple[int, int, int]:
    """Freeze what exists, collect less often; returns the thresholds to `restore`."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
    return before


def restore(before: tuple[int, int, int]) -> None:
    gc.set_threshold(*before)
    gc.unfreeze()
