"""Where a run's money went, from the journal: cost by model, by a metadata key of the jobs
(`anvil status RUN --by metadata.team`), the most expensive jobs, and what the result cache,
prompt caching and the Message Batches discount saved against list price.

Costs are the journal's (exact per call); savings are priced from each job's usage with the
same `Pricer` that priced the calls: a cache hit saved what its answer cost when it was paid
for; prompt caching saved the difference between its reads and writes and the same tokens sent
uncached (negative when writes did not pay off); a Batches-mode job saved the discount.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from anvil_cli.engine.journal.store import FAILED, SUCCEEDED, Journal
from anvil_cli.errors import UsageError
from anvil_cli.policy.pricing.pricer import Pricer

TOP_JOBS: Final = 10
BY_KEY: Final = re.compile(r"^(model|metadata(\.[A-Za-z0-9_-]+)+)$")
NONE_VALUE: Final = "(none)"


def check_by(by: str) -> str:
    """`model` or `metadata.KEY[.SUBKEY...]`; a UsageError says what is expected."""
    if not BY_KEY.match(by):
        raise UsageError(
            f"--by {by!r}: expected 'model' or 'metadata.KEY' (KEY: letters, digits, '_' or '-'),"
            " e.g. metadata.team"
        )
    return by


def _json_path(by: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in by.split("."))


def spend_of(journal: Journal, run_id: str, pricer: Pricer, *, by: str | None = None) -> dict[str, Any]:
    """The breakdown of one run's cost (jobs that finished; a job's calls before it was stopped
    count in the journal's totals, not here)."""
    db = journal.db
    finished = (run_id, SUCCEEDED, FAILED)
    by_model = [
        {"model": m or NONE_VALUE, "jobs": n, "cost_usd": round(c or 0.0, 6), "input_tokens": int(i or 0),
         "output_tokens": int(o or 0)}
        for m, n, c, i, o in db.execute(
            "SELECT model, COUNT(*), SUM(cost_usd), SUM(json_extract(usage_json, '$.input_tokens')),"
            " SUM(json_extract(usage_json, '$.output_tokens')) FROM jobs"
            " WHERE run_id = ? AND state IN (?, ?) GROUP BY model ORDER BY 3 DESC",
            finished,
        )
    ]  # fmt: skip
    out: dict[str, Any] = {"by_model": by_model, "by": None}
    if by is not None and by != "model":
        groups = db.execute(
            "SELECT json_extract(job_json, ?) AS v, COUNT(*), SUM(cost_usd) FROM jobs"
            " WHERE run_id = ? AND state IN (?, ?) GROUP BY v ORDER BY 3 DESC",
            (_json_path(by), *finished),
        ).fetchall()
        out["by"] = {
            "key": by,
            "groups": [
                {"value": NONE_VALUE if v is None else _text(v), "jobs": n, "cost_usd": round(c or 0.0, 6)}
                for v, n, c in groups
            ],
        }
    out["top_jobs"] = [
        {"id": i, "model": m, "cost_usd": round(c or 0.0, 6), "attempts": a}
        for i, m, c, a in db.execute(
            "SELECT id, model, cost_usd, attempts FROM jobs WHERE run_id = ? AND state IN (?, ?)"
            " ORDER BY cost_usd DESC, seq LIMIT ?",
            (*finished, TOP_JOBS),
        )
    ]
    out["savings"] = _savings(journal, run_id, pricer)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _savings(journal: Journal, run_id: str, pricer: Pricer) -> dict[str, Any]:
    run = journal.get_run(run_id)
    batch_mode = run is not None and run.mode == "batches"
    cache_hits = cache_usd = prompt_usd = batches_usd = paid = 0.0
    rows = journal.db.execute(
        "SELECT model, usage_json, attempts, cost_usd, attempts_json FROM jobs"
        " WHERE run_id = ? AND state = ? AND usage_json IS NOT NULL AND model IS NOT NULL",
        (run_id, SUCCEEDED),
    )
    for model, usage_json, attempts, cost, attempts_json in rows:
        usage = json.loads(usage_json)
        if not isinstance(usage, dict) or pricer.price(model) is None:
            continue
        if attempts == 0 or '"cache_hit": true' in (attempts_json or ""):  # answered from the result cache
            cache_hits += 1
            cache_usd += pricer.cost_usd(model, usage)
            paid += cost or 0.0  # only its judges' calls (its answer was not paid again)
            continue
        paid += cost or 0.0
        uncached = {
            "input_tokens": int(usage.get("input_tokens") or 0)
            + int(usage.get("cache_read_input_tokens") or 0)
            + int(usage.get("cache_creation_input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
        }
        prompt_usd += pricer.cost_usd(model, uncached, batch=batch_mode) - pricer.cost_usd(
            model, usage, batch=batch_mode
        )
        if batch_mode:
            batches_usd += pricer.cost_usd(model, usage) - pricer.cost_usd(model, usage, batch=True)
    saved = cache_usd + prompt_usd + batches_usd
    return {
        "paid_usd": round(paid, 6),
        "list_price_usd": round(paid + saved, 6),
        "saved_usd": round(saved, 6),
        "result_cache_usd": round(cache_usd, 6),
        "result_cache_jobs": int(cache_hits),
        "prompt_caching_usd": round(prompt_usd, 6),
        "batches_usd": round(batches_usd, 6),
    }


def render_spend(spend: dict[str, Any]) -> list[str]:
    """The breakdown as plain lines for `anvil status RUN`."""
    lines = ["where the money went:"]
    for m in spend["by_model"]:
        lines.append(
            f"  {m['model']}: ${m['cost_usd']:.4f} over {m['jobs']:,} job(s)"
            f" ({m['input_tokens']:,} in, {m['output_tokens']:,} out)"
        )
    if spend["by"] is not None:
        lines.append(f"  by {spend['by']['key']}:")
        lines += [
            f"    {g['value']}: ${g['cost_usd']:.4f} over {g['jobs']:,} job(s)" for g in spend["by"]["groups"]
        ]
    top = [j for j in spend["top_jobs"][:5] if j["cost_usd"] > 0]
    if top:
        lines.append("  most expensive: " + ", ".join(f"{j['id']} ${j['cost_usd']:.4f}" for j in top))
    s = spend["savings"]
    lines.append(
        f"  saved ${s['saved_usd']:.4f} against list price ${s['list_price_usd']:.4f}: result cache"
        f" ${s['result_cache_usd']:.4f} ({s['result_cache_jobs']:,} job(s)), prompt caching"
        f" ${s['prompt_caching_usd']:.4f}, Batches ${s['batches_usd']:.4f}"
    )
    return lines
