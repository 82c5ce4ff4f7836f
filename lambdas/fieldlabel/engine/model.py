"""``train_model`` and the serialisable ``TrainedModel`` (the K-fold ensemble plus its calibration sample)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fieldlabel.engine.classifier import (
    Projection,
    class_index,
    effective_folds,
    ensemble_proba,
    fit_projection,
    fold_fits,
    grouped_stratified_folds,
    near_duplicate_groups,
    stable_seed,
    top2_margin,
)
from fieldlabel.engine.settings import EngineSettings

FORMAT = "fieldlabel-engine-model/1"


@dataclass(frozen=True)
class Calibration:
    """Out-of-fold view of every expert label the ensemble was trained on (the threshold rule's sample).

    All arrays have one entry per expert label: ``margin`` and ``maxprob`` of the out-of-fold model, its predicted
    class ``pred`` and the expert ``label`` (indices into the model's classes), and ``random_slice`` (the label
    came from a batch's random calibration slice).
    """

    margin: np.ndarray
    maxprob: np.ndarray
    pred: np.ndarray
    label: np.ndarray
    random_slice: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        return self.pred != self.label


@dataclass(frozen=True)
class TrainedModel:
    """A trained engine model: projection, K fold models, calibration sample, per-class counts, metadata.

    ``refit_weights``/``refit_bias`` exist only when trained with ``refit=True`` (the benchmark's reference rule,
    which scores with one model refit on all labels, as Ground Truth's description implies).
    """

    classes: tuple[str, ...]
    projection: Projection
    weights: np.ndarray  # (K, d, C) float32
    biases: np.ndarray  # (K, C) float32
    calibration: Calibration
    counts: np.ndarray  # (C,) expert labels per class
    metadata: dict[str, Any] = field(default_factory=dict)
    refit_weights: np.ndarray | None = None
    refit_bias: np.ndarray | None = None

    def features(self, X: np.ndarray) -> np.ndarray:
        return self.projection.apply(np.asarray(X, dtype=np.float32))

    def predict_proba(self, X: np.ndarray, *, refit: bool = False) -> np.ndarray:
        """Class probabilities (n, len(classes)): the average of the fold models (or the refit model)."""
        F = self.features(X)
        if refit:
            if self.refit_weights is None or self.refit_bias is None:
                raise ValueError("this model was trained without refit=True")
            return ensemble_proba(F, self.refit_weights[None], self.refit_bias[None])
        return ensemble_proba(F, self.weights, self.biases, combine=self.ensemble)

    @property
    def ensemble(self) -> str:
        """How the fold models' probabilities are combined (``EngineSettings.ensemble`` at training; models written
        before the setting existed carry no key and were scored by the arithmetic mean)."""
        return str(self.metadata.get("training", {}).get("ensemble", "mean"))

    def score(self, X: np.ndarray, *, refit: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted class index, top-1 probability, top-1 minus top-2 margin) per row."""
        return top2_margin(self.predict_proba(X, refit=refit))

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "mean": self.projection.mean, "components": self.projection.components,
            "weights": self.weights, "biases": self.biases, "counts": self.counts,
            "cal_margin": self.calibration.margin, "cal_maxprob": self.calibration.maxprob,
            "cal_pred": self.calibration.pred, "cal_label": self.calibration.label,
            "cal_random_slice": self.calibration.random_slice,
        }
        if self.refit_weights is not None and self.refit_bias is not None:
            arrays["refit_weights"] = self.refit_weights
            arrays["refit_bias"] = self.refit_bias
        header = {"format": FORMAT, "classes": list(self.classes), "metadata": self.metadata}
        arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("format") != FORMAT:
                raise ValueError(f"not an engine model (format {header.get('format')!r}, expected {FORMAT!r})")
            return cls(
                classes=tuple(header["classes"]),
                projection=Projection(z["mean"], z["components"]),
                weights=z["weights"], biases=z["biases"],
                calibration=Calibration(z["cal_margin"], z["cal_maxprob"], z["cal_pred"], z["cal_label"],
                                        z["cal_random_slice"]),
                counts=z["counts"], metadata=header["metadata"],
                refit_weights=z["refit_weights"] if "refit_weights" in z.files else None,
                refit_bias=z["refit_bias"] if "refit_bias" in z.files else None,
            )


def train_model(X: np.ndarray, y: Sequence[str], *, classes: Sequence[str], random_slice: np.ndarray | None,
                settings: EngineSettings, lineage: Mapping[str, Any], refit: bool = False) -> TrainedModel:
    """Train the K-fold ensemble on expert labels and keep its out-of-fold calibration sample.

    Args:
        X: raw embeddings (n, D). y: expert labels (each one of ``classes``).
        classes: the taxonomy's labels (incl. the unknown label); classes without examples get probability 0.
        random_slice: True for labels from a batch's random calibration slice (None: none are).
        lineage: stored verbatim in ``metadata["lineage"]``.
        refit: also fit one model on all labels (only the benchmark's reference rule uses it).
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] != len(y):
        raise ValueError(f"X must be (n, D) with n = len(y) = {len(y)}; got {X.shape}")
    if X.shape[0] < 2:
        raise ValueError("need at least 2 expert labels to train")
    if len(set(classes)) != len(classes):
        raise ValueError("classes must be unique")
    cls = tuple(classes)
    labels = class_index(y, cls)
    n = labels.size
    rs = np.zeros(n, dtype=bool) if random_slice is None else np.asarray(random_slice, dtype=bool)
    if rs.shape != (n,):
        raise ValueError("random_slice must have one flag per label")
    proj = fit_projection(X, settings.max_dim, stable_seed(settings.seed, "projection"))
    F = proj.apply(X)
    groups = near_duplicate_groups(X, settings.duplicate_cosine, seed=settings.seed)
    k = effective_folds(n, settings.folds)
    folds = grouped_stratified_folds(labels, groups, k, stable_seed(settings.seed, "folds"))
    Ws, bs, oof, iters = fold_fits(F, labels, folds, len(cls), k, l2_c=settings.l2_c, max_iter=settings.max_iter)
    pred, maxprob, margin = top2_margin(oof)
    cal = Calibration(margin.astype(np.float32), maxprob.astype(np.float32), pred.astype(np.int32),
                      labels.astype(np.int32), rs)
    refit_w = refit_b = None
    if refit:
        rw, rb, _, _ = fold_fits(F, labels, np.ones(n, dtype=np.int64), len(cls), 1, l2_c=settings.l2_c,
                                 max_iter=settings.max_iter)
        refit_w, refit_b = rw[0], rb[0]
    counts = np.bincount(labels, minlength=len(cls)).astype(np.int64)
    accuracy = float(np.mean(pred == labels))
    metadata = {
        "lineage": dict(lineage),
        "validation": {
            "method": f"{k}-fold cross-validation grouped by near-duplicates (cosine > {settings.duplicate_cosine})",
            "out_of_fold_accuracy": accuracy,
            "labels": int(n),
            "random_slice_labels": int(rs.sum()),
            "near_duplicate_groups": int(groups.max()) + 1,
            "classes_with_labels": int(np.sum(counts > 0)),
        },
        "training": {
            "folds": k, "dim": int(F.shape[1]), "input_dim": int(X.shape[1]), "l2_c": settings.l2_c,
            "ensemble": settings.ensemble,
            "iterations": iters,
        },
    }
    return TrainedModel(cls, proj, Ws, bs, cal, counts, metadata, refit_w, refit_b)
