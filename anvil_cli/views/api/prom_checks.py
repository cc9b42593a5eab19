"""`GET /metrics` of a run whose answers are checked (output schemas, checks): the status's
`checks` (`anvil_cli.snapshot.checks.ChecksSummary.to_json()`, the journal's figures over the
whole run) as Prometheus series; none without checks, so other runs' metrics are unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def checks_metrics(checks: Mapping[str, Any] | None) -> Iterator[Metric]:
    """anvil_checks_total{check,result}, anvil_checks_pass_rate{model,variant} (the run's when
    both are empty), anvil_reasks_total, anvil_judge_cost_usd_total."""
    if not checks:
        return
    results = CounterMetricFamily(
        "anvil_checks",
        "Checks of finished jobs' answers, whole run, by check and result.",
        labels=["check", "result"],
    )
    for name, stats in sorted((checks.get("per_check") or {}).items()):
        passed, total = int(stats["passed"]), int(stats["total"])
        results.add_metric([name, "pass"], float(passed))
        results.add_metric([name, "fail"], float(total - passed))
    yield results
    rate = GaugeMetricFamily(
        "anvil_checks_pass_rate",
        "Checked jobs whose every check passed (0-1): by model, by variant; the run's with neither.",
        labels=["model", "variant"],
    )
    if checks.get("pass_rate") is not None:
        rate.add_metric(["", ""], float(checks["pass_rate"]))
    for model, group in sorted((checks.get("by_model") or {}).items()):
        if group.get("pass_rate") is not None:
            rate.add_metric([model, ""], float(group["pass_rate"]))
    for variant, group in sorted((checks.get("by_variant") or {}).items()):
        if group.get("pass_rate") is not None:
            rate.add_metric(["", variant], float(group["pass_rate"]))
    yield rate
    yield CounterMetricFamily(
        "anvil_reasks",
        "Answers asked again for not matching their output schema, whole run.",
        value=float(checks.get("reasks") or 0),
    )
    yield CounterMetricFamily(
        "anvil_judge_cost_usd",
        "What the judges' calls cost, whole run (USD; in the run's cost too).",
        value=float(checks.get("judge_cost_usd") or 0.0),
    )
