"""Replay labeled photos through the engine as a sequence of batches (``benchmarks/automation.py`` and
``fieldlabel evaluate``).

Per batch: decide with the model trained on every expert label so far; photos not auto-labeled get their true
label (the simulated taxonomists are always right here); a sample of the machine labels is audited (their true
label joins the training set, as confirmations or corrections do in production); then the model is retrained.
Machine labels that are not audited never enter training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fieldlabel.engine.classifier import near_duplicate_groups, stable_seed
from fieldlabel.engine.decide import BatchDecision, decide_batch
from fieldlabel.engine.model import TrainedModel, train_model
from fieldlabel.engine.reference import decide_batch_reference
from fieldlabel.engine.settings import EngineSettings

RULES = ("engine", "reference")


@dataclass(frozen=True)
class BatchRecord:
    """What one batch of a replay did. ``held`` is None when nothing was auto-labeled."""

    batch: int
    size: int
    auto: int
    machine_correct: int
    human: int
    audited: int
    audit_correct: int
    training_labels: int
    model_accuracy: float | None  # the model's top-1 accuracy on the whole batch (before humans)
    threshold: float | None
    certified_bound: float | None
    blocked: list[str]
    alpha: float
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)  # machine labels per label: (n, correct)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.auto / self.size if self.size else 0.0

    @property
    def machine_accuracy(self) -> float | None:
        return self.machine_correct / self.auto if self.auto else None

    @property
    def held(self) -> bool | None:
        return None if not self.auto else self.machine_correct / self.auto >= 1 - self.alpha


def split_batches(X: np.ndarray, n_batches: int, seed: int, duplicate_cosine: float = 0.97) -> list[np.ndarray]:
    """Random near-equal batches of row indices; near-duplicate groups (cosine > ``duplicate_cosine``) never
    straddle two batches."""
    if n_batches < 1:
        raise ValueError("n_batches must be >= 1")
    groups = near_duplicate_groups(X, duplicate_cosine, seed=seed)
    return split_by_groups(groups, n_batches, seed)


def split_by_groups(groups: np.ndarray, n_batches: int, seed: int) -> list[np.ndarray]:
    """As :func:`split_batches`, from precomputed group ids."""
    n = groups.size
    n_groups = int(groups.max()) + 1 if n else 0
    sizes = np.bincount(groups, minlength=n_groups)
    perm = np.random.default_rng(seed).permutation(n_groups)
    before = np.concatenate([[0], np.cumsum(sizes[perm])[:-1]])
    group_batch = np.empty(n_groups, dtype=np.int64)
    group_batch[perm] = np.minimum(n_batches - 1, (before * n_batches) // max(1, n))
    batch_of = group_batch[groups]
    return [np.flatnonzero(batch_of == b) for b in range(n_batches)]


def replay(X: np.ndarray, truth: Sequence[str], batches: Sequence[np.ndarray], *, classes: Sequence[str],
           settings: EngineSettings, rule: str = "engine", audit_fraction: float = 0.05, seed: int = 0,
           progress: Callable[[BatchRecord], None] | None = None) -> list[BatchRecord]:
    """Run the loop over ``batches`` (index arrays into X/truth) and return one record per batch.

    Args:
        rule: ``engine`` (the certified rule) or ``reference`` (the point-estimate rule, for comparison).
        audit_fraction: share of each batch's machine labels sent to review (ceil; their truth joins training).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}")
    X = np.asarray(X, dtype=np.float32)
    truth_arr = np.asarray(list(truth), dtype=object)
    labeled: list[int] = []
    slice_flags: list[bool] = []
    records: list[BatchRecord] = []
    model: TrainedModel | None = None
    for b, idx in enumerate(batches, start=1):
        idx = np.asarray(idx, dtype=np.int64)
        ids = [f"photo-{i}" for i in idx.tolist()]
        decide = decide_batch if rule == "engine" else decide_batch_reference
        decision: BatchDecision = decide(model, X[idx], ids, settings=settings)
        auto = decision.auto_mask
        suggestions = np.array([it.suggestion for it in decision.items], dtype=object)
        correct = suggestions == truth_arr[idx]
        model_acc = float(np.mean(correct)) if model is not None and idx.size else None
        auto_rows = np.flatnonzero(auto)
        n_audit = min(auto_rows.size, math.ceil(audit_fraction * auto_rows.size))
        audit_rng = np.random.default_rng(stable_seed(seed, "audit", str(b)))
        audited = np.sort(audit_rng.choice(auto_rows, n_audit, replace=False)) if n_audit else auto_rows[:0]
        for j in np.flatnonzero(~auto).tolist():
            labeled.append(int(idx[j]))
            slice_flags.append(bool(decision.items[j].calibration))
        for j in audited.tolist():
            labeled.append(int(idx[j]))
            slice_flags.append(False)
        per_class: dict[str, tuple[int, int]] = {}
        for j in auto_rows.tolist():
            lab = str(suggestions[j])
            n_c, k_c = per_class.get(lab, (0, 0))
            per_class[lab] = (n_c + 1, k_c + int(correct[j]))
        summary = decision.summary
        rec = BatchRecord(
            batch=b, size=int(idx.size), auto=int(auto.sum()), machine_correct=int(correct[auto].sum()),
            human=int((~auto).sum()), audited=int(n_audit), audit_correct=int(correct[audited].sum()),
            training_labels=int(model.counts.sum()) if model is not None else 0, model_accuracy=model_acc,
            threshold=summary.get("threshold"), certified_bound=summary.get("certified_bound"),
            blocked=[str(x["species"]) for x in summary.get("blocked_species", [])], alpha=settings.alpha,
            per_class=per_class, summary=summary,
        )
        records.append(rec)
        if progress is not None:
            progress(rec)
        if b < len(batches) and len(labeled) >= 2:
            rows = np.array(labeled, dtype=np.int64)
            model = train_model(X[rows], [str(t) for t in truth_arr[rows]], classes=classes,
                                random_slice=np.array(slice_flags, dtype=bool), settings=settings,
                                lineage={"replay_batch": b, "labels": int(rows.size)}, refit=rule == "reference")
    return records


def totals(runs: Sequence[Sequence[BatchRecord]], *, from_batch: int = 2) -> dict[str, Any]:
    """Aggregate runs (one list of records per order): automation share over batches >= from_batch, machine-label
    accuracy, guarantee held over batches with machine labels, and per-label machine accuracy."""
    photos = auto = correct = held = with_auto = 0
    per_class: dict[str, list[int]] = {}
    for recs in runs:
        for r in recs:
            if r.batch < from_batch:
                continue
            photos += r.size
            auto += r.auto
            correct += r.machine_correct
            if r.auto:
                with_auto += 1
                held += bool(r.held)
            for lab, (n_c, k_c) in r.per_class.items():
                acc = per_class.setdefault(lab, [0, 0])
                acc[0] += n_c
                acc[1] += k_c
    worst = min(((k / n, lab, n) for lab, (n, k) in per_class.items() if n), default=None)
    return {
        "photos": photos, "auto": auto, "share": auto / photos if photos else 0.0,
        "machine_accuracy": correct / auto if auto else None, "held": held, "batches_with_auto": with_auto,
        "per_class": {lab: (n, k) for lab, (n, k) in sorted(per_class.items())},
        "worst_class": None if worst is None else {"label": worst[1], "accuracy": worst[0], "machine_labels": worst[2]},
    }
