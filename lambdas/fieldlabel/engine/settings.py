"""The engine's settings (one frozen value, passed to training and to every decision)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """How the engine trains and when it may auto-label.

    The first five fields are the contract with the pipeline (docs/engine.md); the rest tune the model and the
    rule and have defaults chosen by the tree-photo benchmark.

    Attributes:
        alpha: target error among auto-labels.
        delta: 1 - confidence of the bound (the bound holds with probability >= 1 - delta).
        min_examples_per_species: human-confirmed examples a species needs before anything is auto-labeled into it.
        calibration_fraction: random share of each batch routed to humans whatever its score.
        seed: seeds folds, projections and the calibration slice (decisions are deterministic given it).
        folds: K of the cross-validated ensemble (its out-of-fold scores calibrate, its average scores new photos).
        l2_c: inverse L2 penalty of the logistic regression, as scikit-learn's C (loss summed over examples).
        max_dim: features are projected to at most this many principal components before training.
        max_iter: L-BFGS iterations per fold.
        class_error_limit: class-conditional guard: a species whose accepted calibration items show a (smoothed)
            error above this is blocked.
        never_auto: labels never auto-labeled (the taxonomy's unknown label, for instance).
        calibration: ``"oof"`` calibrates on the out-of-fold scores of every expert label (plus the random slices);
            ``"random_slice"`` only on the random calibration slices (strictly exchangeable, needs many batches).
        duplicate_cosine: expert labels more similar than this share a fold (near-duplicates would inflate
            out-of-fold confidence).
        guarantee: ``"batch"``: the realised error share among this batch's auto-labels is <= alpha with
            probability >= 1 - delta (delta split evenly between the calibration bound and the batch's own
            binomial sampling, so small batches are held to a stricter per-item rate); ``"population"``: the
            expected error rate of an auto-label is <= alpha with probability >= 1 - delta.
        guard_band: the class-conditional guard looks at calibration items whose margin reaches this fraction of
            the threshold (1.0: the accepted items only; lower: a wider band that also sees near-misses, so a
            confusable species is caught with fewer accepted items).
        min_class_precision: a species whose out-of-fold predictions (at any margin) are right less often than this
            is blocked: the model confuses it (0 disables).
        start_errors: the fixed sequence starts where this many calibration errors could still pass (see
            :func:`fieldlabel.engine.stats.fixed_sequence_threshold`).
        ensemble: how new photos' fold-model probabilities are combined: ``"mean"`` (the arithmetic mean) or
            ``"geometric"`` (mean log-probability, renormalised; measured: no gain on the tree photos, so not the
            default). Models trained before this setting existed are scored by the mean.
        guard_mode: what the class-conditional guard does to a species it flags: ``"block"`` (its photos go to
            humans) or ``"raise"`` (a threshold of its own, never below the certified one: the lowest at which its
            calibration items still pass the guard with at least ``raise_min_items`` of them; blocked when there is
            none).
        raise_min_items: ``"raise"`` only: calibration items of the species that must reach its raised threshold.
        raise_error_limit: ``"raise"`` only: the error a species' items may show at its threshold (None:
            ``class_error_limit``; at most that). Set lower, a species above it but within ``class_error_limit``
            gets a raised threshold when one passes and keeps the certified one otherwise.
        raise_bound: ``"raise"`` only: ``"smoothed"`` (the guard's estimate) or ``"clopper-pearson"`` (the one-sided
            1 - delta upper bound of the items' error must be <= the limit).
    """

    alpha: float = 0.05
    delta: float = 0.05
    min_examples_per_species: int = 10
    calibration_fraction: float = 0.03
    seed: int = 0
    folds: int = 5
    l2_c: float = 10.0
    max_dim: int = 256
    max_iter: int = 300
    class_error_limit: float = 0.10
    never_auto: tuple[str, ...] = ()
    calibration: str = "oof"
    duplicate_cosine: float = 0.97
    guarantee: str = "population"
    start_errors: int = 1
    guard_band: float = 1.0
    min_class_precision: float = 0.5
    ensemble: str = "mean"
    guard_mode: str = "block"
    raise_min_items: int = 10
    raise_error_limit: float | None = None
    raise_bound: str = "smoothed"

    def __post_init__(self) -> None:
        checks = {
            "alpha": 0.0 < self.alpha < 1.0,
            "delta": 0.0 < self.delta < 1.0,
            "min_examples_per_species": self.min_examples_per_species >= 1,
            "calibration_fraction": 0.0 <= self.calibration_fraction < 1.0,
            "folds": self.folds >= 2,
            "l2_c": self.l2_c > 0,
            "max_dim": self.max_dim >= 2,
            "max_iter": self.max_iter >= 1,
            "class_error_limit": 0.0 < self.class_error_limit <= 1.0,
            "calibration": self.calibration in ("oof", "random_slice"),
            "duplicate_cosine": 0.0 < self.duplicate_cosine <= 1.0,
            "guarantee": self.guarantee in ("batch", "population"),
            "start_errors": self.start_errors >= 0,
            "guard_band": 0.0 <= self.guard_band <= 1.0,
            "min_class_precision": 0.0 <= self.min_class_precision < 1.0,
            "ensemble": self.ensemble in ("mean", "geometric"),
            "guard_mode": self.guard_mode in ("block", "raise"),
            "raise_min_items": self.raise_min_items >= 1,
            "raise_error_limit": self.raise_error_limit is None
            or 0.0 < self.raise_error_limit <= self.class_error_limit,
            "raise_bound": self.raise_bound in ("smoothed", "clopper-pearson"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"EngineSettings: invalid {', '.join(bad)}")
