"""Which entry of a mapping keyed by model ids and globs applies to a model (`rate_limits:`):
its exact id, then the first glob that matches it, then `default`. Plain data only, so the
governor's process reads its tables without the settings' schema."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

DEFAULT = "default"


def entry_for(entries: Mapping[str, T], model: str, default: Callable[[], T]) -> tuple[str, T]:
    """The entry of `entries` that applies to `model`, and its key; `default()` when there is
    no `default` key and nothing else applies."""
    if model in entries:
        return model, entries[model]
    for key, value in entries.items():
        if key != DEFAULT and fnmatch.fnmatch(model, key):
            return key, value
    return DEFAULT, entries[DEFAULT] if DEFAULT in entries else default()
