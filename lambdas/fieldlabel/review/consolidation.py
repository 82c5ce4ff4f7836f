"""Reliability-weighted consolidation of expert answers: Dawid-Skene EM that is safe with few answers per photo.

The review's real regime is 1-3 answers per photo, where the classic full-confusion Dawid-Skene model overfits and
loses to majority vote. This module therefore (docs/review.md, "Consolidation"):

* fits a **one-coin** model first (one accuracy per reviewer, errors spread uniformly, regularised class priors),
  in O(answers) per iteration however many species there are;
* fits a **shrunk full-confusion** model only when the data could support it, each reviewer's K x K confusion
  matrix having a Dirichlet prior centred on that reviewer's own one-coin matrix with a fixed number of pseudo-answers
  per row, so a reviewer with few answers stays one-coin and one with many answers gets their own confusions;
* chooses between the two by **evidence** (log-likelihood of the answers penalised by the effective number of
  parameters, BIC-style), not by the number of classes;
* lets a **sole answer stand**: a photo with one answer keeps it, with the reviewer's estimated accuracy as
  confidence, and is flagged when that is below the adjudication threshold;
* learns reviewer accuracy only from photos with at least two answers (a sole answer cannot be checked against
  anything, so it must not reinforce the reviewer's own prior), on top of a Beta prior from the stored history.

Every photo gets a bit mask of the reasons it needs adjudication (``REASONS``); no reason means no flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-12
_MIN_ACCURACY = 0.01
_MAX_ACCURACY = 0.999

# Why a photo needs adjudication; ``ConsolidationResult.reason_bits`` holds bit i for REASONS[i].
REASONS = (
    "no_answer",  # nobody gave a valid answer
    "sole_answer_low_reliability",  # one answer, from a reviewer whose accuracy is below the adjudication threshold
    "tie",  # the top vote count is shared by two or more labels: reliability weights alone decide
    "low_confidence",  # the consensus' posterior is below the adjudication threshold
    "label_not_voted",  # the full model chose a class nobody answered (a learnt systematic confusion)
    "unreliable_reviewers",  # every answer comes from reviewers below the low-reliability threshold
)
_BIT = {name: 1 << i for i, name in enumerate(REASONS)}


@dataclass(frozen=True)
class ConsolidationConfig:
    """Tunables of the consolidation; defaults are documented in docs/review.md."""

    adjudication_threshold: float = 0.9
    low_reliability: float = 0.7
    new_worker_accuracy: float = 0.8
    new_worker_weight: float = 4.0
    max_prior_weight: float = 200.0
    # Dirichlet prior on the class frequencies, centred on uniform, worth this many times the photos with answers.
    # Estimated class priors amplify systematic confusions (a reviewer's favourite wrong class looks frequent), so
    # they are shrunk hard; 0 = plain maximum likelihood.
    class_prior_weight: float = 1.0
    # Pseudo-answers per row of the full model's prior, as a multiple of K: a reviewer's own confusions only count
    # once they answered several times that many photos of a class.
    full_prior_strength: float = 0.5
    # The full model is considered only when it has at most this many parameters per informative answer...
    full_max_params_per_answer: float = 1.0
    # ...and its dense posterior (photos x K) stays below this many cells (memory and time bound).
    full_max_cells: int = 4_000_000
    max_iter: int = 50
    tol: float = 1e-6
    model: str = "auto"  # "auto" (choose by evidence), "full" or "one_coin"


@dataclass(frozen=True)
class WorkerPrior:
    """What the reviewers table remembers about one reviewer: answers given and the expected number correct."""

    answers: float = 0.0
    correct: float = 0.0


@dataclass
class ConsolidationResult:
    """Per-item consensus and per-worker reliability of one consolidation run (arrays indexed like the inputs)."""

    label: np.ndarray  # int, -1 for items without answers
    confidence: np.ndarray  # posterior of ``label`` (the reviewer's accuracy for a sole answer)
    agreement: np.ndarray  # share of the item's answers equal to ``label``
    answers: np.ndarray  # number of answers per item
    tie: np.ndarray  # bool: the top vote count is shared by two or more labels
    needs_adjudication: np.ndarray
    reason_bits: np.ndarray  # int bit mask over REASONS; non-zero exactly when needs_adjudication
    worker_accuracy: np.ndarray  # posterior mean accuracy (prior + this batch)
    worker_answers: np.ndarray  # informative answers in this batch (on photos with >= 2 answers)
    worker_expected_correct: np.ndarray  # sum over those answers of P(answer is the true label)
    model: str = "one_coin"
    iterations: int = 0
    class_prior: np.ndarray = field(default_factory=lambda: np.zeros(0))
    evidence: dict[str, float] = field(default_factory=dict)  # model -> log Bayes factor against one-coin

    def reasons(self, i: int) -> list[str]:
        """Names of the reasons item ``i`` needs adjudication (empty when it does not)."""
        bits = int(self.reason_bits[i])
        return [name for name in REASONS if bits & _BIT[name]]


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
    """Estimate the true class of every item and the accuracy of every worker.

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
        ValueError: on inconsistent input arrays, fewer than two classes or an unknown model name.
    """
    cfg = config or ConsolidationConfig()
    item = np.asarray(item, dtype=np.int64)
    worker = np.asarray(worker, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    if not (item.shape == worker.shape == label.shape):
        raise ValueError("item, worker and label must have the same length")
    if n_classes < 2:
        raise ValueError("need at least two classes")
    if cfg.model not in ("auto", "full", "one_coin"):
        raise ValueError(f"unknown model {cfg.model!r}")
    if item.size and (item.min() < 0 or item.max() >= n_items):
        raise ValueError("item index out of range")
    if worker.size and (worker.min() < 0 or worker.max() >= n_workers):
        raise ValueError("worker index out of range")
    if label.size and (label.min() < 0 or label.max() >= n_classes):
        raise ValueError("label index out of range")

    prior_n, prior_c = _prior_counts(priors, n_workers, cfg)
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
            reason_bits=np.full(n_items, _BIT["no_answer"], dtype=np.int64),
            worker_accuracy=acc,
            worker_answers=np.zeros(n_workers),
            worker_expected_correct=np.zeros(n_workers),
            model="one_coin",
        )

    order = np.lexsort((label, item))
    item, worker, label = item[order], worker[order], label[order]
    data = _Data.build(item, worker, label, n_items, n_workers, n_classes)

    one = _em_one_coin(data, prior_n, prior_c, cfg)
    evidence = {"one_coin": 0.0}
    chosen: _Fit = one
    if cfg.model == "full" or (cfg.model == "auto" and _full_is_worth_fitting(data, cfg)):
        full = _em_full(data, one, prior_n, prior_c, cfg)
        evidence["full"] = full.log_evidence
        if cfg.model == "full" or full.log_evidence > 0.0:
            chosen = full

    res = _finish(data, chosen, cfg)
    res.evidence = evidence
    return res


# --------------------------------------------------------------------------------------------------------------- priors


def _prior_counts(
    priors: Sequence[WorkerPrior] | None, n_workers: int, cfg: ConsolidationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Beta pseudo-counts (answers, correct) per worker: the new-worker prior plus the stored history, capped."""
    base_n = np.full(n_workers, cfg.new_worker_weight, dtype=float)
    base_c = base_n * cfg.new_worker_accuracy
    if priors:
        if len(priors) != n_workers:
            raise ValueError("priors must have one entry per worker")
        hist_n = np.array([max(p.answers, 0.0) for p in priors], dtype=float)
        hist_c = np.array([min(max(p.correct, 0.0), max(p.answers, 0.0)) for p in priors], dtype=float)
        # Old history is scaled down to max_prior_weight so a reviewer whose quality changes is re-learned.
        scale = np.where(hist_n > cfg.max_prior_weight, cfg.max_prior_weight / np.maximum(hist_n, _EPS), 1.0)
        base_n = base_n + hist_n * scale
        base_c = base_c + hist_c * scale
    return base_n, base_c


# ----------------------------------------------------------------------------------------------------------- the data


@dataclass
class _Data:
    """Sorted answers plus the distinct (item, label) pairs the sparse E-step works on."""

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    n_items: int
    n_workers: int
    k: int
    answers: np.ndarray  # per item
    multi_answer: np.ndarray  # per answer: its item has >= 2 answers (the answer is informative about the worker)
    pair_item: np.ndarray  # item of each distinct (item, label) pair, sorted by item then label
    pair_label: np.ndarray
    pair_count: np.ndarray
    answer_pair: np.ndarray  # pair index of each answer
    item_start: np.ndarray  # first pair index of each item with answers
    items_with_answers: np.ndarray
    pair_item_pos: np.ndarray  # position of each pair's item in items_with_answers
    multi_items: np.ndarray  # bool over items_with_answers: >= 2 answers

    @classmethod
    def build(cls, item: np.ndarray, worker: np.ndarray, label: np.ndarray, n_items: int, n_workers: int,
              k: int) -> _Data:
        key = item * k + label
        uniq, answer_pair, counts = np.unique(key, return_inverse=True, return_counts=True)
        pair_item = uniq // k
        pair_label = uniq % k
        items_with_answers, item_start = np.unique(pair_item, return_index=True)
        answers = np.bincount(item, minlength=n_items)
        pair_item_pos = np.repeat(
            np.arange(items_with_answers.size), np.diff(np.append(item_start, pair_item.size))
        )
        return cls(
            item=item, worker=worker, label=label, n_items=n_items, n_workers=n_workers, k=k, answers=answers,
            multi_answer=answers[item] >= 2, pair_item=pair_item, pair_label=pair_label, pair_count=counts,
            answer_pair=answer_pair.ravel(), item_start=item_start, items_with_answers=items_with_answers,
            pair_item_pos=pair_item_pos, multi_items=answers[items_with_answers] >= 2,
        )


@dataclass
class _Fit:
    """What a model hands to the output stage."""

    model: str
    pair_post: np.ndarray  # posterior of each (item, voted label) pair
    accuracy: np.ndarray  # per worker (posterior mean, prior + informative answers)
    expected_correct: np.ndarray  # per worker, informative answers only
    class_prior: np.ndarray
    iterations: int
    log_evidence: float  # log Bayes factor against the one-coin model (0 for the one-coin fit itself)
    dense_label: np.ndarray | None = None  # full model: argmax over all K classes (may be a class nobody voted)
    dense_conf: np.ndarray | None = None


# -------------------------------------------------------------------------------------------------------- one-coin EM


def _em_one_coin(d: _Data, prior_n: np.ndarray, prior_c: np.ndarray, cfg: ConsolidationConfig) -> _Fit:
    """One accuracy per reviewer; every class nobody voted for shares one likelihood, so the E-step is exact and
    costs O(answers)."""
    k = d.k
    informative = d.multi_answer.astype(float)
    w_n = np.bincount(d.worker, weights=informative, minlength=d.n_workers)
    # Start from the soft majority vote (as the reference Dawid-Skene does).
    pair_post = d.pair_count / d.answers[d.pair_item].astype(float)
    unvoted_mass = np.zeros(d.items_with_answers.size)
    class_prior = np.full(k, 1.0 / k)
    acc = np.clip(prior_c / prior_n, _MIN_ACCURACY, _MAX_ACCURACY)
    prev_ll = -np.inf
    ll = -np.inf
    it = 0
    while it < cfg.max_iter:
        it += 1
        # M-step: accuracy from informative answers only, class prior from every item.
        w_c = np.bincount(d.worker, weights=pair_post[d.answer_pair] * informative, minlength=d.n_workers)
        acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
        class_prior = _one_coin_class_prior(d, pair_post, unvoted_mass, class_prior, cfg)
        pair_post, unvoted_mass, ll_items = _one_coin_e_step(d, acc, class_prior)
        ll = float(ll_items[d.multi_items].sum())
        if abs(ll - prev_ll) <= cfg.tol * max(1.0, abs(ll)):
            break
        prev_ll = ll

    w_c = np.bincount(d.worker, weights=pair_post[d.answer_pair] * informative, minlength=d.n_workers)
    acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
    return _Fit("one_coin", pair_post, acc, w_c, class_prior, it, 0.0)


def _one_coin_e_step(
    d: _Data, acc: np.ndarray, class_prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior of each voted (item, label) pair, the mass left for unvoted classes, and each item's log-lik."""
    k, n_pairs = d.k, d.pair_item.size
    log_a = np.log(acc)
    log_e = np.log((1.0 - acc) / (k - 1))
    delta = np.bincount(d.answer_pair, weights=(log_a - log_e)[d.worker], minlength=n_pairs)
    s = np.log(np.maximum(class_prior, _EPS))[d.pair_label] + delta
    p_voted = np.add.reduceat(class_prior[d.pair_label], d.item_start)
    log_rest = _safe_log(1.0 - p_voted)
    m = np.maximum(np.maximum.reduceat(s, d.item_start), log_rest)
    ex = np.exp(s - m[d.pair_item_pos])
    rest = np.exp(log_rest - m)
    z = np.add.reduceat(ex, d.item_start) + rest
    # Log-likelihood of each item's answers: every answer is "wrong" (log_e) except those for the true class.
    base = np.bincount(d.item, weights=log_e[d.worker], minlength=d.n_items)[d.items_with_answers]
    return ex / z[d.pair_item_pos], rest / z, m + np.log(z) + base


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(x, 0.0))


def _one_coin_class_prior(
    d: _Data, pair_post: np.ndarray, unvoted_mass: np.ndarray, class_prior: np.ndarray, cfg: ConsolidationConfig
) -> np.ndarray:
    k = d.k
    counts = np.bincount(d.pair_label, weights=pair_post, minlength=k)
    # Each item's unvoted mass is spread over its unvoted classes in proportion to the current prior.
    p_voted = np.add.reduceat(class_prior[d.pair_label], d.item_start)
    denom = np.maximum(1.0 - p_voted, _EPS)
    r = np.where(unvoted_mass > 0, unvoted_mass / denom, 0.0)
    spread = class_prior * (r.sum() - np.bincount(d.pair_label, weights=r[d.pair_item_pos], minlength=k))
    counts = counts + np.maximum(spread, 0.0) + _class_pseudo_count(d, cfg)
    return counts / counts.sum()


def _class_pseudo_count(d: _Data, cfg: ConsolidationConfig) -> float:
    return max(cfg.class_prior_weight * d.items_with_answers.size / d.k, 1e-3)


# ----------------------------------------------------------------------------------------------- shrunk full-confusion


def _full_is_worth_fitting(d: _Data, cfg: ConsolidationConfig) -> bool:
    """Whether the full model could possibly win on evidence, within the memory bound.

    With K classes a reviewer's confusion matrix has K(K-1) free cells; when all active reviewers' cells together
    outnumber the informative answers (300 species: 89,700 cells per reviewer) the penalty alone rules the model out,
    so it is not fitted at all: hundreds of species go straight to the sparse path.
    """
    informative = int(d.multi_answer.sum())
    if informative == 0:
        return False
    active = np.unique(d.worker[d.multi_answer]).size
    params = active * d.k * (d.k - 1)
    return params <= cfg.full_max_params_per_answer * informative and d.n_items * d.k <= cfg.full_max_cells


def _em_full(d: _Data, one: _Fit, prior_n: np.ndarray, prior_c: np.ndarray, cfg: ConsolidationConfig) -> _Fit:
    """Dawid-Skene with each reviewer's rows shrunk towards their own one-coin matrix (Dirichlet prior).

    Starts from the one-coin posterior; reviewer accuracy (the prior's centre) is re-estimated from the expected
    correct answers each iteration, so a reviewer with few answers stays close to one-coin. Posteriors are kept as
    (K, photos) and every sum is a ``bincount`` over contiguous rows: O(K x answers) per iteration.
    """
    k, n = d.k, d.n_items
    idx = np.arange(k)
    strength = cfg.full_prior_strength * k
    mi = d.multi_answer
    item_m = d.item[mi]
    wl_all = d.worker * k + d.label
    wl = wl_all[mi]
    w_n = np.bincount(d.worker, weights=mi.astype(float), minlength=d.n_workers)
    has = d.answers > 0
    multi = d.answers >= 2
    # Dense posterior from the one-coin fit: voted pairs get their posterior, unvoted classes share the rest.
    post = np.zeros((k, n))
    rest = 1.0 - np.bincount(d.pair_item_pos, weights=one.pair_post, minlength=d.items_with_answers.size)
    n_unvoted = k - np.diff(np.append(d.item_start, d.pair_item.size))
    per_unvoted = np.where(n_unvoted > 0, np.maximum(rest, 0.0) / np.maximum(n_unvoted, 1), 0.0)
    post[:, d.items_with_answers] = per_unvoted[None, :]
    post[d.pair_label, d.pair_item] = one.pair_post
    class_prior = one.class_prior
    pseudo = _class_pseudo_count(d, cfg)
    prev_ll = -np.inf
    counts = np.zeros((d.n_workers, k, k))
    centre = np.zeros((d.n_workers, k, k))
    acc = one.accuracy
    it = 0
    while it < cfg.max_iter:
        it += 1
        # M-step. counts[w, true, answered] = sum of P(true | item) over w's informative answers.
        post_m = np.take(post, item_m, axis=1)  # (K, informative answers); take is the fast gather
        for true in range(k):
            counts[:, true, :] = np.bincount(wl, weights=post_m[true], minlength=d.n_workers * k).reshape(
                d.n_workers, k
            )
        w_c = counts[:, idx, idx].sum(axis=1)
        acc = np.clip((w_c + prior_c) / (w_n + prior_n), _MIN_ACCURACY, _MAX_ACCURACY)
        centre[:] = ((1.0 - acc) / (k - 1))[:, None, None]
        centre[:, idx, idx] = acc[:, None]
        theta = (counts + strength * centre) / (counts.sum(axis=2, keepdims=True) + strength)
        class_prior = post[:, has].sum(axis=1) + pseudo
        class_prior = class_prior / class_prior.sum()
        # E-step over all answers (sole answers too: they still need a posterior). Layout (true, worker, answered).
        log_theta = np.log(np.maximum(theta, _EPS)).transpose(1, 0, 2).reshape(k, d.n_workers * k)
        per_answer = np.take(log_theta, wl_all, axis=1)  # (K, answers)
        ll_items = np.empty((k, n))
        for true in range(k):
            ll_items[true] = np.bincount(d.item, weights=per_answer[true], minlength=n)
        ll_items += np.log(class_prior)[:, None]
        mx = ll_items.max(axis=0)
        ex = np.exp(ll_items - mx)
        z = ex.sum(axis=0)
        post = np.where(has[None, :], ex / z, 0.0)
        ll = float((mx + np.log(z))[multi].sum())
        if abs(ll - prev_ll) <= cfg.tol * max(1.0, abs(ll)):
            break
        prev_ll = ll

    w_c = counts[:, idx, idx].sum(axis=1)
    log_bf = _log_bayes_factor(counts, centre, strength)
    pair_post = post[d.pair_label, d.pair_item]
    dense_label = np.where(has, np.argmax(post, axis=0), -1)
    dense_conf = np.where(has, post[np.maximum(dense_label, 0), np.arange(n)], 0.0)
    return _Fit("full", pair_post, acc, w_c, class_prior, it, float(log_bf.sum()), dense_label, dense_conf)


_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _lg(x: np.ndarray) -> np.ndarray:
    return np.asarray(_lgamma(x), dtype=float)


def _log_bayes_factor(counts: np.ndarray, centre: np.ndarray, strength: float) -> np.ndarray:
    """Per reviewer: log evidence of "own confusion matrix" (Dirichlet(strength * centre) rows, integrated out)
    minus that of "one-coin matrix" (the centre itself), given the expected answer counts."""
    alpha = strength * np.maximum(centre, _EPS)
    row_n = counts.sum(axis=2)
    dirichlet = (_lg(np.full(row_n.shape, strength)) - _lg(strength + row_n)).sum(axis=1) + (
        _lg(alpha + counts) - _lg(alpha)
    ).sum(axis=(1, 2))
    fixed = (counts * np.log(np.maximum(centre, _EPS))).sum(axis=(1, 2))
    return dirichlet - fixed


# -------------------------------------------------------------------------------------------------------------- output


def _finish(d: _Data, fit: _Fit, cfg: ConsolidationConfig) -> ConsolidationResult:
    n_items = d.n_items
    lab = np.full(n_items, -1, dtype=np.int64)
    conf = np.zeros(n_items)
    # Best voted pair of each item: sort by (item, -posterior, label); ties go to the lower class index.
    order = np.lexsort((d.pair_label, -fit.pair_post, d.pair_item))
    first = np.ones(order.size, dtype=bool)
    first[1:] = d.pair_item[order][1:] != d.pair_item[order][:-1]
    best = order[first]
    lab[d.pair_item[best]] = d.pair_label[best]
    conf[d.pair_item[best]] = fit.pair_post[best]
    not_voted = np.zeros(n_items, dtype=bool)
    if fit.dense_label is not None and fit.dense_conf is not None:
        better = (fit.dense_label >= 0) & (fit.dense_conf > conf + 1e-12)
        not_voted = better.copy()
        lab = np.where(better, fit.dense_label, lab)
        conf = np.where(better, fit.dense_conf, conf)

    # A sole answer stands; its confidence is what we know of the reviewer (the chosen model's accuracy estimate:
    # the stored history plus this batch's informative answers).
    sole = d.answers == 1
    sole_worker = np.full(n_items, -1, dtype=np.int64)
    sole_worker[d.item] = d.worker  # for single-answer items this is their only answer
    sole_label = np.full(n_items, -1, dtype=np.int64)
    sole_label[d.item] = d.label
    reliability = fit.accuracy[np.maximum(sole_worker, 0)]
    lab = np.where(sole, sole_label, lab)
    conf = np.where(sole, reliability, conf)
    not_voted &= ~sole

    answers = d.answers
    agree = np.zeros(n_items)
    match = d.pair_label == lab[d.pair_item]
    agree[d.pair_item[match]] = d.pair_count[match]
    agreement = np.where(answers > 0, agree / np.maximum(answers, 1), 0.0)
    top = np.zeros(n_items, dtype=np.int64)
    np.maximum.at(top, d.pair_item, d.pair_count)
    n_top = np.zeros(n_items, dtype=np.int64)
    np.add.at(n_top, d.pair_item, (d.pair_count == top[d.pair_item]).astype(np.int64))
    tie = n_top > 1

    # Every answer of the item from a reviewer below the low-reliability threshold.
    unreliable_answer = (fit.accuracy[d.worker] < cfg.low_reliability).astype(np.int64)
    unreliable_all = (answers > 0) & (np.bincount(d.item, weights=unreliable_answer, minlength=n_items) == answers)

    bits = np.zeros(n_items, dtype=np.int64)
    bits |= np.where(answers == 0, _BIT["no_answer"], 0)
    bits |= np.where(sole & (conf < cfg.adjudication_threshold), _BIT["sole_answer_low_reliability"], 0)
    multi = answers >= 2
    bits |= np.where(multi & tie, _BIT["tie"], 0)
    bits |= np.where(multi & (conf < cfg.adjudication_threshold), _BIT["low_confidence"], 0)
    bits |= np.where(not_voted, _BIT["label_not_voted"], 0)
    bits |= np.where(unreliable_all, _BIT["unreliable_reviewers"], 0)
    return ConsolidationResult(
        label=lab,
        confidence=conf,
        agreement=agreement,
        answers=answers,
        tie=tie,
        needs_adjudication=bits != 0,
        reason_bits=bits,
        worker_accuracy=fit.accuracy,
        worker_answers=np.bincount(d.worker, weights=d.multi_answer.astype(float), minlength=d.n_workers),
        worker_expected_correct=fit.expected_correct,
        model=fit.model,
        iterations=fit.iterations,
        class_prior=fit.class_prior,
    )


def majority_vote(
    item: np.ndarray, label: np.ndarray, *, n_items: int, n_classes: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Plain majority vote, the baseline the benchmark and tests compare against (sparse: O(answers) memory).

    Ties go to the lowest class index, or to a uniformly random one of the tied labels when ``rng`` is given.
    """
    item = np.asarray(item, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    out = np.full(n_items, -1, dtype=np.int64)
    if item.size == 0:
        return out
    uniq, counts = np.unique(item * n_classes + label, return_counts=True)
    pair_item, pair_label = uniq // n_classes, uniq % n_classes
    tie_key = rng.random(uniq.size) if rng is not None else pair_label
    order = np.lexsort((tie_key, -counts, pair_item))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pair_item[order][1:] != pair_item[order][:-1]
    best = order[first]
    out[pair_item[best]] = pair_label[best]
    return out
