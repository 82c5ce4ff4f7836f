"""The replay loop behind the benchmark and ``fieldlabel evaluate``."""

from __future__ import annotations

import numpy as np
from fieldlabel.engine import EngineSettings
from fieldlabel.engine.classifier import near_duplicate_groups
from fieldlabel.engine.replay import replay, split_batches, totals


def _data(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, 48))
    y = np.repeat(np.arange(6), 80)
    X = centres[y] + 0.45 * rng.standard_normal((y.size, 48))
    X[1] = X[0] * 1.001  # a near-duplicate pair
    return X.astype(np.float32), [f"s{i}" for i in y]


def test_split_keeps_near_duplicates_together_and_covers_everything() -> None:
    X, _ = _data()
    batches = split_batches(X, 5, seed=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(X)))
    groups = near_duplicate_groups(X, 0.97)
    batch_of = np.empty(len(X), dtype=int)
    for b, idx in enumerate(batches):
        batch_of[idx] = b
    for g in np.unique(groups):
        assert len(set(batch_of[groups == g].tolist())) == 1
    assert batch_of[0] == batch_of[1]
    assert max(len(b) for b in batches) - min(len(b) for b in batches) <= 2
    assert [b.tolist() for b in split_batches(X, 5, seed=3)] == [b.tolist() for b in batches]


def test_replay_records() -> None:
    X, y = _data()
    s = EngineSettings(min_examples_per_species=5)
    batches = split_batches(X, 4, seed=0)
    recs = replay(X, y, batches, classes=sorted(set(y)), settings=s, audit_fraction=0.1)
    assert [r.batch for r in recs] == [1, 2, 3, 4]
    first = recs[0]
    assert first.auto == 0 and first.human == first.size and first.training_labels == 0
    assert recs[-1].auto > 0  # the loop learns
    for r in recs:
        assert r.auto + r.human == r.size
        assert r.audited == int(np.ceil(0.1 * r.auto))
        assert sum(n for n, _ in r.per_class.values()) == r.auto
        assert sum(k for _, k in r.per_class.values()) == r.machine_correct
    # training sets grow by each batch's human labels plus its audited machine labels
    for prev, nxt in zip(recs[1:-1], recs[2:], strict=True):
        assert nxt.training_labels == prev.training_labels + prev.human + prev.audited
    t = totals([recs])
    assert t["photos"] == sum(r.size for r in recs[1:])
    assert t["auto"] == sum(r.auto for r in recs[1:])
    assert replay(X, y, batches, classes=sorted(set(y)), settings=s, audit_fraction=0.1) == recs


def test_reference_rule_runs_in_the_same_loop() -> None:
    X, y = _data(1)
    batches = split_batches(X, 3, seed=1)
    recs = replay(X, y, batches, classes=sorted(set(y)), settings=EngineSettings(), rule="reference")
    assert recs[0].auto == 0 and recs[-1].auto > 0
    assert all(r.certified_bound is None for r in recs)  # a point estimate certifies nothing
