"""train_model and decide_batch on synthetic embeddings: the guards, the calibration slice, priorities,
serialisation and determinism."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import pytest
from fieldlabel.engine import EngineSettings, TrainedModel, decide_batch, train_model
from fieldlabel.engine.classifier import fit_softmax, near_duplicate_groups
from fieldlabel.engine.decide import BatchDecision, calibration_slice, raised_threshold
from fieldlabel.engine.model import Calibration


def blobs(n_per: dict[str, int], *, dim: int = 64, spread: float = 0.35, seed: int = 0,
          same: tuple[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Gaussian clusters, one per label; labels in ``same`` share one centre (a confusable pair)."""
    rng = np.random.default_rng(seed)
    centres = {lab: rng.standard_normal(dim) for lab in n_per}
    if same is not None:
        centres[same[1]] = centres[same[0]]
    X, y = [], []
    for lab, k in n_per.items():
        X.append(centres[lab] + spread * rng.standard_normal((k, dim)))
        y += [lab] * k
    return np.vstack(X).astype(np.float32), y


LINEAGE = {"taxonomy_hash": "t1", "embedding_model": "test"}


def test_fit_softmax_reaches_the_optimum() -> None:
    """First-order optimality of the penalised loss (gradient ~ 0) and separable data classified."""
    X, y = blobs({"a": 40, "b": 40, "c": 40}, dim=8, seed=3)
    yi = np.array([{"a": 0, "b": 1, "c": 2}[v] for v in y])
    W, b, _ = fit_softmax(X, yi, 3, l2_c=1.0, max_iter=500)
    Z = X @ W + b
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    Y = np.eye(3)[yi]
    grad_w = X.T @ (P - Y) / len(y) + W / (1.0 * len(y))
    assert np.abs(grad_w).max() < 1e-4
    assert np.abs((P - Y).sum(0)).max() / len(y) < 1e-4
    assert np.mean(P.argmax(1) == yi) == 1.0


def test_near_duplicate_groups() -> None:
    X = np.array([[1, 0, 0], [0.999, 0.01, 0], [0, 1, 0], [0, 0, 1], [0.01, 0, 0.999]], dtype=np.float32)
    assert near_duplicate_groups(X, 0.97).tolist() == [0, 0, 1, 2, 2]


def test_first_batch_goes_to_humans() -> None:
    d = decide_batch(None, np.zeros((5, 4)), [f"p{i}" for i in range(5)], settings=EngineSettings())
    assert not any(i.auto for i in d.items)
    assert d.summary["auto_count"] == 0 and d.summary["coverage"] == 0.0
    assert sorted(i.priority for i in d.items) == list(range(5))


def test_easy_species_are_auto_labeled_and_the_summary_is_complete() -> None:
    X, y = blobs({f"s{i}": 40 for i in range(5)}, seed=1)
    s = EngineSettings()
    model = train_model(X, y, classes=[f"s{i}" for i in range(5)] + ["unknown"], random_slice=None, settings=s,
                        lineage=LINEAGE)
    Xn, yn = blobs({f"s{i}": 20 for i in range(5)}, seed=1)  # same centres, new draws
    Xn = Xn + 0.35 * np.random.default_rng(9).standard_normal(Xn.shape).astype(np.float32)
    d = decide_batch(model, Xn, [f"n{i}" for i in range(len(yn))], settings=s)
    auto = [it for it in d.items if it.auto]
    assert len(auto) > 0.8 * len(yn)
    assert all(it.suggestion == yn[i] for i, it in enumerate(d.items) if it.auto)
    for key in ("method", "alpha", "delta", "threshold", "coverage", "auto_count", "human_count",
                "calibration_size", "certified_bound", "blocked_species"):
        assert key in d.summary
    assert d.summary["certified_bound"] <= 0.05
    assert d.summary["calibration_size"] == 200
    assert model.metadata["lineage"] == LINEAGE
    assert model.predict_proba(Xn).shape == (100, 6)
    assert np.allclose(model.predict_proba(Xn)[:, 5], 0.0)  # no example of 'unknown': probability 0


def test_nothing_is_auto_labeled_when_the_bound_cannot_be_met() -> None:
    """Perfectly separable species, but 40 calibration items: 59 error-free ones are needed for 5 % at 95 %."""
    X, y = blobs({"a": 20, "b": 20}, seed=2, spread=0.3)
    s = EngineSettings(min_examples_per_species=5, guarantee="population", start_errors=0)
    model = train_model(X, y, classes=["a", "b"], random_slice=None, settings=s, lineage=LINEAGE)
    assert model.metadata["validation"]["out_of_fold_accuracy"] == 1.0
    d = decide_batch(model, X, [f"p{i}" for i in range(40)], settings=s)
    assert d.summary["auto_count"] == 0 and d.summary["threshold"] is None and d.summary["certified_bound"] is None
    # with 60 error-free items it certifies
    X2, y2 = blobs({"a": 30, "b": 30}, seed=2, spread=0.3)
    model2 = train_model(X2, y2, classes=["a", "b"], random_slice=None, settings=s, lineage=LINEAGE)
    assert decide_batch(model2, X2, [f"p{i}" for i in range(60)], settings=s).summary["auto_count"] > 0
    # the default sequence starts where one error could still pass (93 items), so 60 are not enough for it
    default = EngineSettings(min_examples_per_species=5)
    assert decide_batch(model2, X2, [f"p{i}" for i in range(60)], settings=default).summary["auto_count"] == 0
    # the batch guarantee asks more: 60 photos admitted from a batch of 60 must all be right w.p. 97.5 %, which
    # 60 error-free calibration items cannot show
    batch = EngineSettings(min_examples_per_species=5, guarantee="batch")
    assert decide_batch(model2, X2, [f"p{i}" for i in range(60)], settings=batch).summary["auto_count"] == 0


def test_a_species_with_too_few_examples_is_never_auto_labeled() -> None:
    X, y = blobs({"a": 60, "b": 60, "rare": 6}, seed=4, spread=0.3)
    s = EngineSettings(min_examples_per_species=10, guarantee="population")
    model = train_model(X, y, classes=["a", "b", "rare"], random_slice=None, settings=s, lineage=LINEAGE)
    d = decide_batch(model, X, [f"p{i}" for i in range(len(y))], settings=s)
    rare = [it for it, lab in zip(d.items, y, strict=True) if lab == "rare"]
    assert all(it.suggestion == "rare" and not it.auto for it in rare)  # suggested to humans, never auto
    assert any(it.auto for it in d.items)
    assert {"species": "rare", "reason": "6 human-confirmed examples, fewer than 10"} in d.summary["blocked_species"]
    # lowering the minimum lets it through
    s5 = EngineSettings(min_examples_per_species=5, guarantee="population")
    d5 = decide_batch(model, X, [f"p{i}" for i in range(len(y))], settings=s5)
    assert "rare" not in [b["species"] for b in d5.summary["blocked_species"]]


def test_never_auto_labels_are_blocked() -> None:
    X, y = blobs({"a": 100, "unknown": 60}, seed=5, spread=0.3)
    s = EngineSettings(never_auto=("unknown",), guarantee="population")
    model = train_model(X, y, classes=["a", "unknown"], random_slice=None, settings=s, lineage=LINEAGE)
    d = decide_batch(model, X, [f"p{i}" for i in range(len(y))], settings=s)
    assert not any(it.auto and it.suggestion == "unknown" for it in d.items)
    assert any(it.auto and it.suggestion == "a" for it in d.items)


def test_a_confusable_pair_stops_being_auto_labeled_while_the_rest_continues() -> None:
    """'vad' and 'banyan' are one tree under two names: machine labels into either would be ~50 % wrong."""
    counts = {f"s{i}": 50 for i in range(6)} | {"vad": 60, "banyan": 60}
    X, y = blobs(counts, seed=6, spread=0.3, same=("vad", "banyan"))
    s = EngineSettings(guarantee="population")
    model = train_model(X, y, classes=list(counts), random_slice=None, settings=s, lineage=LINEAGE)
    Xn, yn = blobs(counts, seed=6, spread=0.3, same=("vad", "banyan"))
    Xn = Xn + 0.3 * np.random.default_rng(1).standard_normal(Xn.shape).astype(np.float32)
    d = decide_batch(model, Xn, [f"n{i}" for i in range(len(yn))], settings=s)
    pair_auto = [(it, t) for it, t in zip(d.items, yn, strict=True) if it.auto and it.suggestion in ("vad", "banyan")]
    wrong = sum(it.suggestion != t for it, t in pair_auto)
    assert wrong <= 0.1 * max(1, len(pair_auto))
    others = [it for it, t in zip(d.items, yn, strict=True) if t not in ("vad", "banyan")]
    assert sum(it.auto for it in others) > 0.7 * len(others)


def test_the_calibration_slice_goes_to_humans_whatever_its_score() -> None:
    X, y = blobs({f"s{i}": 40 for i in range(4)}, seed=7, spread=0.3)
    s = EngineSettings(calibration_fraction=0.1)
    model = train_model(X, y, classes=[f"s{i}" for i in range(4)], random_slice=None, settings=s, lineage=LINEAGE)
    ids = [f"p{i}" for i in range(len(y))]
    d = decide_batch(model, X, ids, settings=s)
    flagged = [it for it in d.items if it.calibration]
    assert len(flagged) == 16  # ceil(0.1 x 160)
    assert not any(it.auto for it in flagged)
    assert np.array_equal(calibration_slice(ids, 0.1, 0), np.array([it.calibration for it in d.items]))
    assert calibration_slice(ids, 0.0, 0).sum() == 0


def test_humans_get_the_least_certain_photos_first() -> None:
    X, y = blobs({"a": 50, "b": 50, "c": 50}, seed=8, spread=0.9)
    s = EngineSettings()
    model = train_model(X, y, classes=["a", "b", "c"], random_slice=None, settings=s, lineage=LINEAGE)
    d = decide_batch(model, X, [f"p{i}" for i in range(len(y))], settings=s)
    ranked = sorted(d.items, key=lambda it: it.priority)
    assert [it.priority for it in ranked] == list(range(len(y)))
    human = [it for it in ranked if not it.auto]
    margins = [it.margin for it in human]
    assert margins == sorted(margins)
    assert all(not it.auto for it in ranked[:len(human)])  # every human photo before any machine-labeled one


def test_model_round_trip_and_determinism() -> None:
    X, y = blobs({"a": 30, "b": 30, "c": 30}, seed=9, spread=0.6)
    s = EngineSettings(seed=3)
    rs = np.zeros(len(y), dtype=bool)
    rs[::10] = True
    m1 = train_model(X, y, classes=["a", "b", "c"], random_slice=rs, settings=s, lineage=LINEAGE, refit=True)
    m2 = train_model(X, y, classes=["a", "b", "c"], random_slice=rs, settings=s, lineage=LINEAGE, refit=True)
    assert m1.to_bytes() == m2.to_bytes()
    back = TrainedModel.from_bytes(m1.to_bytes())
    assert back.classes == m1.classes and back.metadata == m1.metadata
    assert np.array_equal(back.predict_proba(X), m1.predict_proba(X))
    assert np.array_equal(back.predict_proba(X, refit=True), m1.predict_proba(X, refit=True))
    assert np.array_equal(back.calibration.random_slice, rs)
    ids = [f"p{i}" for i in range(len(y))]
    assert decide_batch(back, X, ids, settings=s) == decide_batch(m1, X, ids, settings=s)
    # another seed changes the folds, so the calibration sample's scores
    m3 = train_model(X, y, classes=["a", "b", "c"], random_slice=rs, settings=EngineSettings(seed=4),
                     lineage=LINEAGE)
    assert not np.array_equal(m3.calibration.margin, m1.calibration.margin)


def test_bad_inputs_fail_with_a_message() -> None:
    X, y = blobs({"a": 5, "b": 5}, seed=10)
    with pytest.raises(ValueError, match="not one of the model's classes"):
        train_model(X, y[:-1] + ["zz"], classes=["a", "b"], random_slice=None, settings=EngineSettings(),
                    lineage={})
    with pytest.raises(ValueError, match="invalid alpha"):
        EngineSettings(alpha=0)
    with pytest.raises(ValueError, match="not an engine model"):
        TrainedModel.from_bytes(_npz_with_header({"format": "other"}))


def _npz_with_header(header: dict[str, str]) -> bytes:
    import io
    import json

    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    return buf.getvalue()


def test_ensembles_combine_fold_models_as_documented() -> None:
    """Geometric: softmax of the mean logits when every fold saw every class; arithmetic: mean probability.
    A class one fold never saw is averaged over the others, a class no fold saw gets probability 0."""
    from fieldlabel.engine.classifier import _ABSENT_BIAS, ensemble_proba

    rng = np.random.default_rng(0)
    F = rng.standard_normal((7, 3)).astype(np.float32)
    Ws = rng.standard_normal((2, 3, 4)).astype(np.float32)
    bs = rng.standard_normal((2, 4)).astype(np.float32)

    def softmax(Z: np.ndarray) -> np.ndarray:
        E = np.exp(Z - Z.max(1, keepdims=True))
        return E / E.sum(1, keepdims=True)

    logits = [F @ Ws[k] + bs[k] for k in range(2)]
    assert np.allclose(ensemble_proba(F, Ws, bs, combine="geometric"), softmax((logits[0] + logits[1]) / 2),
                       atol=1e-6)
    assert np.allclose(ensemble_proba(F, Ws, bs, combine="mean"), (softmax(logits[0]) + softmax(logits[1])) / 2,
                       atol=1e-6)
    # class 3 unseen by fold 1, class 2 unseen by both
    Ws[1][:, 3] = 0.0
    Ws[:, :, 2] = 0.0
    bs[1, 3] = bs[0, 2] = bs[1, 2] = _ABSENT_BIAS
    P = ensemble_proba(F, Ws, bs, combine="geometric")
    with np.errstate(divide="ignore"):  # log 0 of the unseen classes, which the expectation does not use
        lp0 = np.log(softmax(F @ Ws[0] + bs[0]))
        lp1 = np.log(softmax(F @ Ws[1] + bs[1]))
    expected = np.stack([(lp0[:, 0] + lp1[:, 0]) / 2, (lp0[:, 1] + lp1[:, 1]) / 2, np.full(7, -np.inf), lp0[:, 3]], 1)
    assert np.allclose(P, softmax(expected), atol=1e-6)
    assert np.all(P[:, 2] == 0.0) and np.all(P[:, 3] > 0.0)
    with pytest.raises(ValueError, match="combine"):
        ensemble_proba(F, Ws, bs, combine="median")


def test_models_without_the_ensemble_key_score_by_the_mean() -> None:
    """Model files written before ``ensemble`` existed keep the scores they were decided with."""
    import dataclasses

    from fieldlabel.engine.classifier import ensemble_proba

    X, y = blobs({"a": 30, "b": 30, "c": 30}, seed=11, spread=0.8)
    model = train_model(X, y, classes=["a", "b", "c"], random_slice=None,
                        settings=EngineSettings(ensemble="geometric"), lineage={})
    assert model.ensemble == "geometric"
    F = model.features(X)
    assert np.array_equal(model.predict_proba(X), ensemble_proba(F, model.weights, model.biases, combine="geometric"))
    training = {k: v for k, v in model.metadata["training"].items() if k != "ensemble"}
    old = dataclasses.replace(model, metadata=model.metadata | {"training": training})
    back = TrainedModel.from_bytes(old.to_bytes())
    assert back.ensemble == "mean"
    assert np.array_equal(back.predict_proba(X), ensemble_proba(F, model.weights, model.biases, combine="mean"))
    with pytest.raises(ValueError, match="invalid ensemble"):
        EngineSettings(ensemble="median")


@dataclass(frozen=True)
class _ScriptedModel:
    """A model whose calibration sample is given and whose score of a photo is read from its row: column 0 the
    predicted class, column 1 the margin. It isolates the guard's decision from training."""

    classes: tuple[str, ...]
    counts: np.ndarray
    calibration: Calibration

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        margin = X[:, 1].astype(np.float32)
        return X[:, 0].astype(np.int64), (1 + margin) / 2, margin


def _one_species_wrong_at_low_margins(right_c: int = 20, wrong_c: int = 12) -> _ScriptedModel:
    """Species a and b: 388 right calibration items each at margins 0.25..1 and 60 wrong ones at 4/128 (so the
    certified threshold lands near 0.25). Species c: ``right_c`` right items at margins 100/128.. and ``wrong_c`` wrong
    ones (true label a) at 64/128, 62/128, ...: at the certified threshold c shows 12 errors by default, above 62/128
    two.
    Margins are multiples of 1/128 (exact in float32)."""
    ab = np.tile(np.arange(32, 129), 4) / 128
    margin = np.concatenate([ab, ab, np.full(60, 4 / 128),
                             np.arange(100, 100 + right_c) / 128, np.arange(64, 64 - 2 * wrong_c, -2) / 128])
    pred = np.concatenate([np.zeros(ab.size), np.ones(ab.size), np.zeros(60), np.full(right_c, 2), np.full(wrong_c, 2)])
    label = np.concatenate([np.zeros(ab.size), np.ones(ab.size), np.ones(60), np.full(right_c, 2), np.zeros(wrong_c)])
    cal = Calibration(margin=margin.astype(np.float32), maxprob=((1 + margin) / 2).astype(np.float32),
                      pred=pred.astype(np.int64), label=label.astype(np.int64),
                      random_slice=np.zeros(margin.size, dtype=bool))
    counts = np.bincount(cal.label, minlength=3).astype(np.int64)
    return _ScriptedModel(("a", "b", "c"), counts, cal)


# The batch: (predicted class, margin) per photo.
_GUARD_BATCH = np.array([[0, 40 / 128], [0, 100 / 128], [0, 0.1], [2, 0.1], [2, 40 / 128], [2, 60 / 128],
                         [2, 62 / 128], [2, 100 / 128], [2, 1.0]], dtype=np.float32)


def _decide(model: _ScriptedModel, settings: EngineSettings) -> BatchDecision:
    ids = [f"p{i}" for i in range(len(_GUARD_BATCH))]
    return decide_batch(cast(TrainedModel, model), _GUARD_BATCH, ids, settings=settings)


def test_block_blocks_a_species_wrong_at_low_margins_and_raise_labels_only_its_high_margin_photos() -> None:
    model = _one_species_wrong_at_low_margins()
    block = _decide(model, EngineSettings(calibration_fraction=0.0))
    raised = _decide(model, EngineSettings(calibration_fraction=0.0, guard_mode="raise"))
    t = block.summary["threshold"]
    assert 0.2 < t <= 40 / 128
    # block: c goes to humans entirely, a is auto-labeled above the certified threshold
    assert [it.auto for it in block.items] == [True, True, False, False, False, False, False, False, False]
    assert [b["species"] for b in block.summary["blocked_species"]] == ["c"]
    assert block.summary["species_thresholds"] == []
    # raise: c's own threshold is the lowest at which its items pass the guard (2 of 22 wrong: (2 + 2 x pool
    # error) / 24 <= 10 %; at 60/128 3 of 23 are wrong, which fails), and only c's photos at or above it go
    assert raised.summary["species_thresholds"] == [
        {"species": "c", "threshold": 62 / 128,
         "reason": "class-conditional guard: 12 of 32 accepted calibration items wrong (limit 10%); "
                   "at this threshold 2 of 22 wrong"}]
    assert raised.summary["blocked_species"] == []
    assert [it.auto for it in raised.items] == [True, True, False, False, False, False, True, True, True]
    # nothing moves below the certified threshold: the threshold and the bound printed are the block mode's
    for key in ("threshold", "certified_bound", "calibration_accepted", "calibration_errors"):
        assert raised.summary[key] == block.summary[key]
    # machine labels only ever removed relative to the certified threshold alone (no guard at all)
    unguarded = _decide(model, EngineSettings(calibration_fraction=0.0, class_error_limit=1.0))
    assert all(u or not r for u, r in zip(unguarded.auto_mask, raised.auto_mask, strict=True))
    assert unguarded.auto_mask.sum() > raised.auto_mask.sum() > block.auto_mask.sum()
    # the summary goes through JSON (the batch item stores it as text) unchanged, and its thresholds are Python
    # floats (a numpy scalar's repr is not a number DynamoDB's Decimal conversion can read)
    assert json.loads(json.dumps(raised.summary)) == raised.summary
    assert all(type(r["threshold"]) is float for r in raised.summary["species_thresholds"])


def test_raise_blocks_when_no_threshold_leaves_enough_items() -> None:
    """With 5 right items above the errors, 10 items at a raised threshold include >= 5 wrong ones: blocked."""
    model = _one_species_wrong_at_low_margins(right_c=5)
    d = _decide(model, EngineSettings(calibration_fraction=0.0, guard_mode="raise", min_examples_per_species=5))
    assert d.summary["species_thresholds"] == []
    assert [b["species"] for b in d.summary["blocked_species"]] == ["c"]
    assert d.summary["blocked_species"][0]["reason"].endswith("no higher threshold passes it")
    assert not any(it.auto for it, (c, _) in zip(d.items, _GUARD_BATCH, strict=True) if c == 2)
    # fewer required items let the 5 right ones carry a threshold of their own (5 items, none wrong; the
    # confusion guard, which 5 right of 17 predictions would trip, is off to isolate this one)
    d3 = _decide(model, EngineSettings(calibration_fraction=0.0, guard_mode="raise", min_examples_per_species=5,
                                       raise_min_items=5, min_class_precision=0.0))
    assert [r["threshold"] for r in d3.summary["species_thresholds"]] == [100 / 128]


def test_raised_threshold_is_the_lowest_candidate_that_passes() -> None:
    margin = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    errors = np.array([False, True, False, False, True, True, False])
    s = EngineSettings(raise_min_items=3)
    # smoothed with no prior error: at 0.5 2 of 5 wrong (2/7), at 0.6 1 of 4 (1/6), at 0.7 1 of 3 (1/5), above too
    # few items: nothing passes 10 %; 20 % is passed at 0.7 and, lowest, at 0.6
    assert raised_threshold(margin, errors, start=0.3, prior_error=0.0, settings=s, delta=0.05) is None
    loose = EngineSettings(raise_min_items=3, raise_error_limit=0.2, class_error_limit=0.2)
    assert raised_threshold(margin, errors, start=0.3, prior_error=0.0, settings=loose, delta=0.05) == (0.6, 4, 1)
    # the pool's error enters the smoothing as two pseudo-items: at 0.6 (1 + 2 x 0.1) / 6 = 0.2 still passes
    assert raised_threshold(margin, errors, start=0.3, prior_error=0.1, settings=loose, delta=0.05) == (0.6, 4, 1)
    assert raised_threshold(margin, errors, start=0.3, prior_error=0.11, settings=loose, delta=0.05) is None
    # never below the start, even when a lower candidate would pass (0.7: 1 of 3, 0.2)
    two = EngineSettings(raise_min_items=2, raise_error_limit=0.3, class_error_limit=0.3)
    assert raised_threshold(margin, errors, start=0.75, prior_error=0.0, settings=two, delta=0.05) == (0.8, 2, 1)
    # the Clopper-Pearson bound asks for more items than the smoothed estimate: with no error, 4 items bound the
    # error at 1 - 0.05^(1/4) = 53 % (fails 50 %), 5 at 45 %
    right = np.zeros(7, dtype=bool)
    cp = EngineSettings(raise_min_items=1, raise_bound="clopper-pearson", raise_error_limit=0.5,
                        class_error_limit=0.5)
    smoothed = EngineSettings(raise_min_items=1, raise_error_limit=0.5, class_error_limit=0.5)
    assert raised_threshold(margin, right, start=0.55, prior_error=0.0, settings=cp, delta=0.05) is None
    assert raised_threshold(margin, right, start=0.45, prior_error=0.0, settings=cp, delta=0.05) == (0.5, 5, 0)
    assert raised_threshold(margin, right, start=0.55, prior_error=0.0, settings=smoothed, delta=0.05) == (0.6, 4, 0)
    for bad in ({"guard_mode": "lower"}, {"raise_min_items": 0}, {"raise_error_limit": 0.0},
                {"raise_error_limit": 0.2},  # above class_error_limit: raising would admit what blocking refuses
                {"raise_bound": "wilson"}):
        with pytest.raises(ValueError, match=f"invalid {next(iter(bad))}"):
            EngineSettings(**bad)  # type: ignore[arg-type]


def test_a_stricter_raise_limit_raises_species_the_blocking_limit_lets_through() -> None:
    """c: 1 of 16 accepted calibration items wrong, smoothed ~6 %: within the 10 % blocking limit, above a 5 % raise
    limit. With raise_error_limit=0.05 it is auto-labeled only above the wrong item (15 right items there); when no
    threshold leaves enough items, it keeps the certified threshold (it is not blocked: it passes the guard)."""
    model = _one_species_wrong_at_low_margins(right_c=15, wrong_c=1)
    base = EngineSettings(calibration_fraction=0.0)
    block = _decide(model, base)
    assert block.summary["blocked_species"] == [] and block.auto_mask[4]  # c at 40/128: above the certified t
    strict = _decide(model, replace(base, guard_mode="raise", raise_error_limit=0.05))
    assert [(r["species"], r["threshold"]) for r in strict.summary["species_thresholds"]] == [("c", 100 / 128)]
    assert strict.summary["species_thresholds"][0]["reason"] == (
        "class-conditional guard: 1 of 16 accepted calibration items wrong (limit 5%); at this threshold 0 of 15 wrong")
    assert [it.auto for it in strict.items] == [True, True, False, False, False, False, False, True, True]
    kept = _decide(model, replace(base, guard_mode="raise", raise_error_limit=0.05, raise_min_items=16))
    assert kept.summary["species_thresholds"] == [] and kept.summary["blocked_species"] == []
    assert np.array_equal(kept.auto_mask, block.auto_mask)
