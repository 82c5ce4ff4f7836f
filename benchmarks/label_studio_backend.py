"""Label Studio backend benchmark: submit, answer, check and finish a batch against a REAL local server (not a test).

    .venv/bin/python benchmarks/label_studio_backend.py                    # 1,000 photos, 3 answers each
    .venv/bin/python benchmarks/label_studio_backend.py --photos 5000 --answers 1
    .venv/bin/python benchmarks/label_studio_backend.py --url http://127.0.0.1:8080 --token TOKEN

Starts a local Label Studio (localrun/labelstudio.py, SQLite) unless --url is given, then times, on a batch of
--photos photos with the model's suggestion as prediction: the import (chunks of 500), a repeated submission (the
idempotency check: lists the batch, imports nothing), the completion check, and finish_batch (reads every task with
its annotations, consolidates, writes the output manifest to moto S3). The simulated taxonomists' answers go through
the API one request each (that part measures the server, not the backend). Prints wall times and the finisher's
peak memory; nothing is asserted. SQLite on a shared machine is slower than the deployed PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

import boto3  # noqa: E402
from fieldlabel.labeling.label_studio.backend import LabelStudioBackend, LabelStudioSettings  # noqa: E402
from fieldlabel.labeling.label_studio.client import LabelStudioClient  # noqa: E402
from fieldlabel.labeling.label_studio.completion import batch_status, finish_batch  # noqa: E402
from fieldlabel.labeling.label_studio.labeling_config import picker_result  # noqa: E402
from moto import mock_aws  # noqa: E402

from localrun.labelstudio import LabelStudioServer  # noqa: E402

UNKNOWN = "not-a-tree-or-cannot-tell"


def _timed(what: str, fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    print(f"{what:<48} {time.perf_counter() - start:8.2f} s")
    return out


def run(url: str, token: str, photos: int, answers: int, species: int, batch: str = "b-bench") -> None:
    rng = random.Random(7)
    labels = tuple((f"taxon-{i:03d}", f"Genus{i:03d} species{i:03d}") for i in range(species))
    client = LabelStudioClient(url, token)
    backend = LabelStudioBackend(LabelStudioSettings(
        project=f"bench{photos}x{answers}", taxonomy_hash="b" * 16, labels=labels, unknown_label=UNKNOWN,
        output_path="s3://bench/ls-output/", annotators_per_photo=answers, model_version="bench"))
    truth = {f"sha256:{batch}-{i:058x}": rng.choice(labels)[0] for i in range(photos)}
    lines = [{"source-ref": f"s3://copies/{p[7:]}.jpg", "photo-id": p, "field": {"site_id": f"S{i % 40}"},
              "label-under-review": {"label": truth[p], "confidence": 0.8, "source": "model"}}
             for i, p in enumerate(truth)]
    submitted = _timed(f"submit {photos} photos (import)", lambda: backend.submit_batch(
        client, stage="labeling", batch_id=batch, lines=lines))
    _timed("submit again (idempotency: nothing imported)", lambda: backend.submit_batch(
        client, stage="labeling", batch_id=batch, lines=lines))
    users = [int(client.ensure_user(f"bench{i}@example.org")["id"]) for i in range(answers)]
    by_task = dict(zip(submitted.task_ids, sorted(truth), strict=True))

    def answer_all() -> None:
        for task_id, photo in by_task.items():
            for who in users:
                label = truth[photo] if rng.random() < 0.9 else rng.choice(labels)[0]
                client.create_annotation(task_id, [picker_result(label)], completed_by=who)

    _timed(f"{photos * answers} answers through the API (server)", answer_all)
    status = _timed("completion check (batch_status: server counts)", lambda: batch_status(
        client, submitted.project_id, batch, photos))
    print(f"{'':<48} {status.as_dict()}")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        job = backend.job_name(batch)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        described = _timed("finish_batch (read, consolidate, write manifest)", lambda: finish_batch(
            client, s3, project_id=submitted.project_id, batch_id=batch, job_name=job,
            output_uri=backend.output_uri(job), labels=[label for label, _ in labels], unknown_label=UNKNOWN))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counters = described["LabelCounters"]
    print(f"labeled {counters['TotalLabeled']}/{photos}; consolidation {described['Consolidation']['model']}; "
          f"peak RSS {after / 1024:.0f} MiB (grew {max(after - before, 0) / 1024:.0f} MiB in finish)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--answers", type=int, default=3, help="answers per photo")
    ap.add_argument("--species", type=int, default=300)
    ap.add_argument("--url", help="an existing server (default: start a local one)")
    ap.add_argument("--token", help="its API token (with --url)")
    ap.add_argument("--batch", default="b-bench", help="batch id (a new one to re-run against the same server)")
    args = ap.parse_args()
    if args.url:
        if not args.token:
            ap.error("--url needs --token")
        run(args.url, args.token, args.photos, args.answers, args.species, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = _timed("start a local Label Studio (first start: migrations)",
                        lambda: LabelStudioServer(Path(tmp) / "ls").start())
        try:
            run(server.url, server.token, args.photos, args.answers, args.species, args.batch)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
