"""The `budget:` section: the run's cap and warning, the state dir's day and month caps, and the
caps by scope (`budget.scopes`, by a key of the jobs' metadata)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from anvil_cli.config.section import _cross_field, _Section

SCOPE_KEY = r"^metadata\.[A-Za-z0-9_][A-Za-z0-9_.-]*$"  # `metadata.team`: a key of the jobs' metadata


class ScopeCaps(_Section):
    """One scope's caps (`budget.scopes.metadata.team.research`): a bare number is `per_day_usd`.
    Day and month are UTC, across every run of the state dir; `max_usd` is per run."""

    per_day_usd: float | None = Field(None, gt=0)
    per_month_usd: float | None = Field(None, gt=0)
    max_usd: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"per_day_usd": value}
        return value

    @model_validator(mode="after")
    def _some_cap(self) -> ScopeCaps:
        if self.per_day_usd is None and self.per_month_usd is None and self.max_usd is None:
            raise _cross_field("per_day_usd", "a scope needs a cap: per_day_usd, per_month_usd or max_usd")
        return self


ScopeValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Budget(_Section):
    max_usd: float | None = Field(None, gt=0)
    warn_usd: float | None = Field(None, gt=0)
    # everything run from this state dir, per UTC day and month (the ledger beside the journal)
    per_day_usd: float | None = Field(None, gt=0)
    per_month_usd: float | None = Field(None, gt=0)
    # `metadata.KEY` -> the key's value -> its caps: a job whose metadata has that value is in it
    scopes: dict[str, dict[ScopeValue, ScopeCaps]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_warn_below_max(self) -> Budget:
        if self.max_usd is not None and self.warn_usd is not None and self.warn_usd > self.max_usd:
            raise _cross_field(
                "warn_usd", f"warn_usd ({self.warn_usd:g}) must be <= max_usd ({self.max_usd:g})"
            )
        for key in self.scopes:
            if not re.match(SCOPE_KEY, key):
                message = f"a scope is a key of the jobs' metadata, written `metadata.KEY`; got {key!r}"
                raise _cross_field(f"scopes.{key}", message)
        return self
