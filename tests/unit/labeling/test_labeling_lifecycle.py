"""A batch's lifecycle never loses paid work: crash injection after every AWS write of publish and of the failure
path, stopping jobs through the backend seam, parking and resuming.

Each crash test first runs the step cleanly to count its AWS writes, then, for every k, runs it in a fresh registry
with a crash right after the k-th write, checks the invariants on what the crash left, runs the step again and checks
that the end state is the clean run's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from fieldlabel.intake import Backoff
from fieldlabel.labeling.failure import park_batch, settle_batch
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend
from fieldlabel.labeling.lifecycle import (
    NotResumableError,
    batch_id_of_execution,
    prepare_resume,
    request_resume,
    resume_execution_name,
)
from fieldlabel.labeling.publish import LATEST_KEY, PublishInputs, PublishRefusedError, mark_published, publish_dataset
from fieldlabel.labeling.registry_io import update_batch
from fieldlabel.labeling.release import release_failed_batch
from fieldlabel.registry.model import to_item

from tests.unit.crash import Crash, CrashAfter
from tests.unit.labeling.conftest import LABELS, NOW, World, new_world
from tests.unit.labeling.fakes import FakeLabelingJobs

BATCH = "b20261126t063000z-1a2b3c4d"
EARLIER = "b20261120t063000z-00000001"
JOB = f"treelabel-dev-{BATCH}"
REVIEW_JOB = f"{JOB}-review"
NOW_DT = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
CATEGORIES = json.dumps({"document-version": "2018-11-28", "labels": [{"label": x} for x in LABELS]}).encode()


def _label(world: World, pid: str, label: str, *, human: bool) -> None:
    world.ddb.update_item(
        TableName="t-photos", Key={"photo_id": {"S": pid}},
        UpdateExpression="SET #s = :l, #lab = :label, human_annotated = :h, label_confidence = :c, job_name = :j",
        ExpressionAttributeNames={"#s": "status", "#lab": "label"},
        ExpressionAttributeValues=to_item({":l": "LABELED", ":label": label, ":h": human, ":c": 0.9, ":j": JOB}),
    )


def _inputs(world: World) -> PublishInputs:
    world.s3.create_bucket(Bucket="assets")
    world.s3.put_object(Bucket="assets", Key="label-categories.json", Body=CATEGORIES)
    world.s3.put_object(Bucket="assets", Key="ui.html", Body=b"<crowd-form></crowd-form>")
    return PublishInputs(labels=LABELS, label_attribute="species",
                         label_categories_uri="s3://assets/label-categories.json", ui_template_uri="s3://assets/ui.html",
                         review_template_uri=None, configuration={"automated": True})


def _publish(world: World, inputs: PublishInputs, *, ddb: Any = None, s3: Any = None) -> dict[str, Any]:
    return publish_dataset(dynamodb=ddb or world.ddb, s3=s3 or world.s3, tables=world.tables, batch_id=BATCH,
                           inputs=inputs, labeling={"labeled": 3, "job_name": JOB, "kind": "human_only"},
                           review={"reviewed": 1, "corrections": 0}, now_iso=NOW)


def _json(world: World, key: str) -> Any:
    return json.loads(world.s3.get_object(Bucket="artifacts-bucket", Key=key)["Body"].read())


def _objects(world: World) -> dict[str, bytes]:
    listed = world.s3.list_objects_v2(Bucket="artifacts-bucket").get("Contents", [])
    return {o["Key"]: world.s3.get_object(Bucket="artifacts-bucket", Key=o["Key"])["Body"].read() for o in listed}


def _publish_world(world: World) -> tuple[list[str], PublishInputs]:
    """An earlier batch already published as version 1 (LATEST on it), and our batch with 3 labeled photos."""
    earlier = world.seed(EARLIER, 1, start=100)
    _label(world, earlier[0], "quercus-robur", human=True)
    inputs = _inputs(world)
    publish_dataset(dynamodb=world.ddb, s3=world.s3, tables=world.tables, batch_id=EARLIER, inputs=inputs,
                    labeling={}, review=None, now_iso=NOW)
    ids = world.seed(BATCH, 3)
    for i, pid in enumerate(ids):
        _label(world, pid, LABELS[i], human=i == 0)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "REVIEWING", "job_name": JOB})
    return ids, inputs


def _assert_latest_agrees_with_the_batches(world: World) -> None:
    """LATEST never names a version whose batch is not PUBLISHED as exactly that version."""
    latest = _json(world, LATEST_KEY)
    owner = world.batch(latest["batch_id"])
    assert (owner["status"], owner["dataset_version"], owner["dataset_version_number"]) == (
        "PUBLISHED", latest["version"], latest["version_number"])


# --------------------------------------------------------------------------------------------------------- publish


def test_publish_survives_a_crash_after_every_write() -> None:
    # The clean run: how many writes, and what it leaves
    with new_world() as world:
        ids, inputs = _publish_world(world)
        plan = CrashAfter(None)
        clean = _publish(world, inputs, ddb=plan.wrap(world.ddb), s3=plan.wrap(world.s3))
        clean_objects = _objects(world)
        writes = list(plan.writes)
    assert clean["version"] == f"v000002-{BATCH}" and clean["latest_moved"] is True
    # version number (counter and batch in one transaction), manifest, month counter, statistics, lineage,
    # PUBLISHED, LATEST
    assert writes == ["transact_write_items", "put_object", "update_item", "put_object", "put_object",
                      "update_item", "put_object"]

    for k in range(1, len(writes) + 1):
        with new_world() as world:
            ids, inputs = _publish_world(world)
            plan = CrashAfter(k)
            with pytest.raises(Crash):
                _publish(world, inputs, ddb=plan.wrap(world.ddb), s3=plan.wrap(world.s3))
            # Whatever the crash left: LATEST agrees with the batch states, no label was touched
            _assert_latest_agrees_with_the_batches(world)
            assert {world.photo(p)["status"] for p in ids} == {"LABELED"}
            batch = world.batch(BATCH)
            assert batch["status"] in ("REVIEWING", "PUBLISHED"), k
            if batch["status"] == "PUBLISHED":  # marked only once every file of the version is there
                prefix = f"datasets/{batch['dataset_version']}/"
                assert {prefix + n for n in ("dataset.manifest", "statistics.json", "lineage.json")} <= set(
                    _objects(world)), k

            # When the step runs again (the state machine's retry, or `fieldlabel resume` at publish)
            again = _publish(world, inputs)

            # Then it ends exactly where the clean run ended
            assert again["version"] == clean["version"], k
            assert _objects(world) == clean_objects, k
            assert (world.batch(BATCH)["status"], world.batch(BATCH)["dataset_version"]) == (
                "PUBLISHED", clean["version"])
            _assert_latest_agrees_with_the_batches(world)
            assert _json(world, LATEST_KEY)["version"] == clean["version"]
            assert {world.photo(p)["label"] for p in ids} == set(LABELS[:3])


def test_a_rerun_of_a_published_batch_only_moves_latest(world: World) -> None:
    # Given a batch marked PUBLISHED whose publish died before LATEST moved
    _ids, inputs = _publish_world(world)
    plan = CrashAfter(6)  # the PUBLISHED mark is the 6th write
    with pytest.raises(Crash):
        _publish(world, inputs, ddb=plan.wrap(world.ddb), s3=plan.wrap(world.s3))
    assert world.batch(BATCH)["status"] == "PUBLISHED"
    assert _json(world, LATEST_KEY)["batch_id"] == EARLIER
    # When it runs again, it writes LATEST and nothing else
    again = CrashAfter(None)
    out = _publish(world, inputs, ddb=again.wrap(world.ddb), s3=again.wrap(world.s3))
    assert again.writes == ["put_object"] and out["latest_moved"] is True
    assert _json(world, LATEST_KEY)["version"] == out["version"] == f"v000002-{BATCH}"
    assert out["photos"] == 3 and out["estimated_cost"]


def test_a_failed_or_differently_published_batch_is_never_marked_published(world: World) -> None:
    world.seed(BATCH, 1)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "FAILED"})
    with pytest.raises(PublishRefusedError, match="FAILED"):
        mark_published(world.ddb, "t-batches", BATCH, version="v000003-x", number=3, dataset_uri="s3://a/",
                       statistics={}, now_iso=NOW)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "PUBLISHED", "dataset_version": "v000002-x"})
    with pytest.raises(PublishRefusedError, match="v000002-x"):
        mark_published(world.ddb, "t-batches", BATCH, version="v000003-x", number=3, dataset_uri="s3://a/",
                       statistics={}, now_iso=NOW)


# ---------------------------------------------------------------------------------------------- stopping jobs


def test_ground_truth_stops_only_a_job_that_may_still_run(gt: GroundTruthBackend) -> None:
    # botocore's Stubber checks each request against the SageMaker model
    import boto3

    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    described = {"LabelingJobName": "j", "LabelingJobStatus": "InProgress", "LabelCounters": {},
                 "CreationTime": NOW_DT, "LastModifiedTime": NOW_DT, "JobReferenceCode": "r",
                 "LabelAttributeName": "species", "LabelingJobArn": "arn:aws:sagemaker:us-east-1:1:labeling-job/j",
                 "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://a/b"}}},
                 "OutputConfig": {"S3OutputPath": "s3://a/o"}, "RoleArn": "arn:aws:iam::111111111111:role/gt",
                 "HumanTaskConfig": {"WorkteamArn": "arn:aws:sagemaker:us-east-1:1:workteam/private-crowd/t",
                                     "UiConfig": {}, "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:1:function:p",
                                     "TaskTitle": "t", "TaskDescription": "d", "NumberOfHumanWorkersPerDataObject": 1,
                                     "TaskTimeLimitInSeconds": 30, "AnnotationConsolidationConfig": {
                                         "AnnotationConsolidationLambdaArn": "arn:aws:lambda:us-east-1:1:function:c"}}}
    stub.add_response("describe_labeling_job", described, {"LabelingJobName": "j"})
    stub.add_response("stop_labeling_job", {}, {"LabelingJobName": "j"})
    stub.add_response("describe_labeling_job", {**described, "LabelingJobStatus": "Completed"},
                      {"LabelingJobName": "j"})
    stub.add_client_error("describe_labeling_job", "ResourceNotFound", "no such job",
                          expected_params={"LabelingJobName": "gone"})
    stub.add_response("describe_labeling_job", described, {"LabelingJobName": "j"})
    stub.add_client_error("stop_labeling_job", "ValidationException", "job is not in progress",
                          expected_params={"LabelingJobName": "j"})
    with stub:
        assert gt.stop_job(sm, "j") == "stopped"
        assert gt.stop_job(sm, "j") == "Completed"  # finished: nothing to stop, and its labels exist
        assert gt.stop_job(sm, "gone") == "absent"
        assert gt.stop_job(sm, "j") == "finished"  # ended between the describe and the stop
    stub.assert_no_pending_responses()


# ----------------------------------------------------------------------------------------------- failure path


def _settle(world: World, jobs: FakeLabelingJobs, gt: GroundTruthBackend, *, ddb: Any = None,
            park_step: str | None = None, skip_finished: bool = False) -> Any:
    ddb = ddb or world.ddb

    def release(reason: str) -> tuple[int, int, int]:
        report = release_failed_batch(ddb, photos_table="t-photos", batches_table="t-batches", batch_id=BATCH,
                                      reason=reason, max_attempts=3, now=NOW_DT, backoff=Backoff(600, 3600))
        return report.released, report.parked, report.quarantined

    return settle_batch(dynamodb=ddb, sagemaker=jobs, backend=gt, batches_table="t-batches", batch_id=BATCH,
                        error={"Error": "States.TaskFailed", "Cause": json.dumps({"FailureReason": "No workers"})},
                        now_iso=NOW, release=release, park_step=park_step, skip_finished=skip_finished)


def _failing_world(world: World) -> tuple[list[str], list[str], str]:
    """A batch whose job still runs: 4 photos, 1 already out of attempts, 1 without a labeling copy."""
    fresh = world.seed(BATCH, 2)
    tired = world.seed(BATCH, 1, start=2, attempts=2)
    bare = world.seed(BATCH, 1, start=3, labeling_ref=False)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB})
    return fresh, tired, bare[0]


def test_the_failure_path_survives_a_crash_after_every_write(gt: GroundTruthBackend) -> None:
    with new_world() as world:
        _failing_world(world)
        jobs = FakeLabelingJobs({JOB: "InProgress"})
        plan = CrashAfter(None)
        clean = _settle(world, plan.wrap(jobs), gt, ddb=plan.wrap(world.ddb))
        writes = list(plan.writes)
    assert (clean.outcome, clean.released, clean.parked_photos, clean.quarantined) == ("failed", 2, 1, 1)
    assert writes == ["stop_labeling_job", "transact_write_items", "update_item"]

    for k in range(1, len(writes) + 1):
        with new_world() as world:
            fresh, tired, bare = _failing_world(world)
            jobs = FakeLabelingJobs({JOB: "InProgress"})
            plan = CrashAfter(k)
            wrapped_jobs = plan.wrap(jobs)
            with pytest.raises(Crash):
                _settle(world, wrapped_jobs, gt, ddb=plan.wrap(world.ddb))
            # No photo is half-released: each is still BATCHED in the batch, or fully released
            for pid in fresh + tired + [bare]:
                photo = world.photo(pid)
                assert (photo["status"] == "BATCHED") == ("batch_id" in photo), (k, photo)
            # When the path runs again (Lambda retry, or the EventBridge rule)
            out = _settle(world, jobs, gt)
            # Then: the job stopped once, each photo released exactly once (one attempt more), batch FAILED
            assert jobs.stopped == [JOB], k
            assert [(world.photo(p)["status"], world.photo(p)["attempts"]) for p in fresh] == [("BACKOFF", 1)] * 2
            assert world.photo(fresh[0])["due_at"] == "2026-11-26T06:40:00.000000Z"
            assert (world.photo(tired[0])["status"], world.photo(tired[0])["park_reason"]) == (
                "PARKED", "States.TaskFailed: No workers")
            assert (world.photo(bare)["status"], world.photo(bare)["quarantine_reason"]) == (
                "QUARANTINED", "no_labeling_copy")
            assert world.batch(BATCH)["status"] == "FAILED" and out.outcome == "failed"


def test_a_completed_job_is_never_thrown_away_by_the_failure_path(world: World, gt: GroundTruthBackend) -> None:
    # Given the job completed but the labels were never recorded (e.g. the look-up after it failed)
    ids = world.seed(BATCH, 3)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB})
    out = _settle(world, FakeLabelingJobs({JOB: "Completed"}), gt)
    # Then the batch is parked at record and no photo leaves it
    assert (out.outcome, out.step) == ("parked", "record")
    assert {world.photo(p)["status"] for p in ids} == {"BATCHED"}
    assert world.batch(BATCH)["status"] == "PARKED"


@pytest.mark.parametrize("step", ["record", "review", "publish"])
def test_a_failure_after_the_job_parks_the_batch_and_keeps_every_label(world: World, gt: GroundTruthBackend,
                                                                        step: str) -> None:
    ids = world.seed(BATCH, 3)
    for pid in ids[:2]:
        _label(world, pid, "quercus-robur", human=True)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "REVIEWING", "job_name": JOB,
                                                 "labeling_stats": {"labeled": 2}})
    plan = CrashAfter(None)
    out = _settle(world, FakeLabelingJobs({JOB: "Completed", REVIEW_JOB: "Completed"}), gt,
                  ddb=plan.wrap(world.ddb), park_step=step)
    assert (out.outcome, out.step) == ("parked", step)
    assert plan.writes == ["update_item"]  # one conditional write: a crash before it leaves nothing to repair
    assert [world.photo(p)["status"] for p in ids] == ["LABELED", "LABELED", "BATCHED"]
    batch = world.batch(BATCH)
    assert (batch["status"], batch["parked_step"], batch["park_reason"]) == (
        "PARKED", step, "States.TaskFailed: No workers")


def test_parking_never_hides_a_published_version_and_never_revives_a_failed_batch(world: World) -> None:
    world.seed(BATCH, 1)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "PUBLISHED", "dataset_version": "v000002-x"})
    after = park_batch(world.ddb, "t-batches", BATCH, step="publish", reason="LATEST not moved", now_iso=NOW)
    assert (after["status"], after["parked_step"]) == ("PUBLISHED", "publish")
    update_batch(world.ddb, "t-batches", BATCH, {"status": "FAILED", "parked_step": None})
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        park_batch(world.ddb, "t-batches", BATCH, step="review", reason="x", now_iso=NOW)


# ------------------------------------------------------------------------------------------------------- resume


class FakeStepFunctions:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:  # noqa: A002, N803
        self.started.append({"name": name, "input": json.loads(input)})
        return {"executionArn": f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"}


def test_resume_starts_a_new_execution_at_the_parked_step_and_takes_the_batch_back(world: World,
                                                                                  gt: GroundTruthBackend) -> None:
    # Given a batch parked at publish with its labels and review result kept
    ids = world.seed(BATCH, 2)
    for pid in ids:
        _label(world, pid, "quercus-robur", human=True)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "REVIEWING", "job_name": JOB, "kind": "human_only",
                                                 "labeling_stats": {"labeled": 2}})
    park_batch(world.ddb, "t-batches", BATCH, step="publish", reason="S3 down", now_iso=NOW,
               review={"reviewed": 1, "corrections": 0})
    sfn = FakeStepFunctions()
    arn = "arn:aws:states:us-east-1:111111111111:stateMachine:sm"

    # When the operator resumes it
    started = request_resume(world.ddb, sfn, batches_table="t-batches", state_machine_arn=arn, batch_id=BATCH,
                             now_iso=NOW)

    # Then a new execution named for the resumption starts at publish
    assert started["execution_name"] == resume_execution_name(BATCH, 1) == f"batch-{BATCH}-resume-1"
    (execution,) = sfn.started
    assert execution["input"] == {"batch_id": BATCH, "photo_count": 2, "kind": "human_only", "attempt": 2,
                                  "resume_from": "publish", "resume": 1}
    assert batch_id_of_execution(execution["name"]) == BATCH
    # and its first step takes the batch back and rebuilds what publish needs
    state = prepare_resume(dynamodb=world.ddb, backend=gt, batches_table="t-batches", state=execution["input"],
                           poll_seconds=0, review_enabled=True, now_iso=NOW)
    assert state["labeling"] == {"labeled": 2} and state["review"] == {"reviewed": 1, "corrections": 0}
    assert state["prepared"]["job_name"] == JOB and state["prepared"]["exists"] is True
    batch = world.batch(BATCH)
    assert batch["status"] == "LABELING" and "parked_step" not in batch
    # and a second request, or a stale execution, is refused: the batch is no longer parked
    with pytest.raises(NotResumableError, match="not parked"):
        request_resume(world.ddb, sfn, batches_table="t-batches", state_machine_arn=arn, batch_id=BATCH, now_iso=NOW)
    with pytest.raises(NotResumableError):
        prepare_resume(dynamodb=world.ddb, backend=gt, batches_table="t-batches", state=execution["input"],
                       poll_seconds=0, review_enabled=True, now_iso=NOW)
    assert {world.photo(p)["status"] for p in ids} == {"LABELED"}


def test_only_the_latest_resumption_may_take_the_batch(world: World, gt: GroundTruthBackend) -> None:
    world.seed(BATCH, 1)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB,
                                                 "labeling_stats": {"labeled": 1}})
    park_batch(world.ddb, "t-batches", BATCH, step="review", reason="x", now_iso=NOW)
    sfn = FakeStepFunctions()
    arn = "arn:aws:states:us-east-1:111111111111:stateMachine:sm"
    request_resume(world.ddb, sfn, batches_table="t-batches", state_machine_arn=arn, batch_id=BATCH, now_iso=NOW)
    request_resume(world.ddb, sfn, batches_table="t-batches", state_machine_arn=arn, batch_id=BATCH, now_iso=NOW)
    first, second = (e["input"] for e in sfn.started)
    assert (first["resume"], second["resume"]) == (1, 2)
    with pytest.raises(NotResumableError, match="resumption 1"):
        prepare_resume(dynamodb=world.ddb, backend=gt, batches_table="t-batches", state=first, poll_seconds=0,
                       review_enabled=True, now_iso=NOW)
    state = prepare_resume(dynamodb=world.ddb, backend=gt, batches_table="t-batches", state=second, poll_seconds=0,
                           review_enabled=False, now_iso=NOW)
    assert state["resume_from"] == "review" and "review" not in state and state["labeling"] == {"labeled": 1}


def test_a_batch_that_is_not_parked_cannot_be_resumed(world: World) -> None:
    world.seed(BATCH, 1)
    with pytest.raises(NotResumableError, match="STARTED, not parked"):
        request_resume(world.ddb, FakeStepFunctions(), batches_table="t-batches", state_machine_arn="arn",
                       batch_id=BATCH, now_iso=NOW)
    with pytest.raises(NotResumableError, match="does not exist"):
        request_resume(world.ddb, FakeStepFunctions(), batches_table="t-batches", state_machine_arn="arn",
                       batch_id="b20261126t063000z-ffffffff", now_iso=NOW)
    with pytest.raises(ValueError, match="names no batch"):
        batch_id_of_execution("something-else")


# ------------------------------------------------------------------------------------------ recording the labels


def _record_world(world: World) -> tuple[list[str], str, str]:
    """A completed job: 3 photos labeled in its output, 1 it failed, 1 left out of the manifest (no copy)."""
    from tests.unit.labeling.test_labeling_prepare_process import _line, _output

    ids = world.seed(BATCH, 4)
    bare = world.seed(BATCH, 1, start=4, labeling_ref=False)[0]
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB, "labeling_photo_count": 4,
                                                 "labeling_skipped": 1})
    uri = _output(world, [_line(ids[0], "fagus-sylvatica"), _line(ids[1], "betula-pendula", human="yes"),
                          _line(ids[2], "quercus-robur"), _line(ids[3], None, failure="ClientError: expired")])
    return ids, bare, uri


def _record(world: World, gt: GroundTruthBackend, uri: str, *, ddb: Any = None) -> dict[str, Any]:
    from fieldlabel.labeling.process import process_output
    from fieldlabel.labeling.release import release_unlabeled

    ddb = ddb or world.ddb

    def release(reason: str) -> tuple[int, int, int]:
        r = release_unlabeled(ddb, photos_table="t-photos", batches_table="t-batches", batch_id=BATCH, reason=reason,
                              max_attempts=3, now=NOW_DT, batch_status="LABELING", now_iso=NOW,
                              backoff=Backoff(600, 3600))
        return r.released, r.parked, r.quarantined

    job = {"LabelingJobName": JOB, "LabelingJobArn": "arn:aws:sagemaker:::x", "LabelingJobStatus": "Completed",
           "LabelCounters": {}, "LabelingJobOutput": {"OutputDatasetS3Uri": uri}}
    return process_output(dynamodb=ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                          kind="human_only", job=job, now_iso=NOW, release_unlabeled=release, expected_count=4,
                          left_out=1, taxonomy_hash="sha256:t", concurrency=1)


def test_recording_survives_a_crash_after_every_write_and_never_overwrites_a_correction(
        gt: GroundTruthBackend) -> None:
    with new_world() as world:
        _ids, _bare, uri = _record_world(world)
        plan = CrashAfter(None)
        clean = _record(world, gt, uri, ddb=plan.wrap(world.ddb))
        writes = list(plan.writes)
    # 3 labels, the release of the failed and the left-out photo, the batch's unlabeled reason, its statistics
    assert writes == ["update_item"] * 3 + ["transact_write_items", "update_item", "update_item"]
    assert (clean["labeled"], clean["released"], clean["quarantined"]) == (3, 1, 1)

    for k in range(1, len(writes) + 1):
        with new_world() as world:
            ids, bare, uri = _record_world(world)
            plan = CrashAfter(k)
            with pytest.raises(Crash):
                _record(world, gt, uri, ddb=plan.wrap(world.ddb))
            # The first label is the first write, so it is in; an expert corrects it before the step runs again
            assert world.photo(ids[0])["status"] == "LABELED", k
            world.ddb.update_item(TableName="t-photos", Key={"photo_id": {"S": ids[0]}},
                                  UpdateExpression="SET #l = :c, label_source = :s",
                                  ExpressionAttributeNames={"#l": "label"},
                                  ExpressionAttributeValues=to_item({":c": "quercus-robur", ":s": "expert_review"}))
            again = _record(world, gt, uri)
            assert (again["labeled"], again["not_in_batch"]) == (3, 0), k
            assert (world.photo(ids[0])["label"], world.photo(ids[0])["label_source"]) == (
                "quercus-robur", "expert_review"), k
            assert [world.photo(p)["status"] for p in ids] == ["LABELED"] * 3 + ["BACKOFF"], k
            assert world.photo(ids[3])["attempts"] == 1, k  # released once, not twice
            assert (world.photo(bare)["status"], world.photo(bare)["quarantine_reason"]) == (
                "QUARANTINED", "no_labeling_copy"), k
            assert world.batch(BATCH)["labeling_stats"]["labeled"] == 3, k


def test_photos_left_out_of_the_manifest_are_quarantined_even_when_every_other_photo_got_a_label(
        world: World, gt: GroundTruthBackend) -> None:
    from tests.unit.labeling.test_labeling_prepare_process import _line, _output

    ids = world.seed(BATCH, 2)
    bare = world.seed(BATCH, 1, start=2, labeling_ref=False)[0]
    uri = _output(world, [_line(i, "betula-pendula") for i in ids])
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB})
    from fieldlabel.labeling.process import process_output
    from fieldlabel.labeling.release import release_unlabeled

    def release(reason: str) -> tuple[int, int, int]:
        r = release_unlabeled(world.ddb, photos_table="t-photos", batches_table="t-batches", batch_id=BATCH,
                              reason=reason, max_attempts=3, now=NOW_DT, batch_status="LABELING", now_iso=NOW)
        return r.released, r.parked, r.quarantined

    job = {"LabelingJobName": JOB, "LabelingJobStatus": "Completed", "LabelCounters": {},
           "LabelingJobOutput": {"OutputDatasetS3Uri": uri}}
    stats = process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                           kind="human_only", job=job, now_iso=NOW, release_unlabeled=release, expected_count=2,
                           left_out=1)
    assert stats["quarantined"] == 1 and stats["released"] == 0
    assert (world.photo(bare)["status"], world.photo(bare)["quarantine_reason"]) == (
        "QUARANTINED", "no_labeling_copy")
    assert "batch_id" not in world.photo(bare) and world.photo(bare)["last_batch_id"] == BATCH


def test_a_resume_request_that_dies_after_taking_its_number_is_simply_skipped(world: World,
                                                                              gt: GroundTruthBackend) -> None:
    # Given a parked batch and an operator whose first `fieldlabel resume` dies after its one registry write
    world.seed(BATCH, 1)
    update_batch(world.ddb, "t-batches", BATCH, {"status": "LABELING", "job_name": JOB,
                                                 "labeling_stats": {"labeled": 1}})
    park_batch(world.ddb, "t-batches", BATCH, step="publish", reason="x", now_iso=NOW)
    sfn = FakeStepFunctions()
    arn = "arn:aws:states:us-east-1:111111111111:stateMachine:sm"
    plan = CrashAfter(1)
    with pytest.raises(Crash):
        request_resume(plan.wrap(world.ddb), plan.wrap(sfn), batches_table="t-batches", state_machine_arn=arn,
                       batch_id=BATCH, now_iso=NOW)
    assert sfn.started == [] and world.batch(BATCH)["status"] == "PARKED"
    # When it is run again, the next number starts, and only that execution may take the batch
    started = request_resume(world.ddb, sfn, batches_table="t-batches", state_machine_arn=arn, batch_id=BATCH,
                             now_iso=NOW)
    assert started["execution_name"] == f"batch-{BATCH}-resume-2"
    state = prepare_resume(dynamodb=world.ddb, backend=gt, batches_table="t-batches", state=sfn.started[0]["input"],
                           poll_seconds=0, review_enabled=True, now_iso=NOW)
    assert state["resume"] == 2 and world.batch(BATCH)["status"] == "LABELING"


def test_a_failed_engine_batch_gives_back_only_the_engines_own_machine_labels(world: World) -> None:
    # Given an engine batch (machine labels written at prepare) whose taxonomists' job failed, and one photo a job
    # labeled (it cannot happen in a failed batch today; if it ever does, that paid label must stay)
    from fieldlabel.labeling.failure import unlabel_engine_labels

    ids = world.seed(BATCH, 3)
    for pid in ids[:2]:
        world.ddb.update_item(TableName="t-photos", Key={"photo_id": {"S": pid}},
                              UpdateExpression="SET #s = :l, #lab = :x, label_source = :m, machine_model = :v",
                              ExpressionAttributeNames={"#s": "status", "#lab": "label"},
                              ExpressionAttributeValues=to_item({":l": "LABELED", ":x": "quercus-robur",
                                                                 ":m": "machine", ":v": "v000001-b0"}))
    _label(world, ids[2], "fagus-sylvatica", human=True)
    assert unlabel_engine_labels(world.ddb, photos_table="t-photos", batch_id=BATCH, now_iso=NOW) == 2
    assert [world.photo(p)["status"] for p in ids] == ["BATCHED", "BATCHED", "LABELED"]
    assert not {"label", "machine_model", "label_source"} & set(world.photo(ids[0]))
    assert world.photo(ids[2])["label"] == "fagus-sylvatica"
    assert unlabel_engine_labels(world.ddb, photos_table="t-photos", batch_id=BATCH, now_iso=NOW) == 0
