"""Benchmark of the review consolidation: 100,000 photos x 3 reviewers, and accuracy on real crowd data.

Run from the repository root:

    .venv/bin/python benchmarks/consolidation.py [--photos 100000] [--species 300] [--reviewers 40]

Part 1 writes a synthetic Ground Truth post-annotation payload file (streamed to a temporary file, so generating it
costs no memory), then times the post-annotation path in-process: streaming parse -> answer validation -> EM ->
response in each tier. It prints wall time, the process's peak RSS and the response size per tier against Lambda's
6 MB synchronous response limit. Part 2 prints accuracy against gold next to majority vote on each set in
../shared/crowd (skipped when absent).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))

from fieldlabel.review.consolidation import ConsolidationConfig, consolidate, majority_vote  # noqa: E402
from fieldlabel.review.payload import (  # noqa: E402
    RESPONSE_TIERS,
    LabelUnderReview,
    iter_json_array,
    json_size,
    parse_object,
    response_entry,
    review_content,
)

LAMBDA_LIMIT = 6 * 1024 * 1024
BUDGET = 5_500_000
UNKNOWN = "not-a-tree-or-cannot-tell"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_payload(path: Path, *, photos: int, species: int, reviewers: int, seed: int) -> tuple[dict, np.ndarray]:
    """Stream a synthetic payload to ``path``; returns the manifest lookup and the true labels."""
    rng = np.random.default_rng(seed)
    labels = [f"species-{i:03d}" for i in range(species)]
    accuracy = rng.uniform(0.6, 0.98, reviewers)
    truth = rng.integers(0, species, photos)
    # The label under review is the truth 90 % of the time (a decent machine label).
    machine = np.where(rng.random(photos) < 0.9, truth, rng.integers(0, species, photos))
    lookup: dict[str, tuple[str | None, LabelUnderReview | None]] = {}
    with open(path, "w") as f:
        f.write("[")
        for i in range(photos):
            ref = f"s3://intake/labeling-copies/sha256-{i:064x}.jpg"
            lookup[ref] = (f"sha256:{i:064x}", LabelUnderReview(labels[machine[i]], 0.97, "machine"))
            anns = []
            for w in rng.choice(reviewers, 3, replace=False):
                right = rng.random() < accuracy[w]
                answer = truth[i] if right else rng.integers(0, species)
                if answer == machine[i]:
                    review = {"decision": "confirm"}
                elif rng.random() < 0.02:
                    review = {"decision": "cannot_tell", "comment": "blurry, no leaves visible"}
                else:
                    review = {"decision": "correct", "species": labels[answer]}
                anns.append(
                    {
                        "workerId": f"private.us-east-1.{w:026d}",
                        "annotationData": {"content": json.dumps({"review": json.dumps(review)})},
                    }
                )
            f.write(
                ("," if i else "")
                + json.dumps({"datasetObjectId": str(i), "dataObject": {"s3Uri": ref}, "annotations": anns})
            )
        f.write("]")
    return lookup, truth


def bench_scale(photos: int, species: int, reviewers: int) -> None:
    """Part 1: time and memory of the post-annotation path at scale."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.json"
        t0 = time.perf_counter()
        lookup, truth = write_payload(path, photos=photos, species=species, reviewers=reviewers, seed=1)
        gen = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        rss_before = peak_rss_mb()
        valid = {f"species-{i:03d}" for i in range(species)} | {UNKNOWN}

        t0 = time.perf_counter()
        parsed = []
        with open(path, "rb") as f:
            for obj in iter_json_array(f):
                parsed.append(parse_object(obj, valid_labels=valid, unknown_label=UNKNOWN, lookup=lookup))
        t_parse = time.perf_counter() - t0

        t1 = time.perf_counter()
        classes = sorted(valid)
        ci = {c: i for i, c in enumerate(classes)}
        workers = sorted({w for p in parsed for w, _ in p.answers})
        wi = {w: i for i, w in enumerate(workers)}
        item = np.array([i for i, p in enumerate(parsed) for _ in p.answers])
        worker = np.array([wi[w] for p in parsed for w, _ in p.answers])
        label = np.array([ci[lab] for p in parsed for _, lab in p.answers])
        res = consolidate(item, worker, label, n_items=len(parsed), n_workers=len(workers), n_classes=len(classes))
        t_em = time.perf_counter() - t1

        t2 = time.perf_counter()
        tier_sizes = {}
        for tier in RESPONSE_TIERS:
            entries = (
                response_entry(
                    p.dataset_object_id,
                    "species-review",
                    review_content(
                        label=classes[res.label[i]] if res.label[i] >= 0 else None,
                        confidence=res.confidence[i],
                        agreement=res.agreement[i],
                        needs_adjudication=bool(res.needs_adjudication[i]),
                        answers=int(res.answers[i]),
                        comments=p.comments,
                        skipped=sum(p.skipped.values()),
                        tier=tier,
                    ),
                )
                for i, p in enumerate(parsed)
            )
            tier_sizes[tier] = json_size(entries)
        t_resp = time.perf_counter() - t2
        total = t_parse + t_em + t_resp

        truth_idx = np.array([ci[f"species-{t:03d}"] for t in truth])
        mv = majority_vote(item, label, n_items=len(parsed), n_classes=len(classes))
        print(f"== scale: {photos:,} photos x 3 reviewers, {species} species, {reviewers} reviewers ==")
        print(f"payload file {size_mb:.1f} MB (generated in {gen:.1f} s, not counted)")
        print(
            f"time: parse+validate {t_parse:.2f} s, EM ({res.model}, {res.iterations} it) {t_em:.2f} s, "
            f"response sizing (3 tiers) {t_resp:.2f} s, total {total:.2f} s"
        )
        print(f"peak RSS {peak_rss_mb():.0f} MB (before parsing {rss_before:.0f} MB)")
        print(
            f"accuracy vs truth: EM {np.mean(res.label == truth_idx):.4f}, "
            f"majority vote {np.mean(mv == truth_idx):.4f}; "
            f"needs adjudication {res.needs_adjudication.mean():.1%}"
        )
        for tier, size in tier_sizes.items():
            per = size / max(len(parsed), 1)
            fits = int(BUDGET // per)
            flag = "fits" if size <= BUDGET else "too big"
            print(
                f"response {tier:8s}: {size / 1e6:6.2f} MB ({per:.0f} B/photo) -> {flag} in the {BUDGET / 1e6:.1f} MB "
                f"budget (6 MB limit); up to ~{fits:,} photos per call"
            )


def load_crowd(folder: Path):
    """answer.csv/truth.csv -> index arrays."""
    with open(folder / "answer.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "truth.csv", newline="") as f:
        truth = {r["question"]: r["truth"] for r in csv.DictReader(f)}
    qs = sorted({r["question"] for r in rows})
    ws = sorted({r["worker"] for r in rows})
    cs = sorted({r["answer"] for r in rows} | set(truth.values()))
    qi, wi, ci = ({v: i for i, v in enumerate(x)} for x in (qs, ws, cs))
    item = np.array([qi[r["question"]] for r in rows])
    worker = np.array([wi[r["worker"]] for r in rows])
    label = np.array([ci[r["answer"]] for r in rows])
    gi = np.array([qi[q] for q in truth if q in qi])
    gold = np.array([ci[truth[q]] for q in truth if q in qi])
    return item, worker, label, len(qs), len(ws), len(cs), gi, gold


def bench_crowd(crowd: Path) -> None:
    """Part 2: accuracy on real crowd data against gold."""
    print(f"== accuracy on {crowd} ==")
    if not crowd.is_dir():
        print("skipped: folder not present")
        return
    for folder in sorted(p for p in crowd.iterdir() if (p / "answer.csv").is_file()):
        item, worker, label, n, w, k, gi, gold = load_crowd(folder)
        mv = majority_vote(item, label, n_items=n, n_classes=k)
        line = [
            f"{folder.name:15s} items {n}, answers {item.size}, classes {k}: "
            f"majority vote {np.mean(mv[gi] == gold):.4f}"
        ]
        for model in ("auto", "full", "one_coin"):
            t0 = time.perf_counter()
            res = consolidate(
                item, worker, label, n_items=n, n_workers=w, n_classes=k, config=ConsolidationConfig(model=model)
            )
            dt = time.perf_counter() - t0
            line.append(f"EM[{model}->{res.model}] {np.mean(res.label[gi] == gold):.4f} ({dt * 1000:.0f} ms)")
        print(", ".join(line))


def main() -> None:
    """Parse arguments and run both parts."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--species", type=int, default=300)
    ap.add_argument("--reviewers", type=int, default=40)
    ap.add_argument("--crowd", type=Path, default=ROOT.parent / "shared" / "crowd")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpus {os.cpu_count()}")
    bench_scale(args.photos, args.species, args.reviewers)
    bench_crowd(args.crowd)


if __name__ == "__main__":
    main()
