"""Conduct one run to its end: the conductor over workers and a governor, or in batches mode the
Message Batches API. Either way it is handed the same run (`RunContext`: its ticker, control,
signals and metrics) and returns how it ended (`RunEnd`). Where the workers and the governor
live is the one variable (`workers.py`: local processes; `ray_run.py`: Ray actors)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from anvil_cli.engine.conductor.core import Conductor
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.worker import trace_setup
from anvil_cli.session.context import RunContext
from anvil_cli.session.workers import Workers, local_workers


def conduct(run: RunContext) -> RunEnd:
    """Run the pending jobs until they are done or the run must stop; how it ended."""
    if run.opts.mode == "batches" or run.journal.batches(run.run_id, ("intent", "submitted")):
        with trace_setup.run_span(run.run_id, run.opts.batch.name):  # its batches' spans are in it
            return _batches(run)
    with trace_setup.run_span(run.run_id, run.opts.batch.name), _workers(run) as workers:
        conductor = Conductor(
            run.settings,
            run.journal,
            run.run_id,
            workers.backend,
            workers.governor,
            run.signals,
            run.metrics,
            run.ticker,
            run.control,
            workers.host,
            endpoint=run.endpoint,
        )
        return conductor.run()


def _workers(run: RunContext) -> AbstractContextManager[Workers]:
    """The run's workers and governor where `run.backend` says, stopped when the `with` ends."""
    if run.settings.run.backend == "ray":
        from anvil_cli.session.ray_run import ray_workers  # Ray is imported only by those who use it

        return ray_workers(run)
    return local_workers(run)


def _batches(run: RunContext) -> RunEnd:
    """`--mode batches`: the Message Batches API instead of workers (engine/modes/batches/mode.py),
    through the same ticker (views, `anvil status`, GET /status) and control as the conductor."""
    import anthropic

    from anvil_cli.engine.modes.batches.endpoint import batches_endpoint
    from anvil_cli.engine.modes.batches.mode import BatchesContext, run_batches

    endpoint, left_out = batches_endpoint(run.endpoints)  # the first Anthropic API endpoint
    client = anthropic.Anthropic(**endpoint.client_kwargs(), timeout=run.settings.provider.timeout_s)
    say = run.ticker.monitor.note
    if left_out:
        say(left_out)
    with client:
        context = BatchesContext(
            run.settings,
            run.journal,
            run.run_id,
            client,
            run.metrics,
            run.signals,
            run.ticker,
            run.control,
            say,
            endpoint=endpoint.name,
        )
        return run_batches(context)
