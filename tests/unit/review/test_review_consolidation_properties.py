"""Properties of the consolidation over random answer sets: sole answers stand, reviewer ids are only names."""

from __future__ import annotations

import numpy as np
from fieldlabel.review.consolidation import REASONS, ConsolidationConfig, WorkerPrior, consolidate
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def answer_sets(draw, max_items=40, max_workers=8):
    """Random batches: K from 2 to 400, 1-4 answers per photo (some photos get one), optional stored priors."""
    k = draw(st.sampled_from([2, 3, 4, 7, 12, 400]))
    n_workers = draw(st.integers(1, max_workers))
    n_items = draw(st.integers(1, max_items))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    per_item = rng.integers(1, min(4, n_workers) + 1, n_items)
    if draw(st.booleans()):
        per_item[:] = 1  # the k = 1 regime
    items, workers, labels = [], [], []
    truth = rng.integers(0, k, n_items)
    skill = rng.uniform(0.2, 1.0, n_workers)
    for i in range(n_items):
        for w in rng.choice(n_workers, per_item[i], replace=False):
            items.append(i)
            workers.append(int(w))
            labels.append(int(truth[i] if rng.random() < skill[w] else rng.integers(0, k)))
    priors = None
    if draw(st.booleans()):
        priors = []
        for _ in range(n_workers):
            n = float(rng.integers(0, 2000))
            priors.append(WorkerPrior(answers=n, correct=float(rng.uniform(0.0, 1.0)) * n))
    model = draw(st.sampled_from(["auto", "auto", "one_coin", "full"]))
    threshold = draw(st.sampled_from([0.5, 0.9, 0.99]))
    return (
        np.array(items), np.array(workers), np.array(labels), n_items, n_workers, k, priors,
        ConsolidationConfig(model=model, adjudication_threshold=threshold),
    )


@settings(max_examples=120, deadline=None)
@given(answer_sets())
def test_a_sole_answer_is_never_changed_and_is_flagged_exactly_when_its_reviewer_is_below_the_threshold(data):
    item, worker, label, n_items, n_workers, k, priors, cfg = data
    res = consolidate(item, worker, label, n_items=n_items, n_workers=n_workers, n_classes=k, priors=priors,
                      config=cfg)
    counts = np.bincount(item, minlength=n_items)
    for i in np.flatnonzero(counts == 1):
        (j,) = np.flatnonzero(item == i)
        # The sole answer stands...
        assert res.label[i] == label[j]
        # ...its confidence is the reviewer's reliability...
        assert res.confidence[i] == res.worker_accuracy[worker[j]]
        # ...and it is flagged, with the reason, exactly when that is below the threshold.
        low = res.confidence[i] < cfg.adjudication_threshold
        assert ("sole_answer_low_reliability" in res.reasons(i)) == low
        if low:
            assert res.needs_adjudication[i]
    # Every flag states a reason and no reason goes without a flag.
    for i in range(n_items):
        assert bool(res.reasons(i)) == bool(res.needs_adjudication[i])
        assert set(res.reasons(i)) <= set(REASONS)


@settings(max_examples=120, deadline=None)
@given(answer_sets(), st.integers(0, 2**32 - 1))
def test_renaming_reviewers_changes_nothing(data, seed):
    item, worker, label, n_items, n_workers, k, priors, cfg = data
    perm = np.random.default_rng(seed).permutation(n_workers)  # reviewer w is called perm[w] now
    renamed_priors = None
    if priors is not None:
        renamed_priors = [WorkerPrior()] * n_workers
        for w, p in enumerate(priors):
            renamed_priors[perm[w]] = p
    a = consolidate(item, worker, label, n_items=n_items, n_workers=n_workers, n_classes=k, priors=priors, config=cfg)
    b = consolidate(item, perm[worker], label, n_items=n_items, n_workers=n_workers, n_classes=k,
                    priors=renamed_priors, config=cfg)
    assert a.model == b.model
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.reason_bits, b.reason_bits)
    np.testing.assert_allclose(a.worker_accuracy, b.worker_accuracy[perm], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.worker_expected_correct, b.worker_expected_correct[perm], rtol=0, atol=1e-9)
