"""Benchmark of the review consolidation: accuracy with few answers per photo on real crowd data, and scale.

Run from the repository root:

    .venv/bin/python benchmarks/consolidation.py [--seeds 25] [--photos 100000] [--reviewers 40]

Part 1 (measured on real answers with gold labels, ../shared/crowd): every set is subsampled to k = 1, 2, 3 and 5
answers per item (a random k of each item's answers, one draw per seed) and consolidated by

* ``ours``: fieldlabel.review.consolidation.consolidate with its defaults (what the post-annotation Lambda runs);
* ``majority``: plain majority vote, ties broken uniformly at random (the expected accuracy of a fair coin);
* ``dawid-skene``: the classic full-confusion Dawid-Skene EM (majority-vote start, maximum-likelihood confusion
  matrices and class priors, 100 iterations), implemented below as the reference.

It prints one line per k and set, ``k=<k> <set>: ours <acc> majority <acc> dawid-skene <acc>``, the mean over seeds,
then the same on the full data next to the published crowd-kit 1.4.2 figures (PROVENANCE.md).

Part 2 (simulated answers, real code path): for 10 and for 300 species, a synthetic Ground Truth post-annotation
payload of 100,000 photos x 3 answers is written to a temporary file, then parsed, validated, consolidated and sized
in each response tier, each scale in a fresh process so its peak RSS is its own. Targets: 30 s and 1 GB each. The
time target is judged on the process's CPU time (what one idle core takes); the wall time is printed with the load
average, since on a shared machine it mostly measures the other jobs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas"))

from fieldlabel.review.consolidation import consolidate, majority_vote  # noqa: E402
from fieldlabel.review.payload import (  # noqa: E402
    RESPONSE_TIERS,
    LabelUnderReview,
    iter_json_array,
    json_size,
    parse_object,
    response_entry,
    review_content,
)

BUDGET = 5_500_000
UNKNOWN = "not-a-tree-or-cannot-tell"
PUBLISHED = {"dogs": (0.812, 0.843), "face-sentiment": (0.634, 0.640)}  # (majority vote, Dawid-Skene), crowd-kit


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------ part 1: accuracy


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


def subsample(rng: np.random.Generator, item: np.ndarray, k: int) -> np.ndarray:
    """Indices of a random k answers of every item (all of them when it has fewer)."""
    order = rng.permutation(item.size)
    by_item = order[np.argsort(item[order], kind="stable")]
    sorted_items = item[by_item]
    starts = np.r_[0, np.flatnonzero(sorted_items[1:] != sorted_items[:-1]) + 1]
    rank = np.arange(sorted_items.size) - np.repeat(starts, np.diff(np.r_[starts, sorted_items.size]))
    return np.sort(by_item[rank < k])


def dawid_skene(item, worker, label, *, n_items: int, n_workers: int, n_classes: int, iters: int = 100):
    """Classic Dawid-Skene (1979) EM, the reference: full confusion matrices and class priors by maximum likelihood,
    started from the majority vote; a 1e-6 floor only keeps logarithms finite."""
    k = n_classes
    post = np.zeros((n_items, k))
    np.add.at(post, (item, label), 1.0)
    has = post.sum(axis=1) > 0
    post[has] /= post[has].sum(axis=1, keepdims=True)
    for _ in range(iters):
        conf = np.full((n_workers, k, k), 1e-6)
        for t in range(k):
            conf[:, t, :] += np.bincount(worker * k + label, weights=post[item, t], minlength=n_workers * k).reshape(
                n_workers, k
            )
        conf /= conf.sum(axis=2, keepdims=True)
        prior = post[has].mean(axis=0) + 1e-6
        logp = np.zeros((n_items, k)) + np.log(prior / prior.sum())
        np.add.at(logp, item, np.log(conf[worker, :, label]))
        logp -= logp.max(axis=1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=1, keepdims=True)
        new[~has] = 0.0
        if np.allclose(new, post, atol=1e-7):
            post = new
            break
        post = new
    return np.where(has, np.argmax(post, axis=1), -1)


def bench_crowd(crowd: Path, seeds: int) -> None:
    """Part 1: accuracy against gold at k answers per item."""
    print(f"== accuracy on real crowd answers ({crowd}), k answers per item, mean of {seeds} random draws ==")
    if not crowd.is_dir():
        print("skipped: folder not present")
        return
    sets = sorted(p for p in crowd.iterdir() if (p / "answer.csv").is_file())
    data = {folder.name: load_crowd(folder) for folder in sets}
    for k in (1, 2, 3, 5):
        for name, (item, worker, label, n, w, c, gi, gold) in data.items():
            acc = {"ours": [], "majority": [], "dawid-skene": []}
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                keep = subsample(rng, item, k)
                it, wk, lb = item[keep], worker[keep], label[keep]
                ours = consolidate(it, wk, lb, n_items=n, n_workers=w, n_classes=c)
                acc["ours"].append(np.mean(ours.label[gi] == gold))
                acc["majority"].append(np.mean(majority_vote(it, lb, n_items=n, n_classes=c, rng=rng)[gi] == gold))
                ds = dawid_skene(it, wk, lb, n_items=n, n_workers=w, n_classes=c)
                acc["dawid-skene"].append(np.mean(ds[gi] == gold))
            print(f"k={k} {name}: " + " ".join(f"{m} {np.mean(v):.4f}" for m, v in acc.items()), flush=True)
    for name, (item, worker, label, n, w, c, gi, gold) in data.items():
        ours = consolidate(item, worker, label, n_items=n, n_workers=w, n_classes=c)
        mv = np.mean(
            [np.mean(majority_vote(item, label, n_items=n, n_classes=c, rng=np.random.default_rng(s))[gi] == gold)
             for s in range(seeds)]
        )
        ds = dawid_skene(item, worker, label, n_items=n, n_workers=w, n_classes=c)
        right = int(np.sum(ours.label[gi] == gold))
        pub = PUBLISHED.get(name)
        ref = f" (published: majority {pub[0]:.3f}, dawid-skene {pub[1]:.3f})" if pub else ""
        print(
            f"k=all {name}: ours {right / gi.size:.4f} ({right}/{gi.size}, model {ours.model}) majority {mv:.4f} "
            f"dawid-skene {np.mean(ds[gi] == gold):.4f}{ref}"
        )


# --------------------------------------------------------------------------------------------------- part 2: scale


def write_payload(path: Path, *, photos: int, species: int, reviewers: int, seed: int):
    """Stream a synthetic payload to ``path``; returns the manifest lookup and the true labels.

    Reviewers have accuracies uniform in 0.6..0.98; half of a reviewer's mistakes name the species' look-alike
    (a systematic confusion), the other half a random species.
    """
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
                if rng.random() < accuracy[w]:
                    answer = truth[i]
                elif rng.random() < 0.5:
                    answer = (truth[i] + 1) % species
                else:
                    answer = (truth[i] + rng.integers(1, species)) % species
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
    """Part 2, one scale: time and memory of the post-annotation path (run in its own process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.json"
        t0 = time.perf_counter()
        lookup, truth = write_payload(path, photos=photos, species=species, reviewers=reviewers, seed=1)
        gen = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        rss_before = peak_rss_mb()
        valid = {f"species-{i:03d}" for i in range(species)} | {UNKNOWN}

        t0 = time.perf_counter()
        cpu0 = time.process_time()
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
                        reasons=res.reasons(i),
                        tier=tier,
                    ),
                )
                for i, p in enumerate(parsed)
            )
            tier_sizes[tier] = json_size(entries)
        t_resp = time.perf_counter() - t2
        total = t_parse + t_em + t_resp
        cpu = time.process_time() - cpu0
        peak = peak_rss_mb()

        truth_idx = np.array([ci[f"species-{t:03d}"] for t in truth])
        mv = majority_vote(item, label, n_items=len(parsed), n_classes=len(classes), rng=np.random.default_rng(0))
        # CPU time is what one idle core would take; wall time depends on what else the machine runs.
        verdict = "within" if cpu <= 30 and peak <= 1024 else "OVER"
        print(
            f"scale {species} species: {photos:,} photos x 3 answers, {reviewers} reviewers, payload {size_mb:.0f} MB "
            f"(generated in {gen:.0f} s, not counted)"
        )
        print(
            f"  cpu {cpu:.1f} s, wall {total:.1f} s at load {os.getloadavg()[0]:.0f} (parse+validate {t_parse:.1f} s, "
            f"consolidation {t_em:.1f} s [{res.model}, "
            f"{res.iterations} it, evidence {({k: round(v) for k, v in res.evidence.items()})}], response sizing "
            f"{t_resp:.1f} s); peak RSS {peak:.0f} MB (before parsing {rss_before:.0f} MB) -> cpu and memory "
            f"{verdict} 30 s / 1 GB"
        )
        print(
            f"  accuracy vs simulated truth: ours {np.mean(res.label == truth_idx):.4f}, majority "
            f"{np.mean(mv == truth_idx):.4f}; flagged {res.needs_adjudication.mean():.1%}; response "
            + ", ".join(f"{t} {s / 1e6:.1f} MB" for t, s in tier_sizes.items())
            + f" (budget {BUDGET / 1e6:.1f} MB per call)",
            flush=True,
        )


def main() -> None:
    """Parse arguments and run both parts (each scale in a fresh process)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=25)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--reviewers", type=int, default=40)
    ap.add_argument("--species", type=int, nargs="*", default=[10, 300])
    ap.add_argument("--crowd", type=Path, default=ROOT.parent / "shared" / "crowd")
    ap.add_argument("--scale-only", type=int, help=argparse.SUPPRESS)  # child process: one scale
    ap.add_argument("--skip-crowd", action="store_true")
    args = ap.parse_args()
    if args.scale_only:
        bench_scale(args.photos, args.scale_only, args.reviewers)
        return
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if not args.skip_crowd:
        bench_crowd(args.crowd, args.seeds)
    print("== scale: post-annotation path (streamed parse, validation, consolidation, response sizing) ==", flush=True)
    for species in args.species:
        subprocess.run(
            [sys.executable, __file__, "--scale-only", str(species), "--photos", str(args.photos), "--reviewers",
             str(args.reviewers)],
            check=True,
        )


if __name__ == "__main__":
    main()
