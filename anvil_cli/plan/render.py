"""`anvil plan` as plain lines: per model, cost, pools, endpoints (with `endpoints:`), duration."""

from __future__ import annotations

from anvil_cli.plan.checks import render as render_checks
from anvil_cli.plan.endpoints import render as render_endpoints
from anvil_cli.plan.estimate import Plan
from anvil_cli.policy.pricing.table import builtin_prices

OUTPUT_SOURCES = {
    "sample": "fitted to the sample's answers",
    "history": "fitted to answers of earlier runs in this state dir",
    "simulator": "as the embedded simulator draws it",
    "rule": "assumed",
}


def render(plan: Plan) -> list[str]:
    """The plan as plain lines."""
    source = "exact, from count_tokens" if plan.token_source == "count_tokens" else "local estimate"
    lines = [f"{plan.jobs:,} job(s); input tokens: {source}"]
    for m in plan.models:
        how = m.output_fit if m.output_fit else plan.output_assumption
        lines.append(
            f"  {m.model}: {m.jobs:,} job(s), {m.input_tokens:,} input tokens,"
            f" ~{m.expected_output_tokens:,.0f} output tokens (at most {m.max_output_tokens:,});"
            f" expected ${m.expected_usd:.4f}, worst case ${m.worst_usd:.4f}"
        )
        lines.append(f"    output {OUTPUT_SOURCES.get(m.output_source, m.output_source)}: {how}")
    lines.extend(render_checks(plan.checks))
    c = plan.cost_range_usd
    checked = (
        f" (incl. checks ${plan.checks['expected_usd']:.4f}; worst case ${plan.checks['worst_usd']:.4f})"
        if plan.checks
        else ""
    )
    lines.append(
        f"cost: expected ${plan.expected_usd:.4f}{checked} (p10 ${c['p10']:.4f} - p90 ${c['p90']:.4f}),"
        f" worst case ${plan.worst_usd:.4f} (prices as read on {builtin_prices().read_on};"
        " `prices:` in anvil.yaml overrides them)"
    )
    if "rule" in plan.method.split("+"):
        lines.append(
            "  the range is wide: no answers observed yet (`anvil plan --sample 20` runs a few"
            " jobs to fit it, or an earlier run of these models in this state dir)"
        )
    for p in plan.pools:
        limits = ", ".join(f"{k} {v:.1f}s" for k, v in p.seconds_by_limit.items())
        lines.append(
            f"  pool {p.pool}: {p.requests:,} request(s); needs {limits}; binding: {p.binding_limit};"
            f" concurrency needed ~{p.concurrency_needed:g}"
        )
    lines.extend(render_endpoints(plan.endpoints or []))
    d = plan.duration_range_s
    lines.append(
        f"duration: ~{plan.duration_s:.1f}s (p10 {d['p10']:.1f}s - p90 {d['p90']:.1f}s)"
        f" with {plan.agents} agent(s) at ~{plan.assumed_latency_s:g}s"
        f" per call; binding limit: {plan.binding_limit}"
        + (f" ({plan.binding_pool})" if plan.binding_pool else "")
        + f"; concurrency needed ~{plan.concurrency_needed:g}"
    )
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
