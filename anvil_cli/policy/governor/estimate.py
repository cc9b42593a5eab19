"""Running estimates of how many output tokens a model's calls produce, to reserve before a call."""

from __future__ import annotations

import math
from collections import deque


class OutputEstimator:
    """Per model: a high quantile of recent outputs plus a margin, never above the call's max_tokens.

    Until a model has `min_samples` successful calls the estimate is the call's `max_tokens`
    (the only safe guess). An underestimate is not a disaster: the governor charges the difference
    when the call settles, so the output-token bucket goes briefly into debt.
    """

    def __init__(
        self, window: int = 64, min_samples: int = 5, quantile: float = 0.9, margin: float = 1.2
    ) -> None:
        if window < 1 or not 1 <= min_samples <= window or not 0.0 <= quantile <= 1.0 or margin < 1.0:
            raise ValueError("need window ≥ 1, 1 ≤ min_samples ≤ window, 0 ≤ quantile ≤ 1, margin ≥ 1")
        self.window = window
        self.min_samples = min_samples
        self.quantile = quantile
        self.margin = margin
        self._samples: dict[str, deque[int]] = {}

    def observe(self, model: str, output_tokens: int) -> None:
        """Record the output tokens of one successful call."""
        samples = self._samples.setdefault(model, deque(maxlen=self.window))
        samples.append(max(0, int(output_tokens)))

    def estimate(self, model: str, max_tokens: int) -> int:
        """Output tokens to reserve for a call of `model` that may produce up to `max_tokens`."""
        samples = self._samples.get(model)
        if samples is None or len(samples) < self.min_samples:
            return max_tokens
        ordered = sorted(samples)
        high = ordered[min(len(ordered) - 1, max(0, math.ceil(self.quantile * len(ordered)) - 1))]
        return max(1, min(max_tokens, math.ceil(high * self.margin)))

    def samples(self, model: str) -> int:
        """How many outputs of `model` the estimate is based on."""
        return len(self._samples.get(model, ()))
