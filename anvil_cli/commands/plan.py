"""`anvil plan`: what a batch will cost and how long it will take, before spending anything."""

from __future__ import annotations

import inspect
import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    err_console,
    out_console,
    set_in,
    settings_from,
)
from anvil_cli.config.endpoint import Endpoint, resolve_endpoints
from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import EXIT_CODES_HELP, ExitCode
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.forecast import ModelFit, fit_models
from anvil_cli.policy.routing import model_for

# The planner's modules (anvil_cli/plan, ~12 ms) are imported where `anvil plan` uses them: every
# other command, `anvil run` included, starts without them.
if TYPE_CHECKING:
    from anvil_cli.plan.autosample import AutoSample
    from anvil_cli.plan.estimate import Plan, TokenCounter
    from anvil_cli.plan.sample import SampleOutcome

SIM_KEY = "sk-ant-simulated-local-key"
PROBE_TIMEOUT_S = 10.0
MAX_SAMPLE = 1000
DEFAULT_SAMPLE_USD = 1.0
DEFAULT_PRECISION = 0.10
AUTO = -1  # `--sample auto`


def plan_command(
    batch: Path = typer.Argument(
        ..., metavar="BATCH", help="Batch file: YAML, templated YAML, or JSONL.", show_default=False
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        metavar="DIR",
        help="Where the journal lives (default .anvil): earlier runs' answers, and --sample's run.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout."),
    simulate: bool = typer.Option(
        False, "--simulate", help="Plan for `anvil run --simulate`: count tokens with the embedded simulator."
    ),
    sample: str = typer.Option(
        "0",
        "--sample",
        metavar="N|auto",
        help="Run N jobs chosen to cover the batch (per model, across prompt lengths) for real, and"
        " fit the forecast to their answers. Journaled and cached: the batch's run does not pay"
        " for them again. `auto`: sample in rounds until the cost's p10-p90 half-width is within"
        " --precision of its middle (or --sample-max-usd is spent), and say what more would take.",
        show_default=False,
    ),
    precision: float | None = typer.Option(
        None,
        "--precision",
        metavar="SHARE",
        help=f"With --sample auto: the p10-p90 half-width of the cost to reach, as a share of its"
        f" middle, over 0 and under 1 (default {DEFAULT_PRECISION}).",
        show_default=False,
    ),
    sample_max_usd: float = typer.Option(
        DEFAULT_SAMPLE_USD, "--sample-max-usd", min=0.0, metavar="USD", help="The most the sample may spend."
    ),
    allow_tools: bool = typer.Option(
        False,
        "--allow-tools",
        help="Let --sample run the batch's tool commands (`anvil_command`). Without it a tool job is"
        " sampled for its first answer only and no command runs: a CI gate may plan an untrusted change.",
    ),
    max_usd: float | None = typer.Option(
        None,
        "--max-usd",
        min=0.0,
        metavar="USD",
        help="Exit 3 if the p90 of the forecast cost passes this (a CI gate, before the batch spends).",
    ),
) -> None:
    """Forecast a batch before running it: tokens per model, cost and duration.

    Cost and duration come with a p10-p90 range at the configured limits (naming
    the binding limit and the concurrency needed to reach it). Output lengths come from
    answers seen before: a sample run (`--sample N`; `--sample auto` samples in rounds until the
    cost's p10-p90 is within --precision of its middle, and says what more would take), else
    earlier runs of the same models in the state dir, else the `plan:` settings (a share of
    `max_tokens`); the plan says which.
    Without --sample it sends nothing billable: input tokens are counted with `count_tokens`
    when an API is reachable (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN, at provider.base_url,
    else ANTHROPIC_BASE_URL), else estimated locally."""
    from anvil_cli.plan.autosample import auto_lines
    from anvil_cli.plan.render import render

    size = _sample_size(sample)
    target = _precision(precision, size)
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    auto: AutoSample | None = None
    outcome: SampleOutcome | None
    with domain_errors():
        settings = settings_from(config, overrides)
        jobs = load_batch(batch, extra_models=list(settings.prices))
        if size == AUTO:
            opts = (simulate, sample_max_usd, allow_tools)
            outcome, plan, auto = _plan_auto(settings, batch, list(jobs), target, *opts)
        else:
            outcome, plan = _plan(settings, batch, jobs, size, simulate, sample_max_usd, allow_tools)
    if json_out:
        sys.stdout.write(json.dumps(plan.as_dict(), indent=2) + "\n")
    else:
        console = out_console()
        closing: list[str] = []
        if auto is not None and outcome is not None:
            closing = auto_lines(outcome, auto)
        elif outcome is not None:
            closing = [
                f"sample: {outcome.jobs} job(s) run for ${outcome.spent_usd:.4f}"
                f" (cap ${outcome.cap_usd:.2f}); their answers are cached for the batch's run"
            ]
        for line in [*render(plan), *closing]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    p90 = plan.cost_range_usd.get("p90", plan.worst_usd)
    if max_usd is not None and p90 > max_usd:
        err_console().print(
            f"the forecast's p90 cost ${p90:.4f} passes --max-usd ${max_usd:.4f}: not running it",
            markup=False,
        )
        raise typer.Exit(int(ExitCode.STOPPED))
    if auto is not None and auto.stopped_early:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _sample_size(text: str) -> int:
    """`--sample`'s value: a number of jobs, or AUTO."""
    if text.strip().lower() == "auto":
        return AUTO
    try:
        size = int(text)
    except ValueError:
        size = -1
    if not 0 <= size <= MAX_SAMPLE:
        raise typer.BadParameter(
            f"{text!r} is neither a number of jobs (0 to {MAX_SAMPLE}) nor 'auto'", param_hint="'--sample'"
        )
    return size


def _precision(value: float | None, size: int) -> float:
    """`--precision`'s value (with --sample auto only), over 0 and under 1."""
    if value is None:
        return DEFAULT_PRECISION
    if size != AUTO:
        raise typer.BadParameter("needs --sample auto", param_hint="'--precision'")
    if not 0 < value < 1:
        raise typer.BadParameter(
            f"{value:g} is not a share over 0 and under 1 (0.10: within 10% of the middle)",
            param_hint="'--precision'",
        )
    return value


def _plan(
    settings: Settings,
    batch: Path,
    jobs: Iterator[Job],
    sample: int,
    simulate: bool,
    sample_max_usd: float,
    allow_tools: bool,
) -> tuple[SampleOutcome | None, Plan]:
    """The plan, after a sample of `sample` jobs (0: none)."""
    from anvil_cli.plan.estimate import make_plan, output_model
    from anvil_cli.plan.sample import choose, run_sample

    outcome = None
    if sample:
        listed = list(jobs)
        chosen = choose(listed, sample, settings)
        err_console().print(f"sampling {len(chosen)} job(s), at most ${sample_max_usd:.2f} ...", markup=False)
        outcome = run_sample(
            settings, batch, chosen, simulate=simulate, max_usd=sample_max_usd, allow_tools=allow_tools
        )
        jobs = iter(listed)
    fits, fit_note = _fits(settings, outcome)
    with ExitStack() as stack:
        first = next(jobs, None)
        counter, note = _counter(settings, simulate, stack, first)
        all_jobs = itertools.chain([first] if first is not None else [], jobs)
        reasks, grades = (outcome.reasks, outcome.grades) if outcome else (None, None)
        plan = make_plan(all_jobs, settings, counter, output_model(settings, simulate), fits, reasks, grades)
        plan.notes += [note, *([fit_note] if fit_note else []), *(outcome.notes if outcome else [])]
        plan.sample = outcome.as_dict() if outcome else None
    return outcome, plan


def _plan_auto(
    settings: Settings,
    batch: Path,
    jobs: list[Job],
    target: float,
    simulate: bool,
    sample_max_usd: float,
    allow_tools: bool,
) -> tuple[SampleOutcome, Plan, AutoSample]:
    """`--sample auto`: sample in rounds (plan/autosample.py), each round's plan made from all
    the answers so far, input tokens counted once."""
    from anvil_cli.plan.autosample import sample_auto
    from anvil_cli.plan.estimate import make_plan, output_model

    with ExitStack() as stack:
        counter, note = _counter(settings, simulate, stack, jobs[0] if jobs else None)
        counted = _remembered(counter) if counter is not None else None
        fit_notes: list[str] = []

        def plan_of(outcome: SampleOutcome) -> Plan:
            fits, fit_note = _fits(settings, outcome)
            fit_notes[:] = [fit_note] if fit_note else []
            out = output_model(settings, simulate)
            reasks, grades, answered = outcome.reasks, outcome.grades, outcome.answered
            return make_plan(jobs, settings, counted, out, fits, reasks, grades, answered)

        def say(line: str) -> None:
            err_console().print(line, markup=False, highlight=False, soft_wrap=True)

        with SignalState() as signals:
            outcome, plan, auto = sample_auto(
                settings,
                batch,
                jobs,
                target=target,
                cap_usd=sample_max_usd,
                simulate=simulate,
                allow_tools=allow_tools,
                plan_of=plan_of,
                say=say,
                signals=signals,
            )
    plan.notes += [note, *fit_notes, *outcome.notes]
    plan.sample = {**outcome.as_dict(), **auto.as_dict()}
    return outcome, plan, auto


def _remembered(counter: TokenCounter) -> TokenCounter:
    """`counter`, asked once per distinct request (each round's plan counts the same batch)."""
    seen: dict[str, int] = {}

    def count(request: dict[str, Any]) -> int:
        key = json.dumps(request, sort_keys=True, default=str)
        if key not in seen:
            seen[key] = counter(request)
        return seen[key]

    return count


def _fits(settings: Settings, outcome: SampleOutcome | None) -> tuple[dict[str, ModelFit], str | None]:
    """Output fits from the sample's answers, then (for other models) earlier runs' answers."""
    from anvil_cli.engine.journal.history import history_answers

    fits: dict[str, ModelFit] = {}
    if outcome is not None:
        fits = fit_models(outcome.answers, "sample")
    journal = Journal.open_existing(settings.state_dir)
    if journal is None:
        return fits, None
    with journal:
        earlier = [a for a in history_answers(journal) if a.model not in fits]
    history = fit_models(earlier, "history")
    if not history:
        return fits, None
    models = ", ".join(f"{m} ({f.answers})" for m, f in sorted(history.items()))
    return {**history, **fits}, f"output lengths of earlier runs used for: {models}"


def _counter(
    settings: Settings, simulate: bool, stack: ExitStack, first: Any
) -> tuple[TokenCounter | None, str]:
    """A `count_tokens` counter when an API answers a probe, else None (local estimate)."""
    import anthropic

    from anvil_cli.plan.estimate import api_counter

    if simulate:
        from anvil_cli.sim import SimServer
        from anvil_cli.sim.embedded import embedded_config

        server = stack.enter_context(SimServer(embedded_config(settings)).start_thread())
        endpoint = Endpoint(server.base_url, "the embedded simulator", api_key=SIM_KEY)
    else:
        try:  # the same resolution as `anvil run` (anvil_cli/config/endpoint.py)
            endpoints = resolve_endpoints(settings, environ_with_secrets())
        except UsageError as exc:
            return None, f"input tokens estimated locally: {exc}"
        found = next((e for e in endpoints if e.provider == "anthropic"), None)
        if found is None:  # count_tokens is the Anthropic API's (Bedrock's client raises)
            return None, "input tokens estimated locally: no provider: anthropic endpoint to count them"
        endpoint = found
    client = anthropic.Anthropic(**endpoint.client_kwargs(), max_retries=1, timeout=PROBE_TIMEOUT_S)
    stack.callback(client.close)
    counter = api_counter(client)
    if first is None:
        return counter, "empty batch"
    try:
        counter(first.request(model_for(first, settings.routing)))
    except anthropic.APIError as exc:
        return None, f"input tokens estimated locally: count_tokens failed ({type(exc).__name__})"
    where = "the embedded simulator" if simulate else endpoint.describe()
    return counter, f"input tokens counted with count_tokens at {where}"


def register(app: typer.Typer) -> None:
    """Add `anvil plan` to the app."""
    app.command(
        "plan",
        help=inspect.cleandoc(plan_command.__doc__ or "") + "\n\n" + EXIT_CODES_HELP,
        short_help="Forecast a batch's tokens, cost and duration before running it.",
    )(plan_command)
