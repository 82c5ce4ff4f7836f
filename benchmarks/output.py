"""Time and peak memory of the two big workflow steps at Ground Truth's 100,000-object job limit.

1. Preparing a 100,000-photo input manifest (``prepare_labeling_job``: page through the ``by_batch`` index, spool
   manifest lines, upload).
2. Processing a 100,000-line output manifest (``process_output``: stream the manifest from S3, parse each line,
   write each label to the registry).

AWS is replaced by injected in-process fakes (not moto: moto's DynamoDB takes minutes for 100,000 items and would
measure moto): a DynamoDB client that pages generated photo items and accepts writes, and an S3 client whose
``get_object`` streams a real file through botocore's ``StreamingBody`` and whose upload drains the spooled file.
So the figures are the code's own CPU and memory; network latency is not included.

Run: ``.venv/bin/python benchmarks/output.py [--photos 100000]``. Target: each step within 60 s and 512 MB.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]

from botocore.response import StreamingBody  # noqa: E402
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend, GroundTruthSettings  # noqa: E402
from fieldlabel.labeling.prepare import Tables, prepare_labeling_job  # noqa: E402
from fieldlabel.labeling.process import process_output  # noqa: E402
from fieldlabel.registry.model import to_item  # noqa: E402

BATCH = "b20261126t063000z-1a2b3c4d"
LABELS = ["quercus-robur", "fagus-sylvatica", "acer-pseudoplatanus", "betula-pendula", "pinus-sylvestris",
          "picea-abies", "fraxinus-excelsior", "tilia-cordata", "castanea-sativa", "not-a-tree-or-cannot-tell"]
PAGE = 1000  # items per Query page (a 1 MB DynamoDB page holds roughly this many photo items)


def photo_id(i: int) -> str:
    return f"sha256:{i:064x}"


class FakeDynamoDB:
    """Pages generated BATCHED photo items out of ``by_batch``; counts and drops writes."""

    def __init__(self, photos: int) -> None:
        self.photos = photos
        self.updates = 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        start = int(kwargs.get("ExclusiveStartKey", {}).get("n", {}).get("N", "0"))
        end = min(start + PAGE, self.photos)
        items = [to_item({
            "photo_id": photo_id(i), "status": "BATCHED", "batch_id": BATCH,
            "labeling_ref": f"s3://treelabel-intake/labeling-copies/sha256-{i:064x}.jpg",
            "original": {"bucket": "treelabel-intake", "key": f"uploads/site-{i % 40}/IMG_{i}.HEIC"},
            "field": {"site_id": f"S{i % 40}", "captured_at": "2026-05-01T10:00:00Z", "latitude": 52.1,
                      "longitude": 5.2, "collector": "A. Botanist", "notes": "north slope, near the stream"},
        }) for i in range(start, end)]
        resp: dict[str, Any] = {"Items": items}
        if end < self.photos:
            resp["LastEvaluatedKey"] = {"n": {"N": str(end)}}
        return resp

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self.updates += 1
        return {"Attributes": {}}

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return {}


class FakeS3:
    """``upload_fileobj`` drains the stream in 8 MB parts (as s3transfer would); ``get_object`` streams a file."""

    def __init__(self, files: dict[str, Path] | None = None) -> None:
        self.files = files or {}
        self.uploaded = 0

    def upload_fileobj(self, fileobj: Any, bucket: str, key: str, ExtraArgs: Any = None) -> None:  # noqa: N803
        while chunk := fileobj.read(8 * 1024 * 1024):
            self.uploaded += len(chunk)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        path = self.files[f"s3://{Bucket}/{Key}"]
        return {"Body": StreamingBody(path.open("rb"), path.stat().st_size)}


class NoSageMaker:
    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "none"}}, "DescribeLabelingJob")


def backend() -> GroundTruthBackend:
    return GroundTruthBackend(GroundTruthSettings(
        project="treelabel", region="eu-west-1", role_arn="arn:aws:iam::222222222222:role/gt",
        workteam_arn="arn:aws:sagemaker:eu-west-1:222222222222:workteam/private-crowd/taxonomists",
        label_categories_uri="s3://assets/label-categories.json", ui_template_uri="s3://assets/ui.liquid.html",
        output_path="s3://artifacts/gt-output/", kms_key_arn="arn:aws:kms:eu-west-1:222222222222:key/k"))


def write_output_manifest(path: Path, photos: int) -> None:
    """A realistic output manifest: 1/3 human, 1/50 failed, the rest machine-labeled."""
    with path.open("w") as f:
        for i in range(photos):
            line: dict[str, Any] = {
                "source-ref": f"s3://treelabel-intake/labeling-copies/sha256-{i:064x}.jpg", "photo-id": photo_id(i),
                "original-ref": f"s3://treelabel-intake/uploads/site-{i % 40}/IMG_{i}.HEIC",
                "field": {"site_id": f"S{i % 40}", "captured_at": "2026-05-01T10:00:00Z"},
            }
            meta: dict[str, Any] = {"type": "groundtruth/image-classification",
                                    "job-name": "labeling-job/treelabel-b20261126t063000z-1a2b3c4d",
                                    "creation-date": "2026-11-26T07:00:00.000000"}
            if i % 50 == 49:
                meta["failure-reason"] = "ClientError: task expired"
            else:
                label = LABELS[i % len(LABELS)]
                line["species"] = str(LABELS.index(label))
                meta.update({"class-name": label, "confidence": 0.0 if i % 3 == 0 else 0.97,
                             "human-annotated": "yes" if i % 3 == 0 else "no"})
            line["species-metadata"] = meta
            f.write(json.dumps(line, separators=(",", ":")) + "\n")


def measure(label: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` twice: once for wall and CPU time, once under tracemalloc for the Python heap peak."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"step": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "python_heap_peak_mb": round(peak / 2**20, 1), "process_max_rss_mb": round(rss_after / 1024, 1),
            "rss_growth_mb": round((rss_after - rss_before) / 1024, 1), "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=100_000)
    args = parser.parse_args()
    n = args.photos
    tables = Tables("photos", "batches", "artifacts")
    gt = backend()

    def prepare() -> dict[str, Any]:
        s3 = FakeS3()
        out = prepare_labeling_job(dynamodb=FakeDynamoDB(n), s3=s3, sagemaker=NoSageMaker(), backend=gt,
                                   tables=tables, batch_id=BATCH, automated_enabled=True,
                                   now_iso="2026-11-26T07:00:00Z")
        return {"photo_count": out["photo_count"], "kind": out["kind"], "manifest_mb": round(s3.uploaded / 2**20, 1)}

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "output.manifest"
        write_output_manifest(manifest, n)
        uri = "s3://artifacts/gt-output/job/manifests/output/output.manifest"
        job = {"LabelingJobName": "treelabel-job", "LabelingJobStatus": "Completed",
               "LabelingJobOutput": {"OutputDatasetS3Uri": uri}, "LabelCounters": {}}

        def process() -> dict[str, Any]:
            ddb = FakeDynamoDB(n)
            stats = process_output(dynamodb=ddb, s3=FakeS3({uri: manifest}), backend=gt, tables=tables,
                                   batch_id=BATCH, kind="automated", job=job, now_iso="2026-11-26T07:00:00Z",
                                   release_unlabeled=lambda reason: (0, 0, 0), expected_count=n, concurrency=16)
            return {"lines": stats["lines"], "labeled": stats["labeled"], "failed": stats["failed"],
                    "registry_updates": ddb.updates, "manifest_mb": round(manifest.stat().st_size / 2**20, 1)}

        results = [measure("prepare input manifest", prepare), measure("process output manifest", process)]

    print(f"Labeling workflow benchmark: {n:,} photos; AWS replaced by injected in-process fakes "
          f"(DynamoDB pages of {PAGE}, S3 streaming from a local file); Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs visible, one process")
    for r in results:
        ok = r["wall_s"] <= 60 and r["process_max_rss_mb"] <= 512
        print(f"- {r['step']}: {r['wall_s']} s wall, {r['cpu_s']} s CPU, Python heap peak "
              f"{r['python_heap_peak_mb']} MB, process max RSS {r['process_max_rss_mb']} MB "
              f"[{'within' if ok else 'OVER'} 60 s / 512 MB] {json.dumps(r['result'])}")


if __name__ == "__main__":
    main()
