"""Exact binomial tails, Clopper-Pearson bounds and fixed-sequence (Learn-then-Test) threshold selection.

Pure Python/numpy: scipy does not fit in the Lambda layer beside onnxruntime, so the binomial tail is summed in log
space from a log-binomial-coefficient recurrence (exact up to rounding, stable for n in the hundreds of thousands).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), exact up to rounding: log pmf terms from the recurrence
    log C(n, i) = log C(n, i - 1) + log(n - i + 1) - log(i), summed with log-sum-exp."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError("need n >= 0 and 0 <= p <= 1")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    i = np.arange(1, k + 1, dtype=np.float64)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(n - i + 1) - np.log(i))])
    j = np.arange(k + 1, dtype=np.float64)
    logs = log_comb + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(logs.max())
    return min(1.0, math.exp(top) * float(np.sum(np.exp(logs - top))))


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson upper bound on a binomial rate after k events in n trials.

    The p solving P(Bin(n, p) <= k) = delta, found by bisection (the cdf falls monotonically in p); 1.0 when n = 0.
    """
    if not 0.0 < delta < 1.0:
        raise ValueError("delta must be in (0, 1)")
    if n == 0 or k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):  # 2^-60: far below anything that matters
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def clopper_pearson_lower(k: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson lower bound (the p with P(Bin(n, p) >= k) = delta); 0.0 when k = 0."""
    if k <= 0 or n == 0:
        return 0.0
    return 1.0 - clopper_pearson_upper(n - k, n, delta)


def min_items_to_certify(alpha: float, delta: float) -> int:
    """Fewest error-free calibration items whose bound reaches alpha: (1 - alpha)^n <= delta."""
    return math.ceil(math.log(delta) / math.log1p(-alpha))


@dataclass(frozen=True)
class FixedSequenceResult:
    """Outcome of :func:`fixed_sequence_threshold`.

    ``threshold`` is None when not even the first hypothesis is rejected (nothing may be auto-labeled);
    ``accepted``/``errors`` count the calibration items at or above it; ``bound`` is their Clopper-Pearson upper
    bound (1.0 when nothing is certified); ``tested`` is how many hypotheses were tested.
    """

    threshold: float | None
    accepted: int
    errors: int
    bound: float
    tested: int


def candidate_counts(n: int, start: int, steps: int) -> list[int]:
    """Acceptance sizes tested in order: ``start`` items, then up to ``steps`` evenly spaced sizes up to ``n``."""
    if n < start:
        return []
    step = max(1, math.ceil((n - start) / max(1, steps)))
    return list(range(start, n + 1, step))


def fixed_sequence_threshold(scores: np.ndarray, errors: np.ndarray, *, alpha: float, delta: float,
                             start: int | None = None, steps: int = 200,
                             level: Callable[[float], float] | None = None,
                             start_errors: int = 0) -> FixedSequenceResult:
    """Learn-then-Test with fixed-sequence testing: the lowest score threshold whose error is certified <= alpha.

    Calibration items are sorted by score, most confident first. The hypotheses "the error among items scoring at or
    above the k-th highest score exceeds alpha" are tested in order of growing k (``candidate_counts``), each with
    the exact binomial p-value P(Bin(k, alpha) <= errors_k); testing stops at the first that is not rejected at
    level delta. Fixed-sequence testing controls the family-wise error at delta without a multiplicity correction,
    so every rejected threshold is valid at once and the lowest is returned. The sequence depends on the scores
    only, never on which items are wrong. Ties are kept together (a threshold admits all items with that score).

    Args:
        scores: calibration scores (higher = more confident).
        errors: True where the calibration item's predicted label was wrong.
        start: first acceptance size (default: the fewest items that could certify alpha with zero errors).
        steps: how many acceptance sizes at most are tested after the first.
        level: the error rate each hypothesis tests against, as a function of the threshold (default: alpha);
            :func:`batch_error_level` makes the guarantee hold for the realised error of one batch.
        start_errors: the sequence starts at the first size at which this many errors could still pass (0: the
            fewest items that could certify at all). A later start cannot certify small sets but is not ended by
            one unlucky error among the very first items. It depends on the scores only.
    """
    scores = np.asarray(scores, dtype=np.float64)
    errs = np.asarray(errors, dtype=bool)
    if scores.shape != errs.shape:
        raise ValueError("scores and errors must have the same shape")
    n = scores.size
    first = min_items_to_certify(alpha, delta) if start is None else start
    if start is None and level is None and start_errors > 0:
        while first <= n and binom_cdf(start_errors, first, alpha) > delta:
            first += 1
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    cum_err = np.cumsum(errs[order])
    best: tuple[float, int, int] | None = None
    tested = 0
    if level is not None and start is None:
        # The sequence starts at the first size at which zero errors could pass (a function of the scores only):
        # where the level is strict (few batch photos above the threshold) nothing could pass, and testing there
        # would end the sequence before the sizes that can.
        while first <= n:
            t0 = s_sorted[first - 1]
            m0 = int(np.searchsorted(-s_sorted, -t0, side="right"))
            if binom_cdf(start_errors, m0, min(1.0, level(float(t0)))) <= delta:
                break
            first += max(1, math.ceil(n / max(1, steps)))
    for k in candidate_counts(n, first, steps):
        t = s_sorted[k - 1]
        # all items tied with the k-th score are admitted too
        m = int(np.searchsorted(-s_sorted, -t, side="right"))
        e = int(cum_err[m - 1])
        tested += 1
        if binom_cdf(e, m, alpha if level is None else level(float(t))) > delta:
            break
        best = (float(t), m, e)
    if best is None:
        return FixedSequenceResult(None, 0, 0, 1.0, tested)
    return FixedSequenceResult(best[0], best[1], best[2], clopper_pearson_upper(best[2], best[1], delta), tested)


@functools.lru_cache(maxsize=65536)
def batch_error_level(m: int, alpha: float, delta: float) -> float:
    """The largest per-item error rate p at which m independent auto-labels keep their realised error share
    <= alpha with probability >= 1 - delta: P(Bin(m, p) <= floor(alpha m)) >= 1 - delta (1.0 when m = 0).

    Certifying the population error of the accepted items below this level (at confidence 1 - delta') bounds the
    realised error share of a batch of m auto-labels by alpha with probability >= 1 - delta - delta'.
    """
    if m <= 0:
        return 1.0
    allowed = math.floor(alpha * m + 1e-9)
    lo, hi = 0.0, 1.0
    for _ in range(50):  # the cdf falls in p
        mid = (lo + hi) / 2
        if binom_cdf(allowed, m, mid) >= 1.0 - delta:
            lo = mid
        else:
            hi = mid
    return lo


def point_estimate_threshold(scores: np.ndarray, correct: np.ndarray, *, target: float = 0.95,
                             min_accepted: int = 1) -> float | None:
    """The reference rule (Ground Truth's description): the lowest threshold whose accepted calibration items are
    at least ``target`` accurate, as a point estimate (no confidence). None when no threshold reaches it."""
    scores = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    acc = np.cumsum(ok[order]) / np.arange(1, scores.size + 1)
    best: float | None = None
    for k in range(min_accepted, scores.size + 1):
        # evaluate only at the last item of a tie group
        if k < scores.size and s_sorted[k] == s_sorted[k - 1]:
            continue
        if acc[k - 1] >= target:
            best = float(s_sorted[k - 1])
    return best


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (used for audit accuracies in reports)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
