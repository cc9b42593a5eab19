"""What each provider charges for Claude, relative to the list prices (`providers:` in
`data/prices.yaml`): a multiplier, one per region, and a premium for regional endpoints."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProviderPrices:
    """One provider's factors on the list prices (see the comments in `data/prices.yaml`)."""

    name: str
    multiplier: float = 1.0
    regions: tuple[tuple[str, float], ...] = ()  # region -> a further multiplier
    regional_premium: float = 1.0  # on a regional (not global) endpoint
    global_regions: tuple[str, ...] = ()  # regions that are the global endpoint (Vertex: global)
    global_model_prefixes: tuple[str, ...] = ()  # provider ids that are global (Bedrock: global.)
    without_premium: tuple[str, ...] = ()  # globs of Anvil model ids the premium does not apply to

    def is_global(self, region: str | None, provider_model_id: str) -> bool:
        """Whether a call in `region` to `provider_model_id` goes through a global endpoint."""
        if region is not None and region in self.global_regions:
            return True
        return any(provider_model_id.startswith(p) for p in self.global_model_prefixes)

    def factor(self, model: str, region: str | None, provider_model_id: str | None = None) -> float:
        """What a call to `model` through this provider in `region` costs, as a multiple of its
        list price; `provider_model_id`: the id the endpoint calls it by (default: `model`)."""
        f = self.multiplier * dict(self.regions).get(region or "", 1.0)
        exempt = any(fnmatch.fnmatchcase(model, glob) for glob in self.without_premium)
        if not exempt and not self.is_global(region, provider_model_id or model):
            f *= self.regional_premium
        return f


def provider_prices(raw: Mapping[str, Any] | None) -> dict[str, ProviderPrices]:
    """The `providers:` section of the price data file, parsed (anthropic at list price when absent)."""
    out = {"anthropic": ProviderPrices("anthropic")}
    for name, entry in (raw or {}).items():
        e = entry or {}
        out[str(name)] = ProviderPrices(
            name=str(name),
            multiplier=float(e.get("multiplier", 1.0)),
            regions=tuple((str(k), float(v)) for k, v in (e.get("regions") or {}).items()),
            regional_premium=float(e.get("regional_premium", 1.0)),
            global_regions=tuple(str(r) for r in e.get("global_regions") or ()),
            global_model_prefixes=tuple(str(p) for p in e.get("global_model_prefixes") or ()),
            without_premium=tuple(str(g) for g in e.get("without_premium") or ()),
        )
    return out
