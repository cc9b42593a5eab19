"""`anvil plan`: what a batch will cost and how long it will take, before spending anything."""

from __future__ import annotations

import itertools
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from anvil_cli.batch.loader import load_batch
from anvil_cli.commands.common import CONFIG_HELP, domain_errors, out_console, settings_from
from anvil_cli.config import Settings
from anvil_cli.exitcodes import EXIT_CODES_HELP
from anvil_cli.plan import TokenCounter, api_counter, make_plan, output_model, render
from anvil_cli.routing import model_for

SIM_KEY = "sk-ant-simulated-local-key"
PROBE_TIMEOUT_S = 10.0


def plan_command(
    batch: Path = typer.Argument(..., help="Batch file: YAML, templated YAML, or JSONL.", show_default=False),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout."),
    simulate: bool = typer.Option(
        False, "--simulate", help="Plan for `anvil run --simulate`: count tokens with the embedded simulator."
    ),
) -> None:
    """Tokens per model, expected and worst-case cost, and expected duration at the configured
    limits (naming the binding limit and the concurrency needed to reach it). Sends nothing
    billable: input tokens are counted with `count_tokens` when an API is reachable
    (ANTHROPIC_API_KEY + provider.base_url / ANTHROPIC_BASE_URL), else estimated locally."""
    with domain_errors():
        settings = settings_from(config, {})
        jobs = load_batch(batch, extra_models=list(settings.prices))
        with ExitStack() as stack:
            first = next(jobs, None)
            counter, note = _counter(settings, simulate, stack, first)
            all_jobs = itertools.chain([first] if first is not None else [], jobs)
            plan = make_plan(all_jobs, settings, counter, output_model(settings, simulate))
            plan.notes.append(note)
    if json_out:
        sys.stdout.write(json.dumps(plan.as_dict(), indent=2) + "\n")
    else:
        console = out_console()
        for line in render(plan):
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def _counter(
    settings: Settings, simulate: bool, stack: ExitStack, first: Any
) -> tuple[TokenCounter | None, str]:
    """A `count_tokens` counter when an API answers a probe, else None (local estimate)."""
    import anthropic

    if simulate:
        from anvil_cli.sim import SimServer
        from anvil_cli.sim.embedded import embedded_config

        server = stack.enter_context(SimServer(embedded_config(settings)).start_thread())
        base_url: str | None = server.base_url
        key: str | None = SIM_KEY
    else:
        base_url = settings.provider.base_url or os.environ.get("ANTHROPIC_BASE_URL")
        key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        return None, "input tokens estimated locally: ANTHROPIC_API_KEY is not set"
    client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=1, timeout=PROBE_TIMEOUT_S)
    stack.callback(client.close)
    counter = api_counter(client)
    if first is None:
        return counter, "empty batch"
    try:
        counter(first.request(model_for(first, settings.routing)))
    except anthropic.APIError as exc:
        return None, f"input tokens estimated locally: count_tokens failed ({type(exc).__name__})"
    where = "the embedded simulator" if simulate else (base_url or "api.anthropic.com")
    return counter, f"input tokens counted with count_tokens at {where}"


def register(app: typer.Typer) -> None:
    """Add `anvil plan` to the app."""
    app.command("plan", help=(plan_command.__doc__ or "") + "\n\n" + EXIT_CODES_HELP)(plan_command)
