"""The `anvil` console script: starts the worker fork server early for `anvil run`, then the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and not {"--help", "-h"} & set(argv):
        from anvil_cli.engine.forkserver import worker_context

        worker_context()  # its SDK import (~1 s) overlaps with the CLI's own start-up
    from anvil_cli.cli import main as cli_main

    cli_main()
