"""Measured accuracy of machine labels among audited photos, with 95 % Wilson score intervals.

Per species the audit is a simple random sample of that species' machine labels, so the plain Wilson interval
applies (it measures the precision of the machine label "X": of the photos the model called X, the share that
are X). The overall figure re-weights each stratum to its share of the batch (the stratified sample over-represents
rare species) and uses the Kish effective sample size in the Wilson formula. See docs/review.md, "Accuracy".
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (returns (0, 1) when n is 0).

    Raises:
        ValueError: if successes is outside [0, n].
    """
    if n <= 0:
        return 0.0, 1.0
    if successes < 0 or successes > n + 1e-9:
        raise ValueError("successes must be within [0, n]")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class AccuracyTally:
    """Audited machine labels, counted per stratum (machine label)."""

    correct: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stratum_size: dict[str, int] = field(default_factory=dict)

    def add(self, machine_label: str, reviewed_label: str, stratum_size: int | None = None) -> None:
        """Record one audited photo whose reviewed label is trusted."""
        self.total[machine_label] += 1
        self.correct[machine_label] += int(machine_label == reviewed_label)
        if stratum_size is not None:
            self.stratum_size[machine_label] = max(self.stratum_size.get(machine_label, 0), int(stratum_size))

    def summary(self) -> dict[str, Any]:
        """``{"overall": {...}, "by_species": {label: {...}}}`` with accuracy, ci_low, ci_high and n."""
        by_species: dict[str, dict[str, Any]] = {}
        for label in sorted(self.total):
            n, k = self.total[label], self.correct[label]
            lo, hi = wilson_interval(k, n)
            by_species[label] = {"accuracy": _r(k / n), "ci_low": _r(lo), "ci_high": _r(hi), "n": n}
        return {"overall": self._overall(), "by_species": by_species}

    def _overall(self) -> dict[str, Any]:
        n = sum(self.total.values())
        if n == 0:
            return {"accuracy": None, "ci_low": None, "ci_high": None, "n": 0}
        # Weight of one audited photo = stratum size / sampled in stratum; without sizes, weights are equal.
        weights = {label: (self.stratum_size.get(label, self.total[label]) / self.total[label]) for label in self.total}
        w_sum = sum(weights[label] * self.total[label] for label in self.total)
        w_sq = sum(weights[label] ** 2 * self.total[label] for label in self.total)
        p = sum(weights[label] * self.correct[label] for label in self.total) / w_sum
        n_eff = w_sum * w_sum / w_sq
        lo, hi = wilson_interval(p * n_eff, n_eff)
        return {"accuracy": _r(p), "ci_low": _r(lo), "ci_high": _r(hi), "n": n, "n_effective": _r(n_eff)}


def _r(x: float) -> float:
    return round(float(x), 4)
