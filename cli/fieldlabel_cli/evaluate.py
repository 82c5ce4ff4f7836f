"""``fieldlabel evaluate``: replay an already-labeled folder through the real engine (embedding, training,
threshold, audit) and estimate what automation would save.

Also used by ``benchmarks/automation.py`` (folder scan, embedding with a cache, replay over random orders).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fieldlabel.costs import BatchUsage, estimate_batch_cost
from fieldlabel.costs.model import Assumptions, Backend, PriceBook
from fieldlabel.engine import EngineSettings
from fieldlabel.engine.classifier import near_duplicate_groups
from fieldlabel.engine.replay import BatchRecord, replay, split_by_groups

from fieldlabel_cli.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
EMBED_CHUNK = 16


@dataclass(frozen=True)
class LabeledPhoto:
    path: Path
    label: str
    sha256: str


def scan_labeled_folder(folder: Path, *, exclude: Iterable[str] = ()) -> tuple[list[LabeledPhoto], int]:
    """Photos of FOLDER/<label>/*, sorted; byte-identical copies folded as intake does (first path wins).

    Returns the photos and how many copies were folded.

    Raises:
        UsageError: not a folder, or fewer than two labels with photos.
    """
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    skip = set(exclude)
    seen: set[str] = set()
    photos: list[LabeledPhoto] = []
    folded = 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name in skip:
            continue
        for f in sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if digest in seen:
                folded += 1
                continue
            seen.add(digest)
            photos.append(LabeledPhoto(f, sub.name, digest))
    labels = {p.label for p in photos}
    if len(labels) < 2:
        raise UsageError(f"{folder}: expected one sub-folder of photos per species (found {len(labels)} with photos)")
    return photos, folded


def load_image(path: Path) -> Any:
    """The photo as an RGB PIL image, decoded as intake does (EXIF-rotated, large JPEGs at reduced scale)."""
    from fieldlabel.embedding import open_image

    return open_image(path.read_bytes())


_EMBEDDERS: dict[str, Any] = {}


def embed_paths(paths: Sequence[str], spec: str | None = None) -> np.ndarray:
    """Embeddings of image files with the deployment's embedding spec (``spec=None``: FIELDLABEL_EMBEDDING_SPEC or
    the default) or a named one; one embedder per process and spec, one onnxruntime thread."""
    from fieldlabel.embedding import build_embedder
    from fieldlabel.embedding.spec import spec_name

    name = spec or spec_name()
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = build_embedder(name, n_threads=1)
    return np.asarray(_EMBEDDERS[name].embed_images([load_image(Path(p)) for p in paths]), dtype=np.float32)


def embedding_model_id(spec: str | None = None) -> str:
    """The id of the embeddings :func:`embed_paths` computes for ``spec``."""
    from fieldlabel.embedding.spec import model_id, spec_name

    return model_id(spec or spec_name())


def embed_photos(photos: Sequence[LabeledPhoto], *, jobs: int = 1, cache_dir: Path | None = None,
                 spec: str | None = None, embed: Callable[..., np.ndarray] = embed_paths,
                 model_id: str | None = None, on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Embeddings (n, D) of the photos, computed in ``jobs`` processes (one onnxruntime thread each).

    With ``cache_dir``, vectors are kept (float16, keyed by the file's SHA-256) in ``<cache_dir>/<model id>.npz``,
    so a second run embeds only new photos.
    """
    mid = model_id or embedding_model_id(spec)
    cache: dict[str, np.ndarray] = {}
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"{mid.replace('/', '_')}.npz"
        if cache_file.exists():
            with np.load(cache_file, allow_pickle=False) as z:
                cache = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    todo = [p for p in photos if p.sha256 not in cache]
    chunks = [todo[i:i + EMBED_CHUNK] for i in range(0, len(todo), EMBED_CHUNK)]
    done = len(photos) - len(todo)
    if on_progress is not None:
        on_progress(done, len(photos))

    def take(chunk: Sequence[LabeledPhoto], vecs: np.ndarray) -> None:
        nonlocal done
        for p, v in zip(chunk, vecs, strict=True):
            cache[p.sha256] = v.astype(np.float16)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(photos))

    work = [[str(p.path) for p in c] for c in chunks]
    if jobs > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for chunk, vecs in zip(chunks, pool.map(embed, work, [spec] * len(work)), strict=True):
                take(chunk, vecs)
    else:
        for chunk, paths in zip(chunks, work, strict=True):
            take(chunk, embed(paths, spec))
    if cache_file is not None and todo:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(cache)
        tmp = cache_file.with_name(cache_file.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([cache[k] for k in keys]))
        os.replace(tmp, cache_file)
    return np.stack([cache[p.sha256].astype(np.float32) for p in photos])


@dataclass(frozen=True)
class BatchRow:
    """One batch averaged over the replayed orders."""

    batch: int
    photos: float
    auto_share: float
    certified_bound: float | None  # mean over orders with a certified threshold
    machine_labels: int
    machine_correct: int
    held: int
    with_auto: int
    cost_usd: float
    human_only_usd: float

    @property
    def machine_accuracy(self) -> float | None:
        return self.machine_correct / self.machine_labels if self.machine_labels else None

    @property
    def saving_share(self) -> float:
        return 1 - self.cost_usd / self.human_only_usd if self.human_only_usd else 0.0


def run_orders(X: np.ndarray, labels: Sequence[str], *, batches: int, orders: int, settings: EngineSettings,
               rule: str = "engine", audit_fraction: float = 0.05, groups: np.ndarray | None = None,
               on_record: Callable[[int, BatchRecord], None] | None = None) -> list[list[BatchRecord]]:
    """Replay ``orders`` random orders (order k splits with seed k), grouped by near-duplicates."""
    g = near_duplicate_groups(X, settings.duplicate_cosine, seed=settings.seed) if groups is None else groups
    classes = sorted(set(labels))
    runs = []
    for k in range(orders):
        split = split_by_groups(g, batches, seed=k)
        cb = (lambda r, k=k: on_record(k, r)) if on_record is not None else None
        runs.append(replay(X, labels, split, classes=classes, settings=settings, rule=rule,
                           audit_fraction=audit_fraction, seed=k, progress=cb))
    return runs


def batch_rows(runs: Sequence[Sequence[BatchRecord]], prices: PriceBook, assumptions: Assumptions, *,
               backend: Backend = "groundtruth") -> list[BatchRow]:
    """Per batch index: averages over orders, pooled machine-label accuracy, and the cost model's estimate.

    The costs are those of ``labeling.engine: model`` on ``backend``: machine labels are written without a labeling
    job, so they pay neither Ground Truth's active-learning compute nor its per-object fee (on Label Studio no photo
    pays that fee); the audit is the review job."""
    rows = []
    for b in range(len(runs[0])):
        recs = [run[b] for run in runs]
        bounds = [r.certified_bound for r in recs if r.certified_bound is not None and r.auto]
        cost = human = 0.0
        for r in recs:
            est = estimate_batch_cost(BatchUsage(photos=r.size, machine_labeled=r.auto, iterations=0,
                                                 reviewed_objects=r.audited, engine="model", backend=backend),
                                      prices, assumptions)
            cost += est.total_usd
            human += est.all_human_total_usd
        n = len(recs)
        rows.append(BatchRow(
            batch=b + 1, photos=sum(r.size for r in recs) / n, auto_share=sum(r.share for r in recs) / n,
            certified_bound=sum(bounds) / len(bounds) if bounds else None,
            machine_labels=sum(r.auto for r in recs), machine_correct=sum(r.machine_correct for r in recs),
            held=sum(bool(r.held) for r in recs), with_auto=sum(r.auto > 0 for r in recs),
            cost_usd=cost / n, human_only_usd=human / n,
        ))
    return rows


def render_rows(rows: Sequence[BatchRow], *, orders: int) -> str:
    head = (f"{'batch':>5} {'photos':>7} {'machine':>8} {'bound':>7} {'accuracy':>9} {'held':>6} "
            f"{'cost':>10} {'human-only':>11} {'saving':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r.machine_accuracy is None else f"{r.machine_accuracy:.3f}"
        bound = "-" if r.certified_bound is None else f"{r.certified_bound:.3f}"
        held = "-" if not r.with_auto else f"{r.held}/{r.with_auto}"
        lines.append(f"{r.batch:>5} {r.photos:>7.0f} {r.auto_share:>7.1%} {bound:>7} {acc:>9} {held:>6} "
                     f"${r.cost_usd:>9,.2f} ${r.human_only_usd:>10,.2f} {r.saving_share:>6.1%}")
    tot_cost = sum(r.cost_usd for r in rows)
    tot_human = sum(r.human_only_usd for r in rows)
    later = [r for r in rows if r.batch >= 2]
    share = sum(r.auto_share * r.photos for r in later) / max(1.0, sum(r.photos for r in later))
    mach = sum(r.machine_labels for r in rows)
    corr = sum(r.machine_correct for r in rows)
    lines += ["", f"automation share (batches 2+): {share:.1%}   machine-label accuracy: "
                  f"{(corr / mach) if mach else float('nan'):.3f} ({mach} labels over {orders} order(s))",
              f"estimated cost: ${tot_cost:,.2f} vs ${tot_human:,.2f} human-only per order "
              f"(saving {1 - tot_cost / tot_human if tot_human else 0:.1%})"]
    return "\n".join(lines)


def write_chart(rows: Sequence[BatchRow], path: Path, *, alpha: float, title: str) -> None:
    """PNG: machine-labeled share and machine-label accuracy per batch; cost per photo against human-only."""
    from fieldlabel_cli.errors import CliError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--chart needs matplotlib: pip install matplotlib (it is in requirements-dev.txt)") from None
    x = [r.batch for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    top.bar(x, [100 * r.auto_share for r in rows], color="#4c9a2a", label="labeled by the machine")
    acc = [(r.batch, 100 * r.machine_accuracy) for r in rows if r.machine_accuracy is not None]
    if acc:
        top.plot([a for a, _ in acc], [v for _, v in acc], "o-", color="#1f3b73", label="machine-label accuracy")
    top.axhline(100 * (1 - alpha), color="#a33", linestyle=":", label=f"target {1 - alpha:.0%}")
    top.set_ylim(0, 125)
    top.set_ylabel("%")
    top.set_title(title)
    top.legend(loc="upper left", ncol=2, fontsize=8)
    bottom.plot(x, [r.human_only_usd / r.photos if r.photos else 0 for r in rows], "s--", color="#a33",
                label="all photos to taxonomists")
    bottom.plot(x, [r.cost_usd / r.photos if r.photos else 0 for r in rows], "o-", color="#4c9a2a",
                label="with the engine (estimated)")
    bottom.set_ylabel("USD per photo")
    bottom.set_xlabel("batch")
    bottom.set_xticks(x)
    bottom.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CliError(f"cannot write chart {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
