"""The synthesized labeling state machine, run end to end in moto with the real handlers and a fake Ground Truth.

Each scenario seeds a batch as the dispatcher leaves it (photos BATCHED, batch STARTED), starts the execution with
the contract's input (docs/contracts.md) and checks the registry, S3 and the notifications afterwards. What the
fake Ground Truth does with each photo is decided here, by photo id, so every expectation comes from the test's own
plan, not from the code under test.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend, GroundTruthSettings
from fieldlabel.labeling.lifecycle import request_resume
from fieldlabel.labeling.modelstore import taxonomy_hash
from fieldlabel.labeling.registry_io import model_key

from localrun.harness import PhotoOutcome, WorkflowHarness, config_from_context

pytestmark = pytest.mark.slow

BATCH_A = "b20261126t063000z-1a2b3c4d"
BATCH_B = "b20261127t063000z-5e6f7a8b"
AL_BATCH = 1250  # Ground Truth's automated-labeling minimum


def _labels() -> list[str]:
    return list(config_from_context().taxonomy.labels)


def _model_key() -> str:
    """The control item of the model trained on the configured label set."""
    return model_key(_taxonomy_hash())


def _taxonomy_hash() -> str:
    taxonomy = config_from_context().taxonomy
    return taxonomy_hash(taxonomy.labels, taxonomy.unknown_label)


def _label_of(photo_id: str) -> str:
    labels = _labels()
    return labels[int(hashlib.sha256(photo_id.encode()).hexdigest(), 16) % len(labels)]


class Plan:
    """Per photo id: failed / human / machine, with a label and confidence derived from the id."""

    def __init__(self, ids: list[str], *, failed: int, human_every: int) -> None:
        ordered = sorted(ids)
        self.failed = set(ordered[:failed])
        self.human = {pid for i, pid in enumerate(ordered[failed:]) if i % human_every == 0}
        self.machine = set(ordered) - self.failed - self.human

    def confidence(self, pid: str) -> float:
        return 0.95 if pid in self.machine else 0.81

    def __call__(self, i: int, line: dict[str, Any]) -> PhotoOutcome:
        pid = line["photo-id"]
        if pid in self.failed:
            return PhotoOutcome("failed", reason="ClientError: annotation task expired")
        kind = "human" if pid in self.human else "machine"
        return PhotoOutcome(kind, _label_of(pid), self.confidence(pid))


def _dataset_lines(h: WorkflowHarness, version: str) -> list[dict[str, Any]]:
    return h.s3_json_lines(f"s3://{h.artifacts_bucket}/datasets/{version}/dataset.manifest")


def test_automated_batches_are_labeled_reviewed_published_and_chained(harness: WorkflowHarness) -> None:
    # (One test for both batches: each automated batch needs Ground Truth's 1,250 photos, which moto makes slow.)
    # Given a batch big enough for automated labeling, 7 photos Ground Truth cannot label, and reviewers who
    # correct the first two audited machine labels
    h = harness
    ids = h.seed_batch(BATCH_A, AL_BATCH)
    plan = Plan(ids, failed=7, human_every=4)
    h.ground_truth.plan = plan
    corrected: dict[str, str] = {}

    def review(i: int, line: dict[str, Any]) -> dict[str, Any]:
        under = line["label-under-review"]["label"]
        label = under
        if line["review-reason"] == "audit" and len(corrected) < 2:
            labels = _labels()
            label = labels[(labels.index(under) + 1) % len(labels)]
            corrected[line["photo-id"]] = label
        return {"label": label, "confidence": 0.98, "agreement": 1.0, "needs_adjudication": False, "answers": 2,
                "comments": []}

    h.ground_truth.review_plan = review

    # When the workflow runs
    run = h.run_batch(BATCH_A, photo_count=AL_BATCH, kind="automated")

    # Then it went through automated labeling, review and publishing
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    for state in ("Run the automated labeling job", "Record the labels", "Run the expert review job",
                  "Apply the expert review", "Publish the dataset version", "Tell the team the dataset is published"):
        assert state in run.states
    labeling_request, review_request = h.ground_truth.requests
    assert "InitialActiveLearningModelArn" not in labeling_request["LabelingJobAlgorithmsConfig"]
    assert review_request["LabelAttributeName"] == "species-review"
    assert review_request["HumanTaskConfig"]["WorkteamArn"].endswith("/reviewersteam")

    # and the registry holds every label the plan gave, with corrections applied, failures back in the pool
    photos = h.photos(BATCH_A)
    assert len(photos) == AL_BATCH
    for pid, item in photos.items():
        if pid in plan.failed:
            # released after the job: backing off before they are due again
            assert (item["status"], item["attempts"], item.get("batch_id"), item["last_batch_id"]) == (
                "BACKOFF", 1, None, BATCH_A)
            assert item["due_at"] > item["updated_at"]
            continue
        assert item["status"] == "LABELED"
        assert item["human_annotated"] is (pid in plan.human)
        assert item["label_confidence"] == pytest.approx(plan.confidence(pid))
        assert item["job_name"] == f"treelabel-dev-{BATCH_A}"
        assert item["label"] == corrected.get(pid, _label_of(pid))
    assert corrected and all(photos[pid]["review"]["decision"] == "corrected" for pid in corrected)

    # and the model the job ended with is kept for the next job
    job = h.ground_truth.jobs[f"treelabel-dev-{BATCH_A}"]
    assert h.batch(_model_key())["model_arn"] == job.final_model_arn
    assert h.batch(_model_key())["taxonomy_hash"] == h.batch(BATCH_A)["taxonomy_hash"] == _taxonomy_hash()

    # and the dataset version holds exactly the labeled photos, usable as an augmented manifest
    batch = h.batch(BATCH_A)
    version = f"v000001-{BATCH_A}"
    assert (batch["status"], batch["dataset_version"]) == ("PUBLISHED", version)
    lines = _dataset_lines(h, version)
    labels = _labels()
    assert {x["photo-id"] for x in lines} == set(ids) - plan.failed
    for x in lines:
        expected = corrected.get(x["photo-id"], _label_of(x["photo-id"]))
        assert x["species"] == labels.index(expected)
        assert x["species-metadata"]["class-name"] == expected
        assert x["source-ref"] == photos[x["photo-id"]]["labeling_ref"]
        assert x["original-ref"].startswith(f"s3://{h.intake_bucket}/uploads/")
    stats = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/{version}/statistics.json")
    assert stats["labeling"]["failed"] == len(plan.failed)
    assert stats["labeling"]["machine_labeled"] == len(plan.machine)
    assert stats["review"]["corrections"] == len(corrected)
    assert stats["review"]["machine_accuracy"]["overall"]["accuracy"] < 1.0
    lineage = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/{version}/lineage.json")
    assert (lineage["job_arn"], lineage["model_arn"]) == (job.arn, job.final_model_arn)
    categories = h.s3_json(lineage["label_categories"]["uri"])
    assert [c["label"] for c in categories["labels"]] == labels
    latest = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/LATEST")
    assert latest["version"] == version

    # and the team hears about it
    (note,) = h.notifications()
    assert note["Subject"] == f"[treelabel-dev] batch {BATCH_A} published"
    assert f"{len(corrected)} corrected" in note["Message"]

    # When a second automated batch runs
    second = h.seed_batch(BATCH_B, AL_BATCH, start=AL_BATCH)
    h.ground_truth.plan = Plan(second, failed=0, human_every=3)
    run = h.run_batch(BATCH_B, photo_count=AL_BATCH)

    # Then its job starts from the first job's model, and the newer model and version take over
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    second_job = h.ground_truth.jobs[f"treelabel-dev-{BATCH_B}"]
    assert second_job.request["LabelingJobAlgorithmsConfig"]["InitialActiveLearningModelArn"] == job.final_model_arn
    assert h.batch(_model_key())["model_arn"] == second_job.final_model_arn != job.final_model_arn
    assert h.batch(BATCH_B)["dataset_version"] == f"v000002-{BATCH_B}"
    assert h.s3_json(f"s3://{h.artifacts_bucket}/datasets/LATEST")["version"] == f"v000002-{BATCH_B}"
    assert len(_dataset_lines(h, f"v000002-{BATCH_B}")) == AL_BATCH
    assert len(_dataset_lines(h, version)) == len(lines)  # the first version is untouched


def test_small_batch_is_labeled_by_humans_only(harness: WorkflowHarness) -> None:
    # Given a batch below the automated-labeling minimum
    h = harness
    ids = h.seed_batch(BATCH_A, 40, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=1)

    # When the workflow runs
    run = h.run_batch(BATCH_A, photo_count=40, kind="human_only")

    # Then the job had no automated labeling, everything is human-labeled and no model is recorded
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "Run the human labeling job" in run.states
    (request, *_) = h.ground_truth.requests
    assert "LabelingJobAlgorithmsConfig" not in request
    photos = h.photos(BATCH_A)
    assert {p["status"] for p in photos.values()} == {"LABELED"}
    assert all(p["human_annotated"] for p in photos.values())
    assert h.batch(_model_key()) == {}
    assert h.batch(BATCH_A)["kind"] == "human_only"


def test_failed_job_releases_the_batch_and_parks_photos_out_of_attempts(harness: WorkflowHarness) -> None:
    # Given a batch whose photos failed before (one attempt left for the first 5) and a job that will fail
    h = harness
    tired = h.seed_batch(BATCH_A, 5, kind="human_only", attempts=2)
    fresh = h.seed_batch(BATCH_A, 15, kind="human_only", start=5)
    h.ground_truth.fail_jobs[f"treelabel-dev-{BATCH_A}"] = "Workforce unavailable: no workers in the team"

    # When the workflow runs
    run = h.run_batch(BATCH_A, photo_count=20, kind="human_only")

    # Then the execution fails after looking at the job and releasing the batch
    assert (run.status, run.error) == ("FAILED", "BatchFailed")
    assert run.states[-3:] == ["Release the batch's photos", "Tell the team the batch failed", "The batch failed"]
    assert "Look up the labeling job" in run.states
    photos = h.photos(BATCH_A)
    assert {pid: p["status"] for pid, p in photos.items() if pid in tired} == dict.fromkeys(tired, "PARKED")
    assert {pid: (p["status"], p["attempts"]) for pid, p in photos.items() if pid in fresh} == dict.fromkeys(
        fresh, ("BACKOFF", 1))
    batch = h.batch(BATCH_A)
    assert batch["status"] == "FAILED"
    assert "Workforce unavailable" in batch["failure_reason"]
    (note,) = h.notifications()
    assert note["Subject"] == f"[treelabel-dev] batch {BATCH_A} FAILED"
    assert "parked after too many attempts: 5" in note["Message"]
    assert h.batch("#dataset-version") == {}


def _run_stopped_job(h: WorkflowHarness, photos: int, stop_after: int) -> tuple[list[str], Any]:
    """A human-only batch whose job is stopped (by an operator) after its first ``stop_after`` output lines."""
    ids = h.seed_batch(BATCH_A, photos, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=1)
    h.ground_truth.stop_after[f"treelabel-dev-{BATCH_A}"] = stop_after
    return ids, h.run_batch(BATCH_A, photo_count=photos, kind="human_only")


STOPPED_PATH = ("Look up the labeling job", "Has the labeling job finished?", "Did the stopped job label any photo?")


def test_a_stopped_job_keeps_the_labels_it_finished_and_releases_the_rest(harness: WorkflowHarness) -> None:
    # Given a batch of 20 whose job is stopped after its first 12 photos were labeled, when the workflow runs
    h = harness
    _, run = _run_stopped_job(h, 20, 12)

    # Then the 12 paid labels are recorded and published, and the 8 photos the job never reached go back to the pool
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    at = run.states.index(STOPPED_PATH[0])
    assert tuple(run.states[at:at + 4]) == (*STOPPED_PATH, "Record the labels")
    photos = h.photos(BATCH_A)
    labeled = {pid for pid, p in photos.items() if p["status"] == "LABELED"}
    assert len(labeled) == 12 and all(photos[pid]["label"] == _label_of(pid) for pid in labeled)
    assert {(p["status"], p["attempts"]) for pid, p in photos.items() if pid not in labeled} == {("BACKOFF", 1)}
    batch = h.batch(BATCH_A)
    assert batch["status"] == "PUBLISHED"
    stats = batch["labeling_stats"]
    assert stats["stopped_early"] is True and (stats["labeled"], stats["released"]) == (12, 8)
    version = batch["dataset_version"]
    assert {line["photo-id"] for line in _dataset_lines(h, version)} == labeled


def test_a_job_stopped_before_labeling_anything_releases_the_batch(harness: WorkflowHarness) -> None:
    h = harness
    _, run = _run_stopped_job(h, 6, 0)
    assert (run.status, run.error) == ("FAILED", "BatchFailed")
    assert set(STOPPED_PATH) <= set(run.states) and "Record the labels" not in run.states
    assert {p["status"] for p in h.photos(BATCH_A).values()} == {"BACKOFF"}


def _resume(h: WorkflowHarness, batch_id: str) -> Any:
    """What `fieldlabel resume BATCH_ID` does, then wait for the new execution."""
    import boto3

    started = request_resume(boto3.client("dynamodb"), boto3.client("stepfunctions"), batches_table=h.batches_table,
                             state_machine_arn=h.state_machine_arn, batch_id=batch_id,
                             now_iso="2026-11-26T08:00:00.000000Z")
    return h.wait_for(started["execution_arn"])


def test_recording_that_keeps_failing_parks_the_batch_and_resume_finishes_it(harness: WorkflowHarness) -> None:
    # Given a job that completes, and a process-output step that records 20 labels and then crashes, every time
    h = harness
    ids = h.seed_batch(BATCH_A, 60, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=1)
    calls: list[int] = []

    def crash_after_20(event: dict[str, Any]) -> None:
        import boto3
        from fieldlabel.labeling.process import label_update

        calls.append(1)
        ddb = boto3.client("dynamodb")
        for pid in sorted(ids)[:20]:
            photo = GroundTruthBackend(_settings_stub()).parse_output_line({
                "photo-id": pid, "species": "0",
                "species-metadata": {"class-name": _label_of(pid), "confidence": 0.9, "human-annotated": "yes",
                                     "job-name": "labeling-job/x"}})
            try:
                ddb.update_item(**label_update(photo, batch_id=BATCH_A, photos_table=h.photos_table, now_iso="t"))
            except ddb.exceptions.ConditionalCheckFailedException:
                pass  # recorded by an earlier attempt
        raise RuntimeError("simulated crash while recording labels")

    h.faults["process_output"] = crash_after_20

    # When the workflow runs
    run = h.run_batch(BATCH_A, photo_count=60, kind="human_only")

    # Then only the failed step was retried (1 + 2 retries), and the batch is parked: the paid labels stay, nothing
    # went back to the pool, the labeling job ran once
    assert (run.status, run.error) == ("FAILED", "BatchParked")
    assert len(calls) == 3 and run.states.count("Prepare the labeling job") == 1
    assert run.states[-4:] == ["Park after recording the labels failed", "Park the batch for an operator",
                               "Tell the team the batch is parked", "The batch is parked"]
    photos = h.photos(BATCH_A)
    assert sorted(p["status"] for p in photos.values()) == ["BATCHED"] * 40 + ["LABELED"] * 20
    assert all(p["attempts"] == 0 and p["batch_id"] == BATCH_A for p in photos.values())
    batch = h.batch(BATCH_A)
    assert (batch["status"], batch["parked_step"]) == ("PARKED", "record")
    assert "simulated crash" in batch["park_reason"]
    (note,) = h.notifications()
    assert note["Subject"] == f"[treelabel-dev] batch {BATCH_A} PARKED at record"
    assert f"fieldlabel resume {BATCH_A}" in note["Message"]

    # When the cause is fixed and the operator resumes the batch
    del h.faults["process_output"]
    resumed = _resume(h, BATCH_A)

    # Then the new execution adopts the completed job (no second job), records every label and publishes
    assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
    assert resumed.states[:3] == ["Is this a resumption?", "Prepare the resumption", "Where does the batch resume?"]
    assert "Prepare the labeling job" not in resumed.states
    assert [r["LabelAttributeName"] for r in h.ground_truth.requests].count("species") == 1
    photos = h.photos(BATCH_A)
    assert {p["status"] for p in photos.values()} == {"LABELED"}
    assert {pid: p["label"] for pid, p in photos.items()} == {pid: _label_of(pid) for pid in ids}
    batch = h.batch(BATCH_A)
    assert (batch["status"], batch["dataset_version"]) == ("PUBLISHED", f"v000001-{BATCH_A}")
    assert len(_dataset_lines(h, f"v000001-{BATCH_A}")) == 60
    assert h.s3_json(f"s3://{h.artifacts_bucket}/datasets/LATEST")["batch_id"] == BATCH_A


def test_a_failed_review_step_parks_and_resume_adopts_the_finished_review_job(harness: WorkflowHarness) -> None:
    # Given a batch whose human labels are unsure (so they go to review), whose review job completes, but whose
    # apply step keeps failing
    h = harness
    h.seed_batch(BATCH_A, 40, kind="human_only")
    h.ground_truth.plan = lambda i, line: PhotoOutcome("human", _label_of(line["photo-id"]), 0.5)

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("reviewers table unavailable")

    h.faults["apply_review"] = broken
    run = h.run_batch(BATCH_A, photo_count=40, kind="human_only")

    # Then the batch is parked at review with every label kept, and nothing is published
    assert (run.status, run.error) == ("FAILED", "BatchParked"), (run.error, run.cause)
    assert "Run the expert review job" in run.states and "Publish the dataset version" not in run.states
    assert {p["status"] for p in h.photos(BATCH_A).values()} == {"LABELED"}
    assert h.batch(BATCH_A)["parked_step"] == "review" and h.batch("#dataset-version") == {}

    # When resumed after the fix
    del h.faults["apply_review"]
    resumed = _resume(h, BATCH_A)

    # Then the existing review job is adopted (its name is taken: no second review job), applied, published
    assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause)
    assert "Look up the review job" in resumed.states and "Apply the expert review" in resumed.states
    review_jobs = [r for r in h.ground_truth.requests if r["LabelAttributeName"] == "species-review"]
    assert len(review_jobs) == 1
    assert h.batch(BATCH_A)["status"] == "PUBLISHED"
    stats = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/v000001-{BATCH_A}/statistics.json")
    assert stats["review"]["reviewed"] > 0 and stats["photos"] == 40


def test_a_transient_publish_failure_retries_only_that_step(harness: WorkflowHarness) -> None:
    # Given a publish step that fails once
    h = harness
    ids = h.seed_batch(BATCH_A, 20, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=1)
    failures: list[int] = []

    def once(event: dict[str, Any]) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("S3 briefly unavailable")

    h.faults["publish_dataset"] = once
    run = h.run_batch(BATCH_A, photo_count=20, kind="human_only")

    # Then the execution publishes; recording ran once, publishing twice
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    invoked = [name for name, _ in h.invocations]
    handlers = {name: fn["handler"].split(".")[0] for name, fn in h.functions.items()}
    assert [handlers[n] for n in invoked].count("process_output") == 1
    assert [handlers[n] for n in invoked].count("publish_dataset") == 2
    assert h.batch(BATCH_A)["status"] == "PUBLISHED"


def test_an_existing_job_is_adopted_and_waited_for(harness: WorkflowHarness) -> None:
    # Given the batch's job already exists (an earlier execution created it) and is still running
    h = harness
    ids = h.seed_batch(BATCH_A, 30, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=1)
    import boto3
    from fieldlabel.labeling.prepare import INPUT_MANIFEST_KEY

    manifest_key = INPUT_MANIFEST_KEY.format(batch_id=BATCH_A)
    lines = "".join(json.dumps({"source-ref": p["labeling_ref"], "photo-id": pid}) + "\n"
                    for pid, p in sorted(h.photos(BATCH_A).items()))
    boto3.client("s3").put_object(Bucket=h.artifacts_bucket, Key=manifest_key, Body=lines.encode())
    request = _settings_backend(h).build_job_request(
        batch_id=BATCH_A, kind="human_only", manifest_uri=f"s3://{h.artifacts_bucket}/{manifest_key}")
    h.ground_truth.create(request)
    h.ground_truth.polls_before_done = 3

    # When the workflow runs
    run = h.run_batch(BATCH_A, photo_count=30, kind="human_only")

    # Then no second job was created; the workflow polled the existing one and published its labels
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert len(h.ground_truth.requests) == 1 + ("Run the expert review job" in run.states)
    assert run.states.count("Wait for the labeling job") >= 2
    assert not any(s.startswith("Run the") and "review" not in s for s in run.states)
    assert {p["status"] for p in h.photos(BATCH_A).values()} == {"LABELED"}


def _settings_stub() -> GroundTruthSettings:
    return GroundTruthSettings(project="treelabel-dev", region="us-east-1", role_arn="arn:aws:iam::1:role/x",
                               workteam_arn="w", label_categories_uri="s3://b/k", ui_template_uri="s3://b/t",
                               output_path="s3://b/o/", kms_key_arn="k")


def _settings_backend(h: WorkflowHarness) -> GroundTruthBackend:
    from fieldlabel.labeling.settings import WorkflowEnv

    env = next(fn["env"] for fn in h.functions.values() if fn["handler"].startswith("prepare_job"))
    return WorkflowEnv.from_env({**env, "AWS_REGION": "us-east-1"}).backend()


def test_review_disabled_publishes_without_a_review_job(harness: WorkflowHarness) -> None:
    # Given review switched off in the job settings the functions get
    h = harness
    env = next(fn["env"] for fn in h.functions.values() if fn["handler"].startswith("prepare_job"))
    h.env_overrides["JOB_SETTINGS_JSON"] = json.dumps({**json.loads(env["JOB_SETTINGS_JSON"]),
                                                       "review_enabled": False})
    ids = h.seed_batch(BATCH_A, 20, kind="human_only")
    h.ground_truth.plan = Plan(ids, failed=0, human_every=2)

    run = h.run_batch(BATCH_A, photo_count=20, kind="human_only")

    # Then no review job ran and the statistics say why
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert "Note that review is disabled" in run.states
    assert [r["LabelAttributeName"] for r in h.ground_truth.requests] == ["species"]
    stats = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/v000001-{BATCH_A}/statistics.json")
    assert stats["review"] == {"skipped": "review disabled"}
