"""The reference rule the benchmark compares against: a point estimate, as Ground Truth describes its automated
labeling (accept the most confident photos while the cross-validated accuracy of the accepted stays >= 95 %).

No confidence statement and no species guard; scored with one model refit on all labels (train with
``refit=True``). Kept for comparison only: the engine never uses it to decide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fieldlabel.engine.decide import BatchDecision, ItemDecision, _priorities, calibration_slice
from fieldlabel.engine.model import TrainedModel
from fieldlabel.engine.settings import EngineSettings
from fieldlabel.engine.stats import point_estimate_threshold

METHOD = "point-estimate (cross-validated accuracy of accepted >= 1 - alpha; reference)"


def decide_batch_reference(model: TrainedModel | None, X: np.ndarray, photo_ids: Sequence[str], *,
                           settings: EngineSettings) -> BatchDecision:
    ids = list(photo_ids)
    n = len(ids)
    slice_mask = calibration_slice(ids, settings.calibration_fraction, settings.seed)
    if model is None or n == 0:
        items = [ItemDecision(pid, None, None, False, bool(slice_mask[i]), i) for i, pid in enumerate(ids)]
        return BatchDecision(items, {"method": METHOD, "threshold": None, "coverage": 0.0, "auto_count": 0,
                                     "human_count": n, "certified_bound": None})
    cal = model.calibration
    t = point_estimate_threshold(cal.maxprob, ~cal.errors, target=1 - settings.alpha)
    pred, top1, margin = model.score(X, refit=model.refit_weights is not None)
    auto = np.zeros(n, dtype=bool) if t is None else (top1 >= t) & ~slice_mask
    prio = _priorities(margin, auto)
    items = [ItemDecision(pid, model.classes[int(pred[i])], float(top1[i]), bool(auto[i]), bool(slice_mask[i]),
                          int(prio[i]), float(margin[i])) for i, pid in enumerate(ids)]
    k = int(auto.sum())
    return BatchDecision(items, {"method": METHOD, "threshold": t, "coverage": k / n, "auto_count": k,
                                 "human_count": n - k, "certified_bound": None})
