"""The `anvil simulate` command: parse options, build a SimConfig, serve until Ctrl-C."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim.config import (
    DEFAULT_PORT,
    TIERS,
    EndpointSim,
    SharedSim,
    SimConfig,
    check_endpoints,
    with_tier,
)
from anvil_cli.sim.embedded import BATCH_DIR
from anvil_cli.sim.specs import parse_endpoint, parse_shared

EPILOG = (
    "Per-request directives, written anywhere in the system or message text: "
    "@sim{key=value, key=value}. Keys: fail=CODExN[+CODExN] (the first N attempts of this "
    "identical request answer CODE), status=CODE or status=429spend (always answer CODE; the "
    "spend-cap 429 has no retry-after), retry_after=S (for 429s from fail/status, default 1), "
    "drop=N (close the connection on the first N attempts), latency_ms=X, output_tokens=N, "
    "input_tokens=N, tool=NAME (call that offered tool first), stream_error=N (first N streamed "
    "attempts end in an overloaded_error event after the 200), endpoint_off=NAME / endpoint_on=NAME "
    "(turn a simulated endpoint off or back on), invalid=N or invalid=always (answers invalid for "
    "the requested schema until the conversation has N), score=X (every numeric `score` property "
    "of a structured answer), say=TEXT (the exact text of an answer without a schema). "
    "Tiers (RPM/ITPM/OTPM per model class): "
    + ", ".join(f"{name}={t.rpm:,.0f}/{t.itpm:,.0f}/{t.otpm:,.0f}" for name, t in TIERS.items())
    + ". Rate-limit headers and other details: docs/simulator.md."
)


def _with_limits(
    base: SimConfig, tier: str | None, rpm: float | None, itpm: float | None, otpm: float | None
) -> SimConfig:
    """Precedence, per dimension: the explicit --rpm/--itpm/--otpm, then --tier, then unlimited."""
    config = base
    if tier is not None:
        if tier.lower() not in TIERS:
            raise typer.BadParameter(f"unknown tier {tier!r}; known: {', '.join(TIERS)}", param_hint="--tier")
        config = with_tier(config, tier)
    return replace(
        config,
        rpm=rpm if rpm is not None else config.rpm,
        itpm=itpm if itpm is not None else config.itpm,
        otpm=otpm if otpm is not None else config.otpm,
    )


def _endpoints(base: SimConfig, specs: list[str], shared_specs: list[str]) -> SimConfig:
    """`base` with the `--endpoint` and `--shared` options' endpoints and ceilings (each name once)."""
    endpoints: dict[str, EndpointSim] = {}
    shared: dict[str, SharedSim] = {}
    try:
        for spec in specs:
            name, endpoint = parse_endpoint(spec)
            if name in endpoints:
                raise ValueError(f"endpoint {name!r} is given twice")
            endpoints[name] = endpoint
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--endpoint") from None
    try:
        for spec in shared_specs:
            name, ceiling = parse_shared(spec)
            if name in shared:
                raise ValueError(f"shared limit {name!r} is given twice")
            shared[name] = ceiling
        config = replace(base, endpoints=endpoints, shared=shared)
        check_endpoints(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shared") from None
    return config


def simulate(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Interface to listen on."),
    port: int = typer.Option(DEFAULT_PORT, metavar="PORT", help="Port to listen on; 0 picks a free one."),
    tier: str | None = typer.Option(
        None, metavar="|".join(TIERS), help="Published limits of a tier (RPM/ITPM/OTPM: below)."
    ),
    rpm: float | None = typer.Option(
        None, metavar="N", help="Requests per minute per model class (default unlimited)."
    ),
    itpm: float | None = typer.Option(None, metavar="N", help="Input tokens per minute per model class."),
    otpm: float | None = typer.Option(None, metavar="N", help="Output tokens per minute per model class."),
    burst: int | None = typer.Option(
        None, metavar="N", min=1, help="Request bucket capacity (default: 1 s worth)."
    ),
    latency_ms: float = typer.Option(0.0, metavar="MS", min=0, help="Median latency of an answer."),
    latency_spread: float = typer.Option(0.0, metavar="SIGMA", min=0, help="Lognormal sigma of the latency."),
    ms_per_output_token: float = typer.Option(
        0.0, metavar="MS", min=0, help="Extra latency per output token."
    ),
    output_tokens: int = typer.Option(50, metavar="N", min=1, help="Mean output tokens of a text answer."),
    output_tokens_spread: float = typer.Option(
        0.0, metavar="SIGMA", min=0, help="Lognormal sigma of the output tokens."
    ),
    overloaded_rate: float = typer.Option(
        0.0, metavar="SHARE", min=0.0, max=1.0, help="Share of requests answered 529."
    ),
    error_rate: float = typer.Option(
        0.0, metavar="SHARE", min=0.0, max=1.0, help="Share of requests answered 500 api_error."
    ),
    drop_rate: float = typer.Option(
        0.0, metavar="SHARE", min=0.0, max=1.0, help="Share of connections dropped."
    ),
    slow_rate: float = typer.Option(
        0.0, metavar="SHARE", min=0.0, max=1.0, help="Share of answers delayed by --slow-ms."
    ),
    slow_ms: float = typer.Option(0.0, metavar="MS", min=0, help="Extra latency of a slow answer."),
    seed: int = typer.Option(0, metavar="N", help="Seed: the same seed and request give the same answer."),
    invalid_rate: float = typer.Option(
        0.0,
        metavar="SHARE",
        min=0.0,
        max=1.0,
        help="Share of conversations whose first answer is invalid for its requested JSON schema "
        "(chosen by a hash of the first user turn and --seed); re-asks are answered validly.",
    ),
    batch_seconds_per_request: float = typer.Option(
        0.01, metavar="SECONDS", min=0, help="Compressed clock of Message Batches."
    ),
    auth: bool = typer.Option(True, help="Require an x-api-key or Authorization: Bearer header."),
    endpoint: list[str] = typer.Option(
        [],
        "--endpoint",
        metavar="NAME[:KEY=VALUE,...]",
        help="A simulated endpoint served under /e/NAME/ with its own limits (repeatable); keys: "
        "rpm, itpm, otpm, burst, tier, provider (anthropic|bedrock|vertex|foundry: only its "
        "routes), off_after=S (then its connections are dropped), off_for=S (then back on). "
        "E.g. --endpoint org-a:rpm=600,burst=20 --endpoint aws:provider=bedrock,rpm=300,off_after=30",
    ),
    shared: list[str] = typer.Option(
        [],
        "--shared",
        metavar="NAME:endpoints=A+B[,KEY=VALUE,...]",
        help="A ceiling those endpoints draw from as well as from their own limits (repeatable; "
        "keys rpm, itpm, otpm, burst, tier), as keys of one organisation share its limits.",
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        metavar="DIR",
        help=f"Keep Message Batches in DIR/{BATCH_DIR}/ and reload them at start (default: memory only).",
    ),
) -> None:
    """Serve a local stand-in for the Anthropic API, with rate limits, latency and faults."""
    base = SimConfig(
        host=host,
        port=port,
        burst=burst,
        latency_ms=latency_ms,
        latency_spread=latency_spread,
        ms_per_output_token=ms_per_output_token,
        output_tokens=output_tokens,
        output_tokens_spread=output_tokens_spread,
        overloaded_rate=overloaded_rate,
        error_rate=error_rate,
        drop_rate=drop_rate,
        slow_rate=slow_rate,
        slow_ms=slow_ms,
        seed=seed,
        invalid_rate=invalid_rate,
        batch_seconds_per_request=batch_seconds_per_request,
        require_auth=auth,
        batch_dir=str(state_dir / BATCH_DIR) if state_dir is not None else None,
    )
    config = _endpoints(_with_limits(base, tier, rpm, itpm, otpm), endpoint, shared)

    def ready(url: str) -> None:
        typer.echo(f"Simulated Anthropic API at {url}  (export ANTHROPIC_BASE_URL={url})  Ctrl-C stops.")
        for name in config.endpoints:
            typer.echo(f"  endpoint {name}: {url}/e/{name}")

    try:
        from anvil_cli.sim.server import serve_forever  # aiohttp: imported only when serving

        serve_forever(config, on_ready=ready)
    except OSError as exc:
        typer.echo(f"anvil simulate: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
    typer.echo("Simulator stopped.")


def register(app: typer.Typer) -> None:
    """Add `anvil simulate` to the app."""
    app.command(epilog=EPILOG, short_help="Serve a simulated Anthropic API with rate limits and faults.")(
        simulate
    )
