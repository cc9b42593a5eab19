"""What a job asks of its answer, in the normalised form the batch reader (`jobs/checkspec.py`)
writes into the job and every checker reads: a JSON-able mapping per check, so a job's checks
travel in its journal row and across processes as they were read.

The forms (every one has `name` and `kind`; `ignore_case` defaults to false):

* `{"kind": "equals", "value": TEXT, "ignore_case": B}` — the answer, stripped, is TEXT
* `{"kind": "contains", "values": [TEXT, ...], "ignore_case": B}` — the answer holds each
* `{"kind": "regex", "pattern": RE, "ignore_case": B}` — `re.search` finds RE in the answer
* `{"kind": "json_path", "path": "$.a.b[0]", "op": "equals", "value": V}`,
  `... "op": "in", "values": [V, ...]`, `... "op": "range", "min": N | null, "max": N | null}`
  — the answer parsed as JSON (fences allowed), the value at the path
* `{"kind": "length", "min": N | null, "max": N | null, "unit": "chars" | "words"}`
* `{"kind": "judge", "rubric": TEXT, "model": ID | null, "scale": [LOW, HIGH], "pass_at": N}`
  — a model grades the answer on the scale; it passes at `pass_at` or above. `model` null:
  `checks.judge_model` of the settings (Haiku by default)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("equals", "contains", "regex", "json_path", "length", "judge")
DETERMINISTIC = ("equals", "contains", "regex", "json_path", "length")
JSON_PATH_OPS = ("equals", "in", "range")
LENGTH_UNITS = ("chars", "words")
DEFAULT_SCALE = (1, 5)


def default_pass_at(low: float, high: float) -> float:
    """A judge passes at three quarters of its scale unless the batch says otherwise (4 of 1-5)."""
    return low + 0.75 * (high - low)


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check in its normalised form (see the module docstring); `args` holds every key
    but `name` and `kind`."""

    name: str
    kind: str
    args: Mapping[str, Any]

    @property
    def is_judge(self) -> bool:
        return self.kind == "judge"

    def get(self, key: str, default: Any = None) -> Any:
        return self.args.get(key, default)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **self.args}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckSpec:
        args = {k: v for k, v in data.items() if k not in ("name", "kind")}
        return cls(str(data.get("name", data.get("kind", ""))), str(data.get("kind", "")), args)


def specs_of(checks: Any) -> tuple[CheckSpec, ...]:
    """The checks of a job (`Job.checks`, normalised dicts) as `CheckSpec`s."""
    return tuple(CheckSpec.from_json(c) for c in checks or () if isinstance(c, Mapping))
