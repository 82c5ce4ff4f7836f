"""Reliability-weighted consolidation of expert answers (Dawid-Skene style EM).

Two parameterisations of a reviewer, chosen by the number of classes K (see docs/review.md, "Consolidation"):

* ``full`` (K <= ``full_confusion_max_classes``): the classic Dawid-Skene model, one K x K confusion matrix per
  reviewer, estimated per batch and seeded by the reviewer's stored accuracy.
* ``one_coin`` (larger K, the taxonomy case with hundreds of species): one accuracy per reviewer, errors spread
  uniformly over the other K-1 classes, plus class priors. A per-reviewer K x K matrix would need K^2 parameters
  (90,000 for 300 species) from a few hundred answers each; the one-coin model needs one number and can be computed
  in O(answers) per iteration, because every class nobody voted for has the same likelihood within a photo.

Both models keep a Beta prior on each reviewer's accuracy built from the counts stored in the reviewers table, so a
reviewer seen for the first time starts at ``new_worker_accuracy`` and a long-standing reviewer is not re-learned
from one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-12
_MIN_ACCURACY = 0.01
_MAX_ACCURACY = 0.999


@dataclass(frozen=True)
class ConsolidationConfig:
    """Tunables of the consolidation; defaults are documented in docs/review.md."""

    adjudication_threshold: float = 0.9
    low_reliability: float = 0.7
    full_confusion_max_classes: int = 10
    new_worker_accuracy: float = 0.8
    new_worker_weight: float = 4.0
    max_prior_weight: float = 200.0
    class_prior_smoothing: float = 1.0
    max_iter: int = 100
    tol: float = 1e-7
    model: str = "auto"  # "auto", "full" or "one_coin"


@dataclass(frozen=True)
class WorkerPrior:
    """What the reviewers table remembers about one reviewer: answers given and the expected number correct."""

    answers: float = 0.0
    correct: float = 0.0


@dataclass
class ConsolidationResult:
    """Per-item consensus and per-worker reliability of one consolidation run (arrays indexed like the inputs)."""

    label: np.ndarray  # int, -1 for items without answers
    confidence: np.ndarray  # posterior of ``label``
    agreement: np.ndarray  # share of the item's answers equal to ``label``
    answers: np.ndarray  # number of answers per item
    tie: np.ndarray  # bool: the top vote count is shared by two or more labels
    needs_adjudication: np.ndarray
    worker_accuracy: np.ndarray  # posterior mean accuracy (prior + this batch)
    worker_answers: np.ndarray  # answers in this batch
    worker_expected_correct: np.ndarray  # sum over the worker's answers of P(answer is the true label)
    model: str = "one_coin"
    iterations: int = 0
    class_prior: np.ndarray = field(default_factory=lambda: np.zeros(0))


def consolidate(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    priors: Sequence[WorkerPrior] | None = None,
    config: ConsolidationConfig | None = None,
) -> ConsolidationResult:
    """Estimate the true class of every item and the accuracy of every worker by EM.

    Args:
        item: item index (0..n_items-1) of each answer.
        worker: worker index (0..n_workers-1) of each answer.
        label: class index (0..n_classes-1) of each answer.
        n_items: number of items; items without answers get label -1, confidence 0 and need adjudication.
        n_workers: number of workers.
        n_classes: number of classes K (must be >= 2).
        priors: stored reliability per worker (same order as worker indices); missing means "first time seen".
        config: tunables.

    Returns:
        A ConsolidationResult.

    Raises:
        ValueError: on inconsistent input arrays or fewer than two classes.
    """
    cfg = config or ConsolidationConfig()
    item = np.asarray(item, dtype=np.int64)
    worker = np.asarray(worker, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    if not (item.shape == worker.shape == label.shape):
        raise ValueError("item, worker and label must have the same length")
    if n_classes < 2:
        raise ValueError("need at least two classes")
    if item.size and (item.min() < 0 or item.max() >= n_items):
        raise ValueError("item index out of range")
    if worker.size and (worker.min() < 0 or worker.max() >= n_workers):
        raise ValueError("worker index out of range")
    if label.size and (label.min() < 0 or label.max() >= n_classes):
        raise ValueError("label index out of range")

    prior_n, prior_c = _prior_counts(priors, n_workers, cfg)
    model = cfg.model
    if model == "auto":
        model = "full" if n_classes <= cfg.full_confusion_max_classes else "one_coin"

    order = np.lexsort((label, item))
    item, worker, label = item[order], worker[order], label[order]
    votes = _vote_stats(item, label, n_items, n_classes)

    if item.size == 0:
        acc = np.clip(prior_c / prior_n, _MIN_ACCURACY, _MAX_ACCURACY)
        empty = np.zeros(n_items)
        return ConsolidationResult(
            label=np.full(n_items, -1),
            confidence=empty,
            agreement=empty.copy(),
            answers=np.zeros(n_items, dtype=np.int64),
            tie=np.zeros(n_items, dtype=bool),
            needs_adjudication=np.ones(n_items, dtype=bool),
            worker_accuracy=acc,
            worker_answers=np.zeros(n_workers),
            worker_expected_correct=np.zeros(n_workers),
            model=model,
        )

    if model == "full":
        res = _em_full(item, worker, label, votes, n_items, n_workers, n_classes, prior_n, prior_c, cfg)
    else:
        res = _em_one_coin(item, worker, label, votes, n_items, n_workers, n_classes, prior_n, prior_c, cfg)
    res.model = model
    _flag_adjudication(res, worker, item, cfg)
    return res


# --------------------------------------------------------------------------------------------------------------- priors


def _prior_counts(
    priors: Sequence[WorkerPrior] | None, n_workers: int, cfg: ConsolidationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Beta pseudo-counts (answers, correct) per worker: the new-worker prior plus the stored history, capped."""
    base_n = np.full(n_workers, cfg.new_worker_weight, dtype=float)
    base_c = base_n * cfg.new_worker_accuracy
    if priors:
        hist_n = np.array([max(p.answers, 0.0) for p in priors], dtype=float)
        hist_c = np.array([min(max(p.correct, 0.0), max(p.answers, 0.0)) for p in priors], dtype=float)
        if hist_n.shape[0] != n_workers:
            raise ValueError("priors must have one entry per worker")
        # Old history is scaled down to max_prior_weight so a reviewer whose quality changes is re-learned.
        scale = np.where(hist_n > cfg.max_prior_weight, cfg.max_prior_weight / np.maximum(hist_n, _EPS), 1.0)
        base_n = base_n + hist_n * scale
        base_c = base_c + hist_c * scale
    return base_n, base_c


# ---------------------------------------------------------------------------------------------------------- vote stats


@dataclass
class _Votes:
    pair_item: np.ndarray  # item of each distinct (item, label) pair, sorted by item then label
    pair_label: np.ndarray
    pair_count: np.ndarray
    answer_pair: np.ndarray  # pair index of each (sorted) answer
    item_start: np.ndarray  # first pair index of each item with answers
    items_with_answers: np.ndarray
    answers: np.ndarray  # per item


def _vote_stats(item: np.ndarray, label: np.ndarray, n_items: int, n_classes: int) -> _Votes:
    key = item * n_classes + label
    uniq, answer_pair, counts = np.unique(key, return_inverse=True, return_counts=True)
    pair_item = uniq // n_classes
    pair_label = uniq % n_classes
    items_with_answers, item_start = np.unique(pair_item, return_index=True)
    answers = np.bincount(item, minlength=n_items)
    return _Votes(pair_item, pair_label, counts, answer_pair.ravel(), item_start, items_with_answers, answers)


# -------------------------------------------------------------------------------------------------------- one-coin EM


def _em_one_coin(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    v: _Votes,
    n_items: int,
    n_workers: int,
    k: int,
    prior_n: np.ndarray,
    prior_c: np.ndarray,
    cfg: ConsolidationConfig,
) -> ConsolidationResult:
    n_pairs = v.pair_item.size
    pair_item_pos = np.repeat(np.arange(v.items_with_answers.size), np.diff(np.append(v.item_start, n_pairs)))
    # Start from the soft majority vote (as the reference Dawid-Skene does).
    item_answers = v.answers[v.pair_item].astype(float)
    pair_post = v.pair_count / item_answers
    unvoted_mass = np.zeros(v.items_with_answers.size)
    w_n = np.bincount(worker, minlength=n_workers).astype(float)
    acc = np.full(n_workers, cfg.new_worker_accuracy)
    class_prior = np.full(k, 1.0 / k)
    prev_ll = -np.inf
    it = 0
    while it < cfg.max_iter:
        it += 1
        # M-step
        w_c = np.bincount(worker, weights=pair_post[v.answer_pair], minlength=n_workers)
        acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
        class_prior = _one_coin_class_prior(v, pair_post, unvoted_mass, class_prior, k, cfg)
        # E-step: only the classes somebody voted for differ from the common "unvoted" likelihood.
        log_a = np.log(acc)
        log_e = np.log((1.0 - acc) / (k - 1))
        d = np.bincount(v.answer_pair, weights=(log_a - log_e)[worker], minlength=n_pairs)
        log_p = np.log(np.maximum(class_prior, _EPS))
        s = log_p[v.pair_label] + d
        p_voted = np.add.reduceat(class_prior[v.pair_label], v.item_start)
        log_rest = _safe_log(1.0 - p_voted)
        m = np.maximum(np.maximum.reduceat(s, v.item_start), log_rest)
        ex = np.exp(s - m[pair_item_pos])
        rest = np.exp(log_rest - m)
        z = np.add.reduceat(ex, v.item_start) + rest
        pair_post = ex / z[pair_item_pos]
        unvoted_mass = rest / z
        # Log-likelihood (up to the per-item constant sum(log_e)) decides convergence.
        base = np.bincount(item, weights=log_e[worker], minlength=n_items)[v.items_with_answers]
        ll = float(np.sum(m + np.log(z) + base))
        if abs(ll - prev_ll) <= cfg.tol * max(1.0, abs(ll)):
            break
        prev_ll = ll

    w_c = np.bincount(worker, weights=pair_post[v.answer_pair], minlength=n_workers)
    acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
    lab, conf = _argmax_pairs(v, pair_post, n_items)
    res = _finish(v, lab, conf, n_items)
    res.worker_accuracy = acc
    res.worker_answers = w_n
    res.worker_expected_correct = w_c
    res.iterations = it
    res.class_prior = class_prior
    return res


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(x, 0.0))


def _one_coin_class_prior(
    v: _Votes,
    pair_post: np.ndarray,
    unvoted_mass: np.ndarray,
    class_prior: np.ndarray,
    k: int,
    cfg: ConsolidationConfig,
) -> np.ndarray:
    counts = np.bincount(v.pair_label, weights=pair_post, minlength=k)
    # Each item's unvoted mass is spread over its unvoted classes in proportion to the current prior.
    p_voted = np.add.reduceat(class_prior[v.pair_label], v.item_start)
    denom = np.maximum(1.0 - p_voted, _EPS)
    r = np.where(unvoted_mass > 0, unvoted_mass / denom, 0.0)
    per_pair_r = np.repeat(r, np.diff(np.append(v.item_start, v.pair_label.size)))
    spread = class_prior * (r.sum() - np.bincount(v.pair_label, weights=per_pair_r, minlength=k))
    counts = counts + np.maximum(spread, 0.0) + cfg.class_prior_smoothing
    return counts / counts.sum()


def _argmax_pairs(v: _Votes, pair_post: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    lab = np.full(n_items, -1, dtype=np.int64)
    conf = np.zeros(n_items)
    # Sort pairs by (item, -posterior, label) and take the first of each item: deterministic tie-break on label.
    order = np.lexsort((v.pair_label, -pair_post, v.pair_item))
    first = np.ones(order.size, dtype=bool)
    first[1:] = v.pair_item[order][1:] != v.pair_item[order][:-1]
    best = order[first]
    lab[v.pair_item[best]] = v.pair_label[best]
    conf[v.pair_item[best]] = pair_post[best]
    return lab, conf


# ------------------------------------------------------------------------------------------------------------ full EM


def _em_full(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    v: _Votes,
    n_items: int,
    n_workers: int,
    k: int,
    prior_n: np.ndarray,
    prior_c: np.ndarray,
    cfg: ConsolidationConfig,
) -> ConsolidationResult:
    # Seed pseudo-counts: the Beta prior on accuracy, spread evenly over the K rows of the confusion matrix.
    prior_acc = prior_c / prior_n
    per_row = prior_n / k
    seed = np.empty((n_workers, k, k))
    seed[:] = ((1.0 - prior_acc) * per_row / (k - 1))[:, None, None]
    idx = np.arange(k)
    seed[:, idx, idx] = (prior_acc * per_row)[:, None]

    post = np.zeros((n_items, k))
    np.add.at(post, (item, label), 1.0)
    has = v.answers > 0
    post[has] /= v.answers[has, None]
    prev_ll = -np.inf
    it = 0
    conf_m = seed
    class_prior = np.full(k, 1.0 / k)
    while it < cfg.max_iter:
        it += 1
        conf_m = _full_m_step(post, item, worker, label, n_workers, k, seed)
        class_prior = post[has].sum(axis=0) + cfg.class_prior_smoothing
        class_prior /= class_prior.sum()
        log_pi = np.log(np.maximum(conf_m, _EPS))
        ll_items = np.zeros((n_items, k))
        np.add.at(ll_items, item, log_pi[worker, :, label])
        ll_items += np.log(class_prior)
        m = ll_items.max(axis=1, keepdims=True)
        ex = np.exp(ll_items - m)
        z = ex.sum(axis=1, keepdims=True)
        post = np.where(has[:, None], ex / z, 0.0)
        ll = float(np.sum((m + np.log(z))[has]))
        if abs(ll - prev_ll) <= cfg.tol * max(1.0, abs(ll)):
            break
        prev_ll = ll

    w_n = np.bincount(worker, minlength=n_workers).astype(float)
    w_c = np.bincount(worker, weights=post[item, label], minlength=n_workers)
    acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
    # The argmax may be a class nobody voted for (a systematic confusion); take it from the full posterior.
    lab = np.where(has, np.argmax(post, axis=1), -1)
    conf = np.where(has, post[np.arange(n_items), np.maximum(lab, 0)], 0.0)
    res = _finish(v, lab, conf, n_items)
    res.worker_accuracy = acc
    res.worker_answers = w_n
    res.worker_expected_correct = w_c
    res.iterations = it
    res.class_prior = class_prior
    return res


def _full_m_step(
    post: np.ndarray,
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_workers: int,
    k: int,
    seed: np.ndarray,
) -> np.ndarray:
    counts = seed.copy()
    # counts[w, true, answered] += P(true | item)
    for true in range(k):
        counts[:, true, :] += np.bincount(
            worker * k + label, weights=post[item, true], minlength=n_workers * k
        ).reshape(n_workers, k)
    return counts / counts.sum(axis=2, keepdims=True)


# -------------------------------------------------------------------------------------------------------------- output


def _finish(v: _Votes, lab: np.ndarray, conf: np.ndarray, n_items: int) -> ConsolidationResult:
    answers = v.answers
    agree_counts = np.zeros(n_items)
    match = v.pair_label == lab[v.pair_item]
    agree_counts[v.pair_item[match]] = v.pair_count[match]
    agreement = np.where(answers > 0, agree_counts / np.maximum(answers, 1), 0.0)
    top = np.zeros(n_items, dtype=np.int64)
    np.maximum.at(top, v.pair_item, v.pair_count)
    n_top = np.zeros(n_items, dtype=np.int64)
    np.add.at(n_top, v.pair_item, (v.pair_count == top[v.pair_item]).astype(np.int64))
    return ConsolidationResult(
        label=lab,
        confidence=conf,
        agreement=agreement,
        answers=answers,
        tie=n_top > 1,
        needs_adjudication=np.zeros(n_items, dtype=bool),
        worker_accuracy=np.zeros(0),
        worker_answers=np.zeros(0),
        worker_expected_correct=np.zeros(0),
    )


def _flag_adjudication(
    res: ConsolidationResult, worker: np.ndarray, item: np.ndarray, cfg: ConsolidationConfig
) -> None:
    single = res.answers == 1
    single_worker = np.full(res.answers.size, -1, dtype=np.int64)
    single_worker[item] = worker  # for single-answer items this is their only worker
    low_single = single & (res.worker_accuracy[np.maximum(single_worker, 0)] < cfg.low_reliability)
    res.needs_adjudication = (res.answers == 0) | (res.confidence < cfg.adjudication_threshold) | res.tie | low_single


def majority_vote(item: np.ndarray, label: np.ndarray, *, n_items: int, n_classes: int) -> np.ndarray:
    """Plain majority vote (ties to the lowest class index); the baseline the benchmark and tests compare against."""
    counts = np.zeros((n_items, n_classes))
    np.add.at(counts, (np.asarray(item), np.asarray(label)), 1.0)
    out = np.argmax(counts, axis=1)
    out[counts.sum(axis=1) == 0] = -1
    return out
