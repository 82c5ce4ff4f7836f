"""The own auto-labeling engine (``labeling.engine: model``): pure numpy, no I/O.

- :func:`train_model` fits a K-fold ensemble of multinomial logistic regressions on the embeddings of every expert
  label and keeps its out-of-fold calibration sample (:class:`TrainedModel`, serialisable with ``to_bytes``).
- :func:`decide_batch` auto-labels the photos whose margin reaches a threshold certified by fixed-sequence testing
  with a Clopper-Pearson bound (error among auto-labels <= alpha with probability >= 1 - delta), guards species,
  routes a random calibration slice and everything else to humans, most informative first.
- :mod:`fieldlabel.engine.replay` replays labeled photos as batches (benchmark and ``fieldlabel evaluate``).

See docs/engine.md.
"""

from fieldlabel.engine.decide import BatchDecision, ItemDecision, calibration_slice, choose_threshold, decide_batch
from fieldlabel.engine.model import TrainedModel, train_model
from fieldlabel.engine.settings import EngineSettings

__all__ = [
    "BatchDecision",
    "EngineSettings",
    "ItemDecision",
    "TrainedModel",
    "calibration_slice",
    "choose_threshold",
    "decide_batch",
    "train_model",
]
