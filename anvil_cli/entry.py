"""The `anvil` console script: starts the worker fork server early for `anvil run`, then the CLI."""

from __future__ import annotations

import gc
import sys


def main() -> None:
    from anvil_cli.config.vault import hand_over, set_not_dumpable

    hand_over()  # secrets leave the environment first: every child below starts without them
    set_not_dumpable()
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and not {"--help", "-h"} & set(argv):
        from anvil_cli.engine.process.forkserver import for_one_run, worker_context

        worker_context()  # its SDK import (~1 s) overlaps with the CLI's own start-up
        for_one_run()  # and it goes once the workers are up
    # The CLI's imports make objects that live as long as the process (modules, classes, the
    # settings' models): the collector, run every 700 allocations, walked them all several
    # times while they loaded (~30 ms of CPU). None while they load, then out of its sight.
    gc.disable()
    try:
        from anvil_cli.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()
