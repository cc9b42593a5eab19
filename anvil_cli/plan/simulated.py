"""What the embedded simulator answers, where `anvil plan --simulate` needs more than its output
distribution: an answer asked for as JSON for a schema (a job's output schema, or a judge's
grade, as the worker asks for it) is the simulator's JSON filled for that schema, as long as its
text (`sim/answers/structured.py`), not its lognormal filler; and the filler text of an answer
of N output tokens is longer than N tokens once quoted to a judge (its words average ~6
characters: ~1.5 tokens each by `policy/tokens`). Measured by drawing such answers as the
simulator does (`DRAWS` seeds), once per schema or length."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from anvil_cli.engine.requests import with_output_schema
from anvil_cli.policy.checks.judge import grade_schema
from anvil_cli.policy.checks.spec import CheckSpec
from anvil_cli.policy.tokens import text_tokens

DRAWS = 32
DIGEST_CHARS = 16  # of the `sim:<digest>` an answer starts with (sim/digest.py)


def structured_tokens(schema: Mapping[str, Any]) -> float:
    """Mean output tokens of the simulator's answers valid for `schema`."""
    return _mean_tokens(json.dumps(schema, sort_keys=True))


def grade_tokens(spec: CheckSpec, native: bool) -> float:
    """Mean output tokens of the simulator's grades for the judge `spec` (its grade schema as the
    worker sends it: natively, narrowed to what the API supports, or in the system prompt)."""
    asked = with_output_schema({}, grade_schema(spec), native=native)
    schema = asked.get("output_config", {}).get("format", {}).get("schema") or grade_schema(spec)
    return structured_tokens(schema)


def quoted_tokens(output_tokens: float) -> float:
    """Input tokens of the simulator's filler answer of `output_tokens`, quoted to a judge."""
    return _quoted(max(1, round(output_tokens)))


@lru_cache(maxsize=4096)
def _quoted(output_tokens: int) -> float:
    from anvil_cli.sim.answers.responses import answer_text

    digest = "0" * DIGEST_CHARS
    drawn = [text_tokens(answer_text(digest, output_tokens, random.Random(i))) for i in range(DRAWS)]
    return sum(drawn) / len(drawn)


@lru_cache(maxsize=256)
def _mean_tokens(schema_json: str) -> float:
    from anvil_cli.sim.answers.structured import valid_text  # only when planning for --simulate

    schema = json.loads(schema_json)
    # as the simulator counts a said answer's output tokens (sim/answers/responses.py)
    drawn = [max(1, math.ceil(text_tokens(valid_text(schema, random.Random(i), None)))) for i in range(DRAWS)]
    return sum(drawn) / len(drawn)
