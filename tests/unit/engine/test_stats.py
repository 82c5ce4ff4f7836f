"""Binomial tail, Clopper-Pearson bounds and the fixed-sequence threshold rule on synthetic scores of known error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fieldlabel.engine.stats import (
    batch_error_level,
    binom_cdf,
    candidate_counts,
    clopper_pearson_lower,
    clopper_pearson_upper,
    fixed_sequence_threshold,
    min_items_to_certify,
    point_estimate_threshold,
    wilson_interval,
)


def _cdf_by_comb(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.1), (3, 10, 0.3), (5, 40, 0.05), (12, 60, 0.2), (0, 1, 0.5)])
def test_binom_cdf_matches_the_direct_sum(k: int, n: int, p: float) -> None:
    assert binom_cdf(k, n, p) == pytest.approx(_cdf_by_comb(k, n, p), rel=1e-10)


def test_binom_cdf_edges_and_large_n() -> None:
    assert binom_cdf(-1, 5, 0.3) == 0.0
    assert binom_cdf(5, 5, 0.3) == 1.0
    assert binom_cdf(0, 5, 0.0) == 1.0
    assert binom_cdf(2, 5, 1.0) == 0.0
    # n = 100,000 without overflow: the median of Bin(100000, 0.05) is 5000
    assert 0.45 < binom_cdf(5000, 100_000, 0.05) < 0.55


def test_clopper_pearson_known_values() -> None:
    # zero errors: the bound solves (1 - p)^n = delta
    assert clopper_pearson_upper(0, 59, 0.05) == pytest.approx(1 - 0.05 ** (1 / 59), abs=1e-9)
    assert clopper_pearson_upper(0, 59, 0.05) < 0.05 < clopper_pearson_upper(0, 58, 0.05)
    assert min_items_to_certify(0.05, 0.05) == 59
    assert clopper_pearson_upper(3, 0, 0.05) == 1.0
    up = clopper_pearson_upper(4, 100, 0.05)
    assert binom_cdf(4, 100, up) == pytest.approx(0.05, abs=1e-9)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10), abs=1e-9)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.2])
def test_clopper_pearson_covers_at_least_one_minus_delta_exactly(p: float) -> None:
    """Exact coverage: summing the pmf over the k whose upper bound is >= p gives >= 1 - delta."""
    n, delta = 80, 0.1
    coverage = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k)
                   for k in range(n + 1) if clopper_pearson_upper(k, n, delta) >= p)
    assert coverage >= 1 - delta


def test_candidate_counts() -> None:
    assert candidate_counts(50, 59, 10) == []
    assert candidate_counts(59, 59, 10) == [59]
    assert candidate_counts(159, 59, 10) == list(range(59, 160, 10))


# Synthetic scores with a known error curve: s ~ U(0, 1), P(wrong | s) = 0.6 (1 - s)^2. The error among items
# with s >= t is 0.6 (1 - t)^2 / 3, which is <= 0.05 exactly when t >= 0.5.
def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = rng.random(n)
    return s, rng.random(n) < 0.6 * (1 - s) ** 2


def _true_error_above(t: float) -> float:
    return 0.6 * (1 - t) ** 2 / 3


def test_the_bound_holds_at_the_stated_rate_over_many_draws() -> None:
    rng = np.random.default_rng(2026)
    draws, held, certified = 200, 0, 0
    for _ in range(draws):
        s, wrong = _draw(rng, 800)
        res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05)
        if res.threshold is None:
            held += 1  # nothing auto-labeled: no error
            continue
        certified += 1
        held += _true_error_above(res.threshold) <= 0.05
        assert res.bound <= 0.05
    # the rule must actually certify something most of the time (a rule that never labels would pass trivially)
    assert certified >= 180
    # >= 1 - delta = 95 % expected; 0.92 leaves room for sampling noise of 200 draws (sd ~ 1.5 points)
    assert held / draws >= 0.92


def test_the_same_check_fails_a_point_estimate_rule() -> None:
    """Negative control: the check above is able to fail. A point estimate at 95 % misses about half the time."""
    rng = np.random.default_rng(2026)
    draws, held = 200, 0
    for _ in range(draws):
        s, wrong = _draw(rng, 800)
        t = point_estimate_threshold(s, ~wrong, target=0.95)
        held += t is None or _true_error_above(t) <= 0.05
    assert held / draws < 0.92


def test_nothing_is_certified_with_too_few_calibration_items() -> None:
    s = np.linspace(1.0, 0.9, 58)
    res = fixed_sequence_threshold(s, np.zeros(58, dtype=bool), alpha=0.05, delta=0.05)
    assert res.threshold is None and res.bound == 1.0 and res.tested == 0 and res.accepted == 0
    res = fixed_sequence_threshold(np.linspace(1.0, 0.9, 59), np.zeros(59, dtype=bool), alpha=0.05, delta=0.05)
    assert res.threshold == pytest.approx(0.9) and res.accepted == 59 and res.bound < 0.05


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    # 100 clean items, then a run of errors, then clean items again: the later clean run must not be reached
    s = np.linspace(1.0, 0.0, 400)
    wrong = np.zeros(400, dtype=bool)
    wrong[100:140] = True
    res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05, steps=400)
    assert res.threshold is not None and res.threshold >= s[110]
    assert res.errors / res.accepted <= 0.05


def test_a_later_start_survives_one_early_error() -> None:
    s = np.linspace(1.0, 0.0, 400)
    wrong = np.zeros(400, dtype=bool)
    wrong[[3, 250, 300, 350]] = True
    assert fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05).threshold is None  # 1 error in the first 59
    res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05, start_errors=1)
    assert res.threshold is not None and res.accepted >= 93 and res.bound <= 0.05


def test_ties_are_admitted_together() -> None:
    s = np.array([1.0] * 70 + [0.5] * 30)
    wrong = np.array([False] * 70 + [True] * 30)
    res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05)
    assert res.threshold == 1.0 and res.accepted == 70


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(95, 100)
    assert lo < 0.95 < hi and 0.88 < lo and hi < 0.98
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_batch_error_level() -> None:
    assert batch_error_level(0, 0.05, 0.025) == 1.0
    # 19 labels allow no error: P(no error) = (1 - p)^19 >= 0.975
    assert batch_error_level(19, 0.05, 0.025) == pytest.approx(1 - 0.975 ** (1 / 19), abs=1e-9)
    levels = [batch_error_level(m, 0.05, 0.025) for m in (20, 100, 1000, 100_000)]
    assert levels == sorted(levels) and levels[-1] < 0.05 and levels[-1] > 0.048
    assert binom_cdf(5, 100, levels[1]) == pytest.approx(0.975, abs=1e-9)
    assert levels[0] < 0.02


def _batch_share_held(level_for_batch: bool, draws: int = 200) -> tuple[int, int]:
    """Draws of (calibration 3,000, batch 300) from the known curve; counts batches whose realised error share among
    the auto-labeled stayed <= 5 %, and batches with any auto-label."""
    rng = np.random.default_rng(7)
    held = with_auto = 0
    for _ in range(draws):
        s, wrong = _draw(rng, 3000)
        bs, bwrong = _draw(rng, 300)
        bsorted = np.sort(bs)
        if level_for_batch:
            def level(t: float, bsorted: np.ndarray = bsorted) -> float:
                return batch_error_level(int(bsorted.size - np.searchsorted(bsorted, t)), 0.05, 0.025)
            res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.025, level=level)
        else:
            res = fixed_sequence_threshold(s, wrong, alpha=0.05, delta=0.05)
        if res.threshold is None:
            held += 1
            continue
        auto = bs >= res.threshold
        if auto.any():
            with_auto += 1
        held += bwrong[auto].mean() <= 0.05 if auto.any() else 1
    return held, with_auto


def test_the_batch_guarantee_bounds_the_realised_error_of_one_batch() -> None:
    held, with_auto = _batch_share_held(True)
    assert with_auto >= 80  # it does auto-label (in 100 of the 200 draws with this seed)
    assert held / 200 >= 0.92  # >= 1 - delta = 95 % expected


def test_the_population_guarantee_does_not_bound_one_small_batch() -> None:
    """Negative control for the test above: certifying only the expected error lets the realised share of a
    300-photo batch exceed alpha far more often than delta."""
    held, _ = _batch_share_held(False)
    assert held / 200 < 0.92
