"""What `anvil run` gives GitHub Actions when it runs there, read from the environment: the
step summary appended to the file `GITHUB_STEP_SUMMARY` names, and annotations when
`GITHUB_ACTIONS=true`. Elsewhere (no such variables) nothing changes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from anvil_cli.engine.journal.store import Journal
from anvil_cli.views.ci.annotations import workflow_commands
from anvil_cli.views.ci.jobs import ci_jobs
from anvil_cli.views.ci.step_summary import step_summary


def github_outputs(
    journal: Journal, run_id: str, summary: Mapping[str, Any], env: Mapping[str, str], err: TextIO
) -> str | None:
    """Append the step summary and print the annotations (to `err`) as `env` asks; a note
    when the summary file could not be written (the run's outcome does not change)."""
    run = journal.get_run(run_id)
    if run is None:
        return None
    note = None
    target = env.get("GITHUB_STEP_SUMMARY")
    if target:
        text = step_summary(journal, run, summary)
        try:
            fd = os.open(Path(target), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            note = f"GITHUB_STEP_SUMMARY {target}: not written ({exc.strerror or type(exc).__name__})"
    if env.get("GITHUB_ACTIONS") == "true":
        for line in workflow_commands(ci_jobs(journal, run_id), summary):
            err.write(line + "\n")
        err.flush()
    return note
