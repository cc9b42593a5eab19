"""The base of every settings section: unknown keys refused, values checked on assignment, no
infinities; and `_cross_field`, a check between two fields reported against one of them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


class _Section(BaseModel):
    # allow_inf_nan=False: `.inf`, "inf" or "nan" in any float setting is refused here (inf
    # would pass `gt=0` and break the run: JSON turns it into null on its way to the workers).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _cross_field(field: str, message: str) -> PydanticCustomError:
    """A check between two fields, reported against `field` (the loader adds it to the path)."""
    return PydanticCustomError("cross_field", message, {"field": field})
