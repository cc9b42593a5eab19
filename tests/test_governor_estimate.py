"""OutputEstimator: seeded from max_tokens, then a high quantile of recent outputs plus a margin."""

from __future__ import annotations

import pytest

from anvil_cli.policy.governor.estimate import OutputEstimator


@pytest.mark.parametrize(
    ("samples", "max_tokens", "expected"),
    [
        ([], 4096, 4096),  # no data: the only safe guess
        ([100, 100, 100, 100], 4096, 4096),  # fewer than min_samples
        ([100] * 5, 4096, 120),  # 100 × 1.2
        ([100] * 5, 50, 50),  # never above the call's max_tokens
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 1000], 4096, 108),  # p90 = 90; one outlier ignored
        ([0] * 5, 4096, 1),
    ],
)
def test_estimate(samples: list[int], max_tokens: int, expected: int) -> None:
    estimator = OutputEstimator(window=10, min_samples=5, quantile=0.9, margin=1.2)
    for tokens in samples:
        estimator.observe("m", tokens)
    assert estimator.estimate("m", max_tokens) == expected


def test_window_forgets_old_samples_and_models_are_separate() -> None:
    estimator = OutputEstimator(window=5, min_samples=5, quantile=1.0, margin=1.0)
    for tokens in [900] * 5 + [100] * 5:
        estimator.observe("a", tokens)
    assert (estimator.estimate("a", 1000), estimator.estimate("b", 1000)) == (100, 1000)
    assert estimator.samples("a") == 5


@pytest.mark.parametrize(
    "kwargs", [{"window": 0}, {"min_samples": 0}, {"min_samples": 99}, {"quantile": 1.5}, {"margin": 0.5}]
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OutputEstimator(**kwargs)  # type: ignore[arg-type]
