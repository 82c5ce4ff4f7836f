"""The Label Studio stage bookkeeping (fieldlabel.labeling.ls_workflow) against DynamoDB in moto.

What Label Studio does is played by :class:`FakeStage` (the real backend runs against a real server in
tests/unit/labelstudio and tests/e2e); Step Functions' ``SendTaskSuccess`` is a botocore Stubber, which checks every
request against the service model. The races are made deterministic by running the competing call inside the
first one (at the exact point where it would interleave), never by threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fieldlabel.labeling.ls_workflow import (
    FINISHED,
    OPEN,
    STOPPED,
    LabelStudioJobs,
    Progress,
    StageAlreadyFinishedError,
    StageNotOpenError,
    check_stage,
    look_up_stage,
    pending_stages,
    poll,
    stop_stage,
    submit_stage,
)

from tests.unit.labeling.conftest import NOW, World

BATCH = "b20261126t063000z-1a2b3c4d"


@dataclass
class FakeStage:
    """One Label Studio project per stage; a batch is complete when every submitted photo is answered."""

    tasks: dict[str, set[str]] = field(default_factory=dict)  # batch -> photos submitted
    answered: dict[str, set[str]] = field(default_factory=dict)
    finishes: int = 0
    stops: list[str] = field(default_factory=list)
    on_finish: Callable[[], None] | None = None
    on_submit: Callable[[], None] | None = None
    photos: tuple[str, ...] = ("p1", "p2", "p3")

    def project(self, *, stage: str) -> int:
        return 7 if stage == "labeling" else 8

    def submit(self, *, stage: str, project_id: int, batch_id: str, manifest_uri: str) -> int:
        if self.on_submit is not None:  # something happens while the import request is on its way
            hook, self.on_submit = self.on_submit, None
            hook()
        self.tasks.setdefault(batch_id, set()).update(self.photos)
        return len(self.tasks[batch_id])

    def progress(self, *, stage: str, project_id: int, batch_id: str, expected: int) -> Progress:
        total = self.tasks.get(batch_id, set())
        done = total & self.answered.get(batch_id, set())
        return Progress(len(done), len(total), bool(total) and len(total) >= expected and done == total)

    def finish(self, *, stage: str, project_id: int, batch_id: str, job_name: str, output_uri: str) -> dict[str, Any]:
        self.finishes += 1
        if self.on_finish is not None:
            hook, self.on_finish = self.on_finish, None
            hook()
        return {"LabelingJobName": job_name, "LabelingJobArn": None, "LabelingJobStatus": "Completed",
                "LabelingJobOutput": {"OutputDatasetS3Uri": output_uri}, "Backend": "label_studio"}

    def stop(self, *, stage: str, project_id: int, batch_id: str) -> str:
        self.stops.append(batch_id)
        left = self.answered.get(batch_id, set())
        self.tasks[batch_id] = self.tasks.get(batch_id, set()) & left
        return "stopped"

    def answer_all(self, batch_id: str = BATCH) -> None:
        self.answered[batch_id] = set(self.tasks.get(batch_id, set()))


@pytest.fixture
def sfn() -> Any:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(client) as stub:
        client.stub = stub
        yield client


def _submit(world: World, ops: FakeStage, token: str = "token-1", stage: str = "labeling") -> dict[str, Any]:
    return submit_stage(dynamodb=world.ddb, batches_table=world.tables.batches_table, ops=ops, stage=stage,
                        batch_id=BATCH, job_name=f"proj-{BATCH}", manifest_uri="s3://a/jobs/x/input.manifest",
                        task_token=token, now_iso=NOW)


def _check(world: World, ops: FakeStage, sfn: Any, stage: str = "labeling") -> Any:
    return check_stage(dynamodb=world.ddb, sfn=sfn, batches_table=world.tables.batches_table,
                       artifacts_bucket="art", ops=ops, batch_id=BATCH, stage=stage, now_iso=NOW)


def _expect_success(sfn: Any, token: str) -> None:
    sfn.stub.add_response("send_task_success", {}, {"taskToken": token, "output": ANY})


def test_submission_keeps_the_token_and_the_count_and_marks_the_stage_pending(world: World) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    out = _submit(world, ops)
    assert out["tasks"] == 3 and out["project_id"] == 7
    item = world.batch(BATCH)
    assert (item["ls_labeling_state"], item["ls_labeling_token"], item["ls_labeling_expected"]) == (OPEN, "token-1", 3)
    assert item["ls_pending"] == {"labeling"}
    assert list(pending_stages(world.ddb, world.tables.batches_table)) == [(BATCH, "labeling")]


def test_a_complete_stage_is_finished_and_resumed_once(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    assert _check(world, ops, sfn).outcome == "incomplete" and ops.finishes == 0
    ops.answer_all()
    _expect_success(sfn, "token-1")
    first = _check(world, ops, sfn)
    assert first.outcome == "finished" and ops.finishes == 1
    # a second webhook or the poll: nothing left to do (the Stubber would fail on a second SendTaskSuccess)
    assert _check(world, ops, sfn).outcome == "already" and ops.finishes == 1
    sfn.stub.assert_no_pending_responses()
    item = world.batch(BATCH)
    assert item["ls_labeling_state"] == FINISHED and item["ls_labeling_sent"] == "token-1"
    assert item["ls_labeling_output"] == f"s3://art/gt-output/proj-{BATCH}/manifests/output/output.manifest"
    assert "ls_pending" not in item


def test_two_finishers_at_once_resume_the_execution_only_once(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    ops.answer_all()
    inner: list[Any] = []
    # While the webhook's finish runs, the poll sees the same open stage and finishes it completely.
    ops.on_finish = lambda: inner.append(_check(world, ops, sfn))
    _expect_success(sfn, "token-1")
    outer = _check(world, ops, sfn)
    assert [o.outcome for o in inner] == ["finished"] and outer.outcome == "already"
    assert ops.finishes == 2  # both exported; only the claim's winner resumed the execution
    sfn.stub.assert_no_pending_responses()


def test_a_retried_run_state_replaces_the_token_and_the_finish_goes_to_the_new_one(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops, token="old")
    ops.answer_all()
    # The run state is retried (new token) while a finisher is exporting with the old one.
    ops.on_finish = lambda: _submit(world, ops, token="new")
    assert _check(world, ops, sfn).outcome == "already"
    assert world.batch(BATCH)["ls_labeling_token"] == "new"
    _expect_success(sfn, "new")
    assert _check(world, ops, sfn).outcome == "finished"
    sfn.stub.assert_no_pending_responses()


def test_a_finisher_that_dies_before_resuming_leaves_the_stage_to_the_next_poll(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    ops.answer_all()
    sfn.stub.add_client_error("send_task_success", service_error_code="ThrottlingException", http_status_code=400)
    with pytest.raises(Exception, match="ThrottlingException"):
        _check(world, ops, sfn)
    item = world.batch(BATCH)
    assert item["ls_labeling_state"] == FINISHED and "ls_labeling_sent" not in item and item["ls_pending"]
    _expect_success(sfn, "token-1")
    errors: list[Any] = []
    (out,) = poll(dynamodb=world.ddb, sfn=sfn, batches_table=world.tables.batches_table, artifacts_bucket="art",
                  ops=ops, now_iso=NOW, on_error=lambda *e: errors.append(e))
    assert out.outcome == "delivered_late" and errors == [] and ops.finishes == 1
    assert "ls_pending" not in world.batch(BATCH)


def test_an_execution_that_no_longer_waits_ends_the_delivery(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    ops.answer_all()
    sfn.stub.add_client_error("send_task_success", service_error_code="TaskTimedOut", http_status_code=400)
    assert _check(world, ops, sfn).outcome == "gone"
    assert "ls_pending" not in world.batch(BATCH)
    assert list(pending_stages(world.ddb, world.tables.batches_table)) == []


def test_a_stopped_stage_is_withdrawn_and_never_finished_or_submitted_again(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    ops.answered[BATCH] = {"p1"}
    assert stop_stage(dynamodb=world.ddb, batches_table=world.tables.batches_table, ops=ops, batch_id=BATCH,
                      stage="labeling", now_iso=NOW) == "stopped"
    assert ops.tasks[BATCH] == {"p1"} and world.batch(BATCH)["ls_labeling_state"] == STOPPED
    ops.answer_all()
    assert _check(world, ops, sfn).outcome == "not_open" and ops.finishes == 0
    with pytest.raises(StageNotOpenError):
        _submit(world, ops, token="again")
    assert "ls_pending" not in world.batch(BATCH)


def test_a_stop_while_photos_are_imported_takes_them_back(world: World) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()

    def stop_now() -> None:
        stop_stage(dynamodb=world.ddb, batches_table=world.tables.batches_table, ops=ops, batch_id=BATCH,
                   stage="labeling", now_iso=NOW)

    ops.on_submit = stop_now
    with pytest.raises(StageNotOpenError):
        _submit(world, ops)
    # The import landed after the stop's withdrawal; the submission withdrew it again.
    assert ops.tasks[BATCH] == set() and ops.stops == [BATCH, BATCH]


def test_submission_refuses_finished_stages_and_finished_batches(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    _submit(world, ops)
    ops.answer_all()
    _expect_success(sfn, "token-1")
    _check(world, ops, sfn)
    with pytest.raises(StageAlreadyFinishedError):
        _submit(world, ops, token="resumed")
    world.ddb.update_item(TableName=world.tables.batches_table, Key={"batch_id": {"S": BATCH}},
                          UpdateExpression="SET #s = :f", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":f": {"S": "FAILED"}})
    with pytest.raises(StageNotOpenError):
        _submit(world, ops, token="review", stage="review")


def test_the_state_machines_look_up_finishes_a_complete_stage_without_a_token(world: World) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()

    def look() -> dict[str, Any]:
        return look_up_stage(dynamodb=world.ddb, batches_table=world.tables.batches_table, artifacts_bucket="art",
                             ops=ops, batch_id=BATCH, stage="labeling", job_name=f"proj-{BATCH}", now_iso=NOW)

    assert look()["LabelingJobStatus"] == "Stopped"  # never submitted
    _submit(world, ops)
    running = look()
    assert running["LabelingJobStatus"] == "InProgress" and running["LabelCounters"]["Unlabeled"] == 3
    ops.answer_all()
    done = look()
    assert done["LabelingJobStatus"] == "Completed" and ops.finishes == 1
    assert look() == done and ops.finishes == 1  # the stored result, not a second export


def test_the_failure_path_sees_a_finished_stage_as_a_completed_job(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()
    jobs = LabelStudioJobs(dynamodb=world.ddb, batches_table=world.tables.batches_table, project="proj", ops=ops,
                           batch_id=BATCH, now_iso=NOW)
    assert jobs.job_name(BATCH) == f"proj-{BATCH}" and jobs.review_job_name(BATCH) == f"proj-{BATCH}-review"
    assert jobs.stop_job(None, jobs.review_job_name(BATCH)) == "absent"
    _submit(world, ops)
    ops.answer_all()
    _expect_success(sfn, "token-1")
    _check(world, ops, sfn)
    # settle_batch parks a batch whose labeling job "Completed" instead of releasing it
    assert jobs.stop_job(None, jobs.job_name(BATCH)) == "Completed" and ops.stops == []


def test_a_submission_that_died_halfway_is_looked_up_as_stopped(world: World, sfn: Any) -> None:
    world.seed(BATCH, 3)
    ops = FakeStage()

    def crash() -> None:
        raise ConnectionError("the function died while importing")

    ops.on_submit = crash
    with pytest.raises(ConnectionError):
        _submit(world, ops)
    item = world.batch(BATCH)
    assert item["ls_labeling_state"] == OPEN and "ls_labeling_expected" not in item
    # webhooks and polls wait (a retried run state would submit again) ...
    assert _check(world, ops, sfn).outcome == "submitting"
    # ... but the state machine's look-up, after the run state gave up, ends it: the failure path withdraws it
    found = look_up_stage(dynamodb=world.ddb, batches_table=world.tables.batches_table, artifacts_bucket="art",
                          ops=ops, batch_id=BATCH, stage="labeling", job_name=f"proj-{BATCH}", now_iso=NOW)
    assert found["LabelingJobStatus"] == "Stopped" and "did not import" in found["FailureReason"]
