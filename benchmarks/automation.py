"""Automation benchmark: the engine against the point-estimate reference rule on real labeled photos (not a test).

    .venv/bin/python benchmarks/automation.py                        # 29 tree species, 10 orders, 6 batches
    .venv/bin/python benchmarks/automation.py --with-other           # + the "other" (not a tree) class
    .venv/bin/python benchmarks/automation.py --photos DIR --orders 20 --batches 6

Photos: one sub-folder per species (default ../shared/data/tree-species from the project root); byte-identical
copies are folded as intake folds them. Embeddings are cached outside the repository (~/.cache/fieldlabel-bench).
Protocol (docs/engine.md): batches split at random by near-duplicate group (cosine > 0.97: a group never straddles
two batches); batch 1 all human; after it, each rule decides, humans label the rest with the truth, 5 % of machine
labels are audited (their truth joins training), the model retrains. Both rules see the same orders.

- reference: Ground Truth's description, a point estimate: the lowest max-probability threshold whose
  cross-validated accuracy of accepted labels is >= 1 - alpha, scored by one model refit on all labels, on
  single-view Lite0 features (what the reference measurement used; ``--reference-spec`` changes it), logistic
  regression with C = 10 (the reference measurement's; pinned, so that tuning the engine's ``l2_c`` never moves
  the rule it is compared with).
- engine: fieldlabel.engine with its default settings on the deployment's embedding.

Then: embedding throughput on one core, and training time and peak memory for 100,000 labels of 300 species (in a
child process, synthetic embeddings of the deployment's dimension). Ends with the engine's two summary lines.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT / "cli")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from fieldlabel.engine import EngineSettings, train_model  # noqa: E402
from fieldlabel.engine.classifier import near_duplicate_groups  # noqa: E402
from fieldlabel.engine.replay import BatchRecord, totals  # noqa: E402
from fieldlabel_cli.evaluate import (  # noqa: E402
    embed_photos,
    embedding_model_id,
    load_image,
    run_orders,
    scan_labeled_folder,
)

REFERENCE_L2_C = 10.0  # the reference measurement's logistic regression (shared/reference/auto-labeling.md)
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "tree-species"
CACHE = Path.home() / ".cache" / "fieldlabel-bench"


def pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def held_mark(r: BatchRecord) -> str:
    return "  -  " if r.held is None else ("  yes" if r.held else "   NO")


def print_runs(name: str, ref: list[list[BatchRecord]], eng: list[list[BatchRecord]]) -> None:
    print(f"\n== {name}: per batch (reference = point estimate | engine = certified)")
    print(f"{'order':>5} {'batch':>5} {'photos':>6} | {'ref auto':>8} {'ref acc':>7} {'>=95%':>5} | "
          f"{'eng auto':>8} {'eng acc':>7} {'bound':>6} {'>=95%':>5} {'blocked':>7} {'labels':>6}")
    for k, (rr, er) in enumerate(zip(ref, eng, strict=True)):
        for a, b in zip(rr, er, strict=True):
            bound = "   -  " if b.certified_bound is None else f"{b.certified_bound:6.3f}"
            print(f"{k:>5} {a.batch:>5} {a.size:>6} | {pct(a.share):>8} {pct(a.machine_accuracy):>7} "
                  f"{held_mark(a):>5} | {pct(b.share):>8} {pct(b.machine_accuracy):>7} {bound} {held_mark(b):>5} "
                  f"{len(b.blocked):>7} {b.training_labels:>6}")
    print(f"\n{'batch':>5} | {'ref auto':>8} {'ref held':>8} | {'eng auto':>8} {'eng held':>8} {'eng acc':>7} "
          f"{'model acc':>9}")
    for b in range(len(ref[0])):
        rs = [run[b] for run in ref]
        es = [run[b] for run in eng]
        racc = [r.model_accuracy for r in es if r.model_accuracy is not None]
        e_auto = sum(r.auto for r in es)
        print(f"{b + 1:>5} | {pct(sum(r.share for r in rs) / len(rs)):>8} "
              f"{sum(bool(r.held) for r in rs):>3}/{sum(r.auto > 0 for r in rs):<4} | "
              f"{pct(sum(r.share for r in es) / len(es)):>8} "
              f"{sum(bool(r.held) for r in es):>3}/{sum(r.auto > 0 for r in es):<4} "
              f"{pct(sum(r.machine_correct for r in es) / e_auto if e_auto else None):>7} "
              f"{pct(sum(racc) / len(racc) if racc else None):>9}")
    for rule, runs in (("reference", ref), ("engine", eng)):
        t = totals(runs)
        acc = "-" if t["machine_accuracy"] is None else f"{t['machine_accuracy']:.3f}"
        print(f"\n{rule}: automation (batches 2+) {100 * t['share']:.1f} %, machine-label accuracy {acc}, "
              f">= 95 % in {t['held']} of {t['batches_with_auto']} batches with machine labels")
        low = [(lab, n, k) for lab, (n, k) in t["per_class"].items() if n and k / n < 0.9]
        worst = t["worst_class"]
        if worst:
            print(f"  worst species: {worst['label']} {worst['accuracy']:.3f} over {worst['machine_labels']} "
                  f"machine labels; species below 90 %: "
                  + (", ".join(f"{lab} {k}/{n}" for lab, n, k in low) if low else "none"))
        if rule == "engine":
            print("  per species (machine labels correct/total over all orders): "
                  + ", ".join(f"{lab} {k}/{n}" for lab, (n, k) in t["per_class"].items()))


def throughput(photos: list, n: int = 24) -> tuple[float, float]:
    """Photos per second of the deployment's embedder on one core (CPU time and wall time, decode included)."""
    from fieldlabel.embedding import build_embedder
    from fieldlabel.embedding.spec import spec_name

    emb = build_embedder(spec_name(), n_threads=1)
    sample = photos[:n]
    emb.embed_images([load_image(sample[0].path)])  # warm-up
    c0, w0 = time.process_time(), time.perf_counter()
    emb.embed_images([load_image(p.path) for p in sample])
    return len(sample) / (time.process_time() - c0), len(sample) / (time.perf_counter() - w0)


def scale_child(n: int, species: int, dim: int) -> None:
    """Child process: train on n synthetic labels of ``species`` classes, then score a batch of n photos."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((species, dim)).astype(np.float32)
    y = rng.integers(0, species, n)
    X = np.empty((n, dim), dtype=np.float16)  # embeddings arrive as float16 from the photos table
    for a in range(0, n, 8192):
        X[a:a + 8192] = centres[y[a:a + 8192]] * 0.15 + rng.standard_normal((min(8192, n - a), dim))
    classes = [f"species-{i:03d}" for i in range(species)]
    labels = [classes[i] for i in y]
    del centres
    c0, w0 = time.process_time(), time.perf_counter()
    model = train_model(X, labels, classes=classes, random_slice=None, settings=EngineSettings(), lineage={})
    c1, w1 = time.process_time(), time.perf_counter()
    from fieldlabel.engine import decide_batch

    decide_batch(model, X, [f"p{i}" for i in range(n)], settings=EngineSettings())
    c2, w2 = time.process_time(), time.perf_counter()
    size = len(model.to_bytes())
    print(f"{c1 - c0:.1f} {w1 - w0:.1f} {c2 - c1:.1f} {w2 - w1:.1f} {size} "
          f"{model.metadata['training']['iterations']} {model.metadata['validation']['out_of_fold_accuracy']:.3f}")


def scale(n: int, species: int, dim: int) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, __file__, "--scale-child", str(n), str(species), str(dim)],
                         capture_output=True, text=True, check=True).stdout.split()
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    train_cpu, train_wall, dec_cpu, dec_wall, size = (float(v) for v in out[:5])
    print(f"training on {n:,} labels x {species} species ({dim}-d float16 embeddings, "
          f"{EngineSettings().folds}-fold ensemble, one thread): {train_cpu:.0f} s CPU ({train_wall:.0f} s wall); "
          f"deciding a {n:,}-photo batch: {dec_cpu:.0f} s CPU; peak memory {peak_mb:,.0f} MB; "
          f"model {size / 1e6:.1f} MB; L-BFGS iterations per fold {' '.join(out[5:-1])}")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--scale-child":
        scale_child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--orders", type=int, default=10)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--with-other", action="store_true", help="keep the 'other' (not a tree) class")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--audit", type=float, default=0.05, help="share of machine labels audited")
    ap.add_argument("--reference-spec", default="lite0", help="embedding spec of the reference rule")
    ap.add_argument("--jobs", type=int, default=2, help="processes embedding photos not in the cache")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--scale-labels", type=int, default=100_000)
    ap.add_argument("--scale-species", type=int, default=300)
    ap.add_argument("--skip-scale", action="store_true", help="skip the 100k-label training measurement")
    args = ap.parse_args()

    photos, folded = scan_labeled_folder(args.photos, exclude=() if args.with_other else ("other",))
    labels = [p.label for p in photos]
    print(f"{len(photos)} photos of {len(set(labels))} classes from {args.photos} ({folded} byte-identical copies "
          f"folded){'' if args.with_other else '; without other'}")
    X = embed_photos(photos, jobs=args.jobs, cache_dir=args.cache)
    Xr = embed_photos(photos, jobs=args.jobs, cache_dir=args.cache, spec=args.reference_spec)
    print(f"engine features: {embedding_model_id()} ({X.shape[1]}-d); reference features: "
          f"{embedding_model_id(args.reference_spec)} ({Xr.shape[1]}-d)")
    settings = EngineSettings(alpha=args.alpha, delta=args.delta)
    # one split for both rules: near-duplicate groups of the engine's features
    groups = near_duplicate_groups(X, settings.duplicate_cosine)
    print(f"{int(groups.max()) + 1} near-duplicate groups; {args.orders} orders x {args.batches} batches; "
          f"alpha {args.alpha}, delta {args.delta}, audit {args.audit:.0%}")
    t0 = time.perf_counter()
    ref_settings = EngineSettings(alpha=args.alpha, delta=args.delta, l2_c=REFERENCE_L2_C)
    ref = run_orders(Xr, labels, batches=args.batches, orders=args.orders, settings=ref_settings, rule="reference",
                     audit_fraction=args.audit, groups=groups)
    eng = run_orders(X, labels, batches=args.batches, orders=args.orders, settings=settings, rule="engine",
                     audit_fraction=args.audit, groups=groups)
    print(f"(replays took {time.perf_counter() - t0:.0f} s)")
    print_runs("29 tree species" if not args.with_other else "30 classes with other", ref, eng)

    cpu_rate, wall_rate = throughput(photos)
    print(f"\nembedding throughput, one core ({embedding_model_id()}): {cpu_rate:.1f} photos/s of CPU "
          f"({wall_rate:.1f} photos/s wall on this shared machine), decoding included")
    if not args.skip_scale:
        scale(args.scale_labels, args.scale_species, X.shape[1])
    t = totals(eng)
    print(f"automation share (batches 2+): {100 * t['share']:.1f} %")
    print(f"guarantee held: {t['held']} of {t['batches_with_auto']} batches")


if __name__ == "__main__":
    main()
