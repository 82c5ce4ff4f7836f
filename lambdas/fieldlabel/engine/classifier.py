"""The engine's classifier: multinomial logistic regression on L2-normalised embeddings, in numpy only.

Why this shape:
- scikit-learn and scipy do not fit in the Lambda layer beside onnxruntime, so the optimiser (L-BFGS with a
  backtracking Armijo line search) is written here. The loss is strictly convex (L2 penalty), so the fit is unique
  and, with a fixed data order and zero start, deterministic.
- A K-fold ensemble: each fold's model scores the labels it did not see (out-of-fold scores are the calibration
  sample of the threshold rule) and the average of the K models scores new photos. The models that set the
  threshold score the batch (a model refit on all labels is more confident than its calibration).
- Folds keep near-duplicate photos together: a copy in another fold would make out-of-fold scores over-confident
  and the bound optimistic.
- Features are projected to at most ``max_dim`` principal components (fitted on at most 8,192 rows) in float32,
  which keeps 100,000 labels x 300 species inside one Lambda invocation (benchmarks/automation.py measures it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PCA_FIT_ROWS = 8192
EXACT_PAIR_BUDGET = 4.0e11  # n * n * D multiply-adds of the exact all-pairs search (~10 s on one core)
_ABSENT_BIAS = -1.0e4  # logit of a class a fold never saw: probability exactly 0


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def stable_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the settings' seed and strings (photo ids...), independent of Python's hash salt."""
    h = hashlib.sha256(str(seed).encode())
    for p in parts:
        h.update(b"\0" + p.encode())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def near_duplicate_groups(X: np.ndarray, threshold: float = 0.97, *, seed: int = 0) -> np.ndarray:
    """Group ids (0..g-1, in order of first appearance) joining rows whose cosine similarity exceeds ``threshold``.

    Exact (blockwise all pairs, union-find) while n * n * D stays under ~4e11; above that, rows are grouped by a
    24-bit signed random projection of the normalised vector, which puts identical and nearly identical photos
    together at a cost linear in n.
    """
    n, D = X.shape
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    if float(n) * n * max(1, D) <= EXACT_PAIR_BUDGET:
        Z = l2_normalise(X)
        block = 2048
        for a in range(0, n, block):
            sims = Z[a:a + block] @ Z.T
            rows, cols = np.nonzero(sims > threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                i, j = a + r, c
                if j <= i:
                    continue
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    else:
        rng = np.random.default_rng(seed)
        planes = rng.standard_normal((D, 24)).astype(np.float32)
        weights = 1 << np.arange(24, dtype=np.int64)
        keys = np.concatenate([(np.asarray(X[a:a + 8192], dtype=np.float32) @ planes > 0).astype(np.int64) @ weights
                               for a in range(0, n, 8192)])
        first: dict[int, int] = {}
        for i, k in enumerate(keys.tolist()):
            parent[i] = first.setdefault(k, i)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, ids = np.unique(roots, return_inverse=True)
    # renumber by first appearance so ids do not depend on root choice
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(g), len(order)) for g in ids], dtype=np.int64)


def grouped_stratified_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per row: whole groups per fold, each label's groups dealt round-robin from a random offset."""
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    group_label = np.full(n_groups, -1, dtype=np.int64)
    for i in range(labels.size - 1, -1, -1):  # label of a group = label of its first row
        group_label[groups[i]] = labels[i]
    perm = rng.permutation(n_groups)
    perm = perm[np.argsort(group_label[perm], kind="stable")]
    group_fold = np.empty(n_groups, dtype=np.int64)
    offsets = rng.integers(0, k, size=int(group_label.max()) + 1 if n_groups else 0)
    pos = 0
    while pos < n_groups:
        lab = group_label[perm[pos]]
        end = pos
        while end < n_groups and group_label[perm[end]] == lab:
            end += 1
        group_fold[perm[pos:end]] = (np.arange(end - pos) + offsets[lab]) % k
        pos = end
    return group_fold[groups]


@dataclass(frozen=True)
class Projection:
    """Centring and principal-component projection fitted on the training embeddings."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (D, d)

    def apply(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Normalise, centre and project, in chunks (no full-size float32 copy of a large float16 input)."""
        out = np.empty((X.shape[0], self.components.shape[1]), dtype=np.float32)
        for a in range(0, X.shape[0], chunk):
            out[a:a + chunk] = (l2_normalise(X[a:a + chunk]) - self.mean) @ self.components
        return out


def fit_projection(X: np.ndarray, max_dim: int, seed: int) -> Projection:
    """PCA of the L2-normalised rows (on at most 8,192 of them), keeping at most ``max_dim`` components."""
    n, D = X.shape
    rows = l2_normalise(X if n <= PCA_FIT_ROWS
                        else X[np.sort(np.random.default_rng(seed).choice(n, PCA_FIT_ROWS, replace=False))])
    mean = rows.mean(axis=0)
    if D <= max_dim:
        return Projection(mean.astype(np.float32), np.eye(D, dtype=np.float32))
    C = (rows - mean).astype(np.float32)
    # randomized SVD (seeded range finder, two power iterations): ~10x cheaper than a full SVD of 8192 x D and
    # as accurate for the leading components that matter here
    rng = np.random.default_rng(seed + 1)
    width = min(D, C.shape[0], max_dim + 16)
    Q = np.linalg.qr(C @ rng.standard_normal((D, width)).astype(np.float32))[0]
    for _ in range(2):
        Q = np.linalg.qr(C @ np.linalg.qr(C.T @ Q)[0])[0]
    _, s, vt = np.linalg.svd((Q.T @ C).astype(np.float64), full_matrices=False)
    d = min(max_dim, int(np.sum(s > s[0] * 1e-6)) if s.size else 1)
    comps = vt[:d].T
    signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(d)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    return Projection(mean.astype(np.float32), comps.astype(np.float32))


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def fit_softmax(F: np.ndarray, y: np.ndarray, n_classes: int, *, l2_c: float, max_iter: int,
                memory: int = 10, gtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression by L-BFGS: minimises sum_i logloss_i + ||W||^2 / (2 C), bias unpenalised.

    Args:
        F: features (n, d) float32. y: class index per row in [0, n_classes).
    Returns:
        (W (d, n_classes), b (n_classes,), iterations), float32.
    """
    n, d = F.shape
    F = np.asarray(F, dtype=np.float32)
    Y = np.zeros((n, n_classes), dtype=np.float32)
    Y[np.arange(n), y] = 1.0
    lam = 1.0 / (l2_c * n)  # the same optimum as sklearn's C with the loss averaged instead of summed

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[:d * n_classes].reshape(d, n_classes).astype(np.float32)
        b = theta[d * n_classes:].astype(np.float32)
        Z = F @ W + b
        zmax = Z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(Z - zmax).sum(axis=1, keepdims=True)) + zmax
        loss = float(np.sum(lse, dtype=np.float64) - np.sum(Z * Y, dtype=np.float64)) / n
        P = np.exp(Z - lse)
        P -= Y
        gW = (F.T @ P).astype(np.float64) / n + lam * W.astype(np.float64)
        gb = P.sum(axis=0, dtype=np.float64) / n
        loss += 0.5 * lam * float(np.sum(W.astype(np.float64) ** 2))
        return loss, np.concatenate([gW.ravel(), gb])

    theta = np.zeros(d * n_classes + n_classes, dtype=np.float64)
    f, g = fg(theta)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        if float(np.max(np.abs(g))) < gtol:
            break
        # two-loop recursion
        q = g.copy()
        alphas = []
        for s_v, y_v in zip(reversed(s_hist), reversed(y_hist), strict=True):
            rho = 1.0 / float(y_v @ s_v)
            a = rho * float(s_v @ q)
            alphas.append((a, rho))
            q -= a * y_v
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (a, rho), s_v, y_v in zip(reversed(alphas), s_hist, y_hist, strict=True):
            q += s_v * (a - rho * float(y_v @ q))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            direction = -g / max(1.0, float(np.linalg.norm(g)))
            slope = float(g @ direction)
        step = 1.0
        while True:
            cand = theta + step * direction
            f_new, g_new = fg(cand)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_v = cand - theta
        y_v = g_new - g
        if float(s_v @ y_v) > 1e-12:
            s_hist.append(s_v)
            y_hist.append(y_v)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        converged = abs(f - f_new) <= 1e-10 * max(1.0, abs(f))
        theta, f, g = cand, f_new, g_new
        if converged:
            break
    W = theta[:d * n_classes].reshape(d, n_classes).astype(np.float32)
    b = theta[d * n_classes:].astype(np.float32)
    return W, b, it


def top2_margin(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top-1 index, top-1 probability, top-1 minus top-2 probability) per row."""
    if P.shape[1] == 1:
        ones = np.ones(P.shape[0], dtype=np.float32)
        return np.zeros(P.shape[0], dtype=np.int64), ones, ones
    part = np.partition(P, P.shape[1] - 2, axis=1)
    top1, top2 = part[:, -1], part[:, -2]
    return np.argmax(P, axis=1), top1, top1 - top2


def fold_fits(F: np.ndarray, y: np.ndarray, folds: np.ndarray, n_classes: int, k: int, *, l2_c: float,
              max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """K models, each trained without one fold. Returns weights (k, d, C), biases (k, C), out-of-fold
    probabilities (n, C) and iterations per fold. A class absent from a fold's training part gets probability 0."""
    n, d = F.shape
    Ws = np.zeros((k, d, n_classes), dtype=np.float32)
    bs = np.full((k, n_classes), _ABSENT_BIAS, dtype=np.float32)
    oof = np.zeros((n, n_classes), dtype=np.float32)
    iters = []
    for f in range(k):
        train = folds != f
        if not np.any(train):
            continue
        present = np.unique(y[train])
        remap = np.full(n_classes, -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        if present.size == 1:
            W = np.zeros((d, 1), dtype=np.float32)
            b = np.zeros(1, dtype=np.float32)
            it = 0
        else:
            W, b, it = fit_softmax(F[train], remap[y[train]], present.size, l2_c=l2_c, max_iter=max_iter)
        Ws[f][:, present] = W
        bs[f][present] = b
        iters.append(it)
        held = ~train
        if np.any(held):
            oof[held] = _softmax(F[held] @ Ws[f] + bs[f])
    return Ws, bs, oof, iters


ENSEMBLES = ("mean", "geometric")


def ensemble_proba(F: np.ndarray, Ws: np.ndarray, bs: np.ndarray, chunk: int = 16384, *,
                   combine: str = "mean") -> np.ndarray:
    """The K models' class probabilities combined, in chunks to bound memory.

    ``combine="mean"`` (the default) averages the probabilities. ``"geometric"`` averages the log-probabilities
    (each class over the folds that saw it) and renormalises; when every fold saw every class this is the softmax
    of the mean logits, i.e. one linear model with the folds' averaged weights, whose confidence is on the scale of a
    single fold model, the scale of the out-of-fold calibration scores (the arithmetic mean is less confident than
    its members). Measured on the tree photos it neither raised coverage nor the guarantee's hit rate beyond noise
    (docs/engine.md, "How the choices moved coverage"), so it is an option, not the default.
    """
    if combine not in ENSEMBLES:
        raise ValueError(f"combine must be one of {ENSEMBLES}")
    out = np.empty((F.shape[0], Ws.shape[2]), dtype=np.float32)
    present = bs > _ABSENT_BIAS / 2  # (K, C): the fold saw the class
    seen = present.sum(axis=0)
    for a in range(0, F.shape[0], chunk):
        acc = np.zeros((min(chunk, F.shape[0] - a), Ws.shape[2]), dtype=np.float32)
        for W, b, pres in zip(Ws, bs, present, strict=True):
            Z = F[a:a + chunk] @ W + b
            if combine == "mean":
                acc += _softmax(Z)
            else:
                Z -= Z.max(axis=1, keepdims=True)
                Z -= np.log(np.exp(Z).sum(axis=1, keepdims=True))
                acc += np.where(pres, Z, 0.0)
        if combine == "mean":
            out[a:a + chunk] = acc / Ws.shape[0]
        else:
            # classes no fold saw keep probability 0, as in the arithmetic mean
            logits = np.where(seen > 0, acc / np.maximum(seen, 1), -np.inf).astype(np.float32)
            out[a:a + chunk] = _softmax(logits)
    return out


def class_index(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Indices of ``labels`` in ``classes``; ValueError naming the first unknown label."""
    pos = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([pos[lab] for lab in labels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} is not one of the model's classes") from None


def effective_folds(n: int, k: int) -> int:
    """At most one fold per two rows (a fold needs something to train on)."""
    return max(2, min(k, math.floor(n / 2))) if n >= 4 else 2
