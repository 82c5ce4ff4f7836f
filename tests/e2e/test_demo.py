"""The offline demo end to end (smaller sample): its report is checked against the run's own registry and dataset.

Nothing expected is written here: every number the report states is recounted from the moto tables and buckets the
run left behind, and from the generator's truth.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import boto3
import pytest

from localrun.demo import Demo, DemoOptions
from localrun.harness import REGION
from localrun.panel import PanelSettings
from localrun.report import ENGINE_REAL, GROUNDTRUTH_SIMULATED, SIMULATED, read_manifest, scan_table

pytestmark = pytest.mark.slow


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def test_demo_report_matches_registry_and_dataset(templates, tmp_path: Path, monkeypatch) -> None:
    # What the review's post-annotation Lambda read from the reviewers table, call by call (the real function,
    # wrapped: the handlers import fieldlabel from this process).
    from fieldlabel.review import postannotation

    reads: list[dict[str, float]] = []
    real_load = postannotation.load_priors

    def load_priors(dynamodb, table, worker_ids):  # noqa: ANN001, ANN202
        got = real_load(dynamodb, table, worker_ids)
        reads.append({k: p.answers for k, p in got.items()})
        return got

    monkeypatch.setattr(postannotation, "load_priors", load_priors)
    out = io.StringIO()
    # 30 photos make human-only batches (Ground Truth's automated labeling needs 1,250 objects): no machine labels,
    # so no audits here (their figures: tests/unit/localrun/test_report.py). Every photo gets the taxonomists' vote
    # (machine_share 0) and they are a little less accurate than the default, so both batches have low-agreement
    # labels to re-review: batch 2's review job is what reads the reliability batch 1's wrote.
    options = DemoOptions(photos=30, batches=2, seed=11, output=tmp_path / "demo-output",
                          panel=PanelSettings(taxonomist_accuracy=0.8, machine_share=0.0),
                          dispatch_every_seconds=1.0, timeout_seconds=400)
    with Demo(options, out=out, templates=templates) as demo:
        report = demo.run()
        h = demo.harness
        assert h is not None and demo.samples is not None
        s3 = boto3.client("s3", region_name=REGION)
        photos = h.photos()

        # Photos in: what is in the bucket under the demo's prefix.
        keys = _keys(s3, h.intake_bucket, "uploads/demo/")
        photo_keys = {k for k in keys if not k.endswith(".json")}
        assert report.files_uploaded == len(photo_keys)
        assert report.sidecars_uploaded == len(keys) - len(photo_keys)
        # Every uploaded photo is accounted for by exactly one registry entry (the real S3 -> SQS -> register path).
        source_keys = [k for p in photos.values() for k in p["source_keys"]]
        assert sorted(source_keys) == sorted(photo_keys)

        # Registered, duplicates, quarantined: recounted from the registry.
        assert report.registered == sum(1 for p in photos.values() if p["status"] != "QUARANTINED")
        assert report.duplicates == sum(len(p["source_keys"]) - 1 for p in photos.values())
        assert report.duplicates > 0
        quarantined = [p for p in photos.values() if p["status"] == "QUARANTINED"]
        assert report.quarantined == dict(Counter(p["quarantine_reason"] for p in quarantined))
        assert sorted(report.quarantined_files) == sorted((p["original"]["key"], p["quarantine_reason"])
                                                          for p in quarantined)
        assert quarantined
        for p in quarantined:  # and intake tagged each quarantined original with its reason
            tags = s3.get_object_tagging(Bucket=h.intake_bucket, Key=p["original"]["key"])["TagSet"]
            assert {"Key": "quarantine-reason", "Value": p["quarantine_reason"]} in tags
        # The generator's truth covers every registered photo (nothing else got in).
        assert {pid for pid, p in photos.items() if p["status"] != "QUARANTINED"} == set(demo.samples.truth)

        # Batches: as the batches table holds them; every one published.
        assert report.batches
        for b in report.batches:
            item = h.batch(b.batch_id)
            assert (b.kind, b.photo_count, b.status, b.dataset_version) == (
                item["kind"], int(item["photo_count"]), item["status"], item.get("dataset_version"))
            assert item["status"] == "PUBLISHED"
            assert sum(1 for p in photos.values() if p.get("batch_id") == b.batch_id) == b.photo_count
        # Jobs: one labeling job per batch (its objects = the photos the engine left to the taxonomists; all of
        # them with Ground Truth), plus review jobs.
        labeling_jobs = {j["name"]: j for j in report.jobs if j["kind"] != "review"}
        assert set(labeling_jobs) == {h.batch(b.batch_id)["job_name"] for b in report.batches}
        for b in report.batches:
            item = h.batch(b.batch_id)
            sent = int(item.get("labeling_photo_count", item["photo_count"])) if demo.uses_engine else b.photo_count
            assert labeling_jobs[item["job_name"]]["objects"] == sent

        # Who labeled what, per batch: recounted from the registry. A machine label is the model's (kept as
        # machine_label when a reviewer corrected it), and with the engine it names the engine's model.
        for b in report.batches:
            item = h.batch(b.batch_id)
            mine = [p for p in photos.values() if p.get("batch_id") == b.batch_id and p["status"] == "LABELED"]
            model_labels = [(p, p["label"] if p.get("label_source") == "machine" else p.get("machine_label"))
                            for p in mine]
            machine = [(p, label) for p, label in model_labels if label is not None]
            assert (b.machine_labeled, b.human_labeled) == (len(machine), len(mine) - len(machine))
            assert b.machine_right == sum(demo.samples.truth[p["photo_id"]] == label for p, label in machine)
            if demo.uses_engine:
                assert b.engine == json.loads(item["engine_summary"])
                assert b.machine_labeled == int(item.get("engine_machine_labeled", 0))
                assert all(p.get("machine_model") == item.get("engine_model") for p, _ in machine)
        if demo.uses_engine:
            # The first batch has no model yet: nothing is machine-labeled, and the simulated panel never is.
            assert report.batches[0].machine_labeled == 0
            assert report.batches[0].engine is not None

        # The dataset: the local copy is byte for byte what the pipeline published.
        dataset_keys = _keys(s3, h.artifacts_bucket, "datasets/")
        local = Path(report.dataset_dir or "")
        for key in dataset_keys:
            body = s3.get_object(Bucket=h.artifacts_bucket, Key=key)["Body"].read()
            assert (local / key.removeprefix("datasets/")).read_bytes() == body
        assert sorted(report.dataset_versions) == sorted({k.split("/")[1] for k in dataset_keys if k.count("/") > 1})

        # Labels and accuracy: recounted from the registry and the truth.
        labeled = [p for p in photos.values() if p["status"] == "LABELED"]
        lines = [line for m in local.glob("*/dataset.manifest") for line in read_manifest(m)]
        assert report.labeled == len(labeled) == len(lines)
        sources = Counter(p.get("label_source") or ("human" if p.get("human_annotated") else "machine")
                          for p in labeled)
        assert report.machine_labeled == sources["machine"]
        assert report.human_labeled == report.labeled - report.machine_labeled
        right = sum(1 for p in labeled if demo.samples.truth[p["photo_id"]] == p["label"])
        assert report.accuracy == pytest.approx(right / len(labeled))
        reviewed = [p for p in labeled if isinstance(p.get("review"), dict) and p["review"].get("decision")]
        assert report.reviewed == len(reviewed)

        # The expert review per batch: audits of machine labels vs re-reviews of low-agreement human labels,
        # recounted from the review manifests the pipeline wrote and the photos' review records; the audits'
        # accuracy against the generator's truth (never the reviewers' opinion).
        truth = demo.samples.truth
        assert sum(b.review.audits + b.review.rereviews for b in report.batches) == report.reviewed > 0
        for b in report.batches:
            mine = [p for p in reviewed if p.get("batch_id") == b.batch_id]
            manifest = h.s3_json_lines(f"s3://{h.artifacts_bucket}/jobs/{b.batch_id}/review.manifest") if mine else []
            reasons = Counter(line["review-reason"] for line in manifest)
            audits = [p for p in mine if p["review"]["label_source"] == "machine"]
            assert b.review.audits == len(audits) == reasons["audit"]
            assert b.review.rereviews == len(mine) - len(audits) == reasons["low_confidence"]
            assert b.review.audits_known == len(audits)
            assert b.review.audits_right == sum(truth[p["photo_id"]] == p["review"]["label_under_review"]
                                                for p in audits)
            assert b.review.audit_verdicts == dict(Counter(p["review"]["decision"] for p in audits))
            assert b.review.rereviews_changed == sum(p["review"]["decision"] in ("corrected", "cannot_tell")
                                                     for p in mine if p not in audits)
            assert b.review.adjudications == sum(bool(p["review"]["needs_adjudication"]) for p in mine)
            if audits:
                lo, hi = b.review.audit_interval or (0.0, 0.0)
                assert lo <= b.review.audit_accuracy <= hi
        assert all(b.review.rereviews > 0 for b in report.batches)

        # Reliability follows the person: the reviewers table holds one item per simulated reviewer, keyed by the
        # Cognito sub from the worker-response files; batch 1's review job wrote it, batch 2's read and extended it,
        # although Ground Truth gave the same person another workerId in the second job.
        gt = h.ground_truth
        review_jobs = [j["name"] for j in report.jobs if j["kind"] == "review"]
        assert len(review_jobs) == 2
        table = {r["worker_id"]: r for r in scan_table(boto3.client("dynamodb", region_name=REGION),
                                                       h.reviewers_table)}
        assert table and all(k.startswith("sub:") for k in table)
        assert [x["key"] for x in report.reviewers] == sorted(table)
        assert [x["jobs"] for x in report.reviewers] == [list(table[k]["job_order"]) for k in sorted(table)]
        person_of = {f"sub:{sub}": person for person, sub in gt.subs.items()}
        both = [k for k, r in table.items() if list(r["job_order"]) == review_jobs]
        assert both
        for key in both:
            person = person_of[key]
            assert set(table[key]["jobs_applied"]) == set(review_jobs)
            first, second = (gt.job_worker_ids[j][person] for j in review_jobs)
            assert first != second
        # Batch 1's post-annotation found an empty table; batch 2's read batch 1's counts for those same people.
        assert reads[0] == {}
        later = [r for r in reads[1:] if r]
        assert later and set(both) <= set(later[-1])
        for key in both:
            assert 0 < later[-1][key] < int(table[key]["answers"])

    text = out.getvalue()
    assert SIMULATED in text and str(local) in text
    assert (ENGINE_REAL if report.engine == "model" else GROUNDTRUTH_SIMULATED) in text
    saved = json.loads((options.output / "report.json").read_text())
    assert saved["registered"] == report.registered and saved["labeled"] == report.labeled
