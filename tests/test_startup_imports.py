"""What `anvil run`'s conductor and the governor's Manager import at start-up (issue 24, leaner).

Each is a fresh interpreter (`python -c`) that imports what the process imports before it does
any work, and reports its `sys.modules`: the modules only some commands or some runs need are
not among them (they are imported where they are used). Structural, not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The modules `anvil run`'s conductor imports before the run starts: the CLI (every command's
# options), the run command and the session it drives.
CONDUCTOR_IMPORTS = ("anvil_cli.cli", "anvil_cli.commands.run", "anvil_cli.session.runner")

# What the conductor starts without: each is imported by the command, or the run, that needs it.
NOT_IN_CONDUCTOR = (
    "jsonschema",  # output schemas: only a batch that has some (jobs/schemaspec, policy/checks/schema)
    "anthropic",  # the SDK: the workers' and `anvil plan`'s, never the conductor's
    "opentelemetry",  # tracing: the workers', when configured
    "anvil_cli.plan.autosample",  # `anvil plan` (commands/plan.py)
    "anvil_cli.plan.estimate",
    "anvil_cli.plan.sample",
    "anvil_cli.plan.render",
    "anvil_cli.engine.journal.history",
    "anvil_cli.engine.ledger.store",  # `anvil status --budgets` (commands/status.py)
    "anvil_cli.snapshot.budgets",
    "anvil_cli.views.compare.render_html",  # `anvil compare` (commands/compare.py)
    "anvil_cli.views.compare.render_text",
)

# The module the spawned Manager process imports (to unpickle its server) and what it does without.
MANAGER_IMPORTS = ("anvil_cli.engine.governor_host.manager",)
NOT_IN_MANAGER = (
    "pydantic",  # the settings' schema: the Manager is sent a plain `GovernorSpec` (spec.py)
    "anvil_cli.config.settings",
    "yaml",  # the price table's reader: the governor needs `model_class`, not the prices
    "anvil_cli.policy.pricing.pricer",  # only for routing.endpoint_order: cheapest
    "anvil_cli.engine.process.forkserver",  # the conductor starts the Manager; it starts nothing
    "email.utils",  # an HTTP-date retry-after: the workers' (policy/governor/backoff.py)
    "jsonschema",
    "anthropic",
    "typer",
    "rich",
)


def _modules_after(imports: tuple[str, ...]) -> set[str]:
    code = "; ".join(
        ["import json, sys", *(f"import {m}" for m in imports), "print(json.dumps(sorted(sys.modules)))"]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("imports", "absent"),
    [(CONDUCTOR_IMPORTS, NOT_IN_CONDUCTOR), (MANAGER_IMPORTS, NOT_IN_MANAGER)],
    ids=["conductor", "manager"],
)
def test_start_up_leaves_out_what_it_does_not_need(imports: tuple[str, ...], absent: tuple[str, ...]) -> None:
    modules = _modules_after(imports)
    assert set(imports) <= modules  # the imports did run
    loaded = sorted(m for m in absent if m in modules)
    assert loaded == [], f"imported at start-up by {', '.join(imports)}: {', '.join(loaded)}"
