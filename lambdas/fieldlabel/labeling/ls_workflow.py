"""The labeling workflow on the Label Studio backend: submit a stage, finish it once, stop it (docs/label-studio.md).

A stage is the taxonomists' labeling of a batch (``labeling``) or the senior reviewers' review (``review``). The
state machine's run state is a ``lambda:invoke.waitForTaskToken`` task: :func:`submit_stage` imports the stage's
photos into its Label Studio project and keeps the task token on the batch item. Whoever sees the stage complete
first (the webhook on an answer, or the scheduled poll when a webhook was lost) calls :func:`finish_stage`, which
exports and consolidates the answers into an output manifest and then claims the stage with ONE conditional write
(``OPEN`` and the same token -> ``FINISHED``) before it resumes the execution with ``SendTaskSuccess``. Two finishers
never both resume it; a finisher that dies between the claim and ``SendTaskSuccess`` leaves the stage in
``ls_pending`` and the next poll sends the stored result (:func:`resend_unsent`).

Everything that speaks Label Studio is behind :class:`StageOps` (the Label Studio backend's submission,
completion check, finish and stop), so this module holds only the bookkeeping, which is what makes "a batch is
finished once" and "nothing is labeled twice" true.

Batch-item attributes per stage ``s`` (flat, so every condition is a plain comparison):
``ls_<s>_project`` (Label Studio project id), ``ls_<s>_expected`` (tasks submitted), ``ls_<s>_job`` (the stage's
job name), ``ls_<s>_output`` (output manifest URI), ``ls_<s>_token`` (the waiting task token), ``ls_<s>_state``
(``OPEN`` | ``FINISHED`` | ``STOPPED``), ``ls_<s>_result`` (the DescribeLabelingJob-shaped result),
``ls_<s>_sent`` (the token the result was delivered to); ``ls_pending`` is a string set of the stages a poll must
look at (open, or finished and not yet delivered): the poll reads only items that have it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import s3_uri
from fieldlabel.labeling.registry_io import get_batch
from fieldlabel.registry.model import FAILED, PUBLISHED, error_code, from_item, to_attr

STAGES = ("labeling", "review")
OPEN = "OPEN"
FINISHED = "FINISHED"
STOPPED = "STOPPED"
# Where a stage's output manifest goes: the same prefix and layout as a Ground Truth job's output, so process-output
# and apply-review read it with the IAM they already have.
OUTPUT_KEY = "gt-output/{job_name}/manifests/output/output.manifest"
# SendTaskSuccess answers these when the execution no longer waits for the token (it ended, timed out, or the
# token belongs to an earlier attempt of the state): nothing can be delivered any more, so the stage stops asking.
_GONE = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


class StageAlreadyFinishedError(RuntimeError):
    """The stage finished before (e.g. a resumed review): the state machine looks its result up instead."""


class StageNotOpenError(RuntimeError):
    """The batch is finished, failed or stopped: nothing may be submitted for it any more."""


@dataclass(frozen=True)
class Progress:
    """How far a stage is: ``done`` of ``total`` tasks answered as often as the stage asks."""

    done: int
    total: int
    complete: bool


class StageOps(Protocol):
    """What the workflow needs from the Label Studio backend for one stage of one batch."""

    def project(self, *, stage: str) -> int:
        """The stage's project (created when missing, with its webhook); its id."""
        ...

    def submit(self, *, stage: str, project_id: int, batch_id: str, manifest_uri: str) -> int:
        """Import the manifest's photos as tasks (idempotent: only missing ones); the batch's task count."""
        ...

    def progress(self, *, stage: str, project_id: int, batch_id: str, expected: int) -> Progress:
        """Whether every task of the batch has its answers."""
        ...

    def finish(self, *, stage: str, project_id: int, batch_id: str, job_name: str, output_uri: str) -> dict[str, Any]:
        """Export and consolidate the answers into ``output_uri``; the DescribeLabelingJob-shaped result."""
        ...

    def stop(self, *, stage: str, project_id: int, batch_id: str) -> str:
        """Delete the batch's unanswered tasks; ``stopped`` or ``absent``."""
        ...


def attr(stage: str, name: str) -> str:
    """The batch-item attribute ``ls_<stage>_<name>``."""
    if stage not in STAGES:
        raise ValueError(f"unknown Label Studio stage {stage!r}; one of {', '.join(STAGES)}")
    return f"ls_{stage}_{name}"


def output_uri(bucket: str, job_name: str) -> str:
    """The stage's output manifest (Ground Truth's layout under ``gt-output/``)."""
    return s3_uri(bucket, OUTPUT_KEY.format(job_name=job_name))


def stage_of_job(job_name: str) -> str:
    """``review`` for the review job's name (``<project>-<batch_id>-review``), ``labeling`` otherwise."""
    return "review" if job_name.endswith("-review") else "labeling"


# ------------------------------------------------------------------------------------------------------- submit


def submit_stage(*, dynamodb: Any, batches_table: str, ops: StageOps, stage: str, batch_id: str, job_name: str,
                 manifest_uri: str, task_token: str, now_iso: str) -> dict[str, Any]:
    """Import the stage's photos and keep ``task_token`` on the batch (the run state waits for it).

    The token is written only while the stage may still be submitted (the batch is neither PUBLISHED nor FAILED, and
    the stage is not finished or stopped), so a stopped batch never gets tasks again. A retried run state calls this
    again with a new token: the import adds only missing photos and the newer token replaces the older.

    Raises:
        StageAlreadyFinishedError: the stage finished earlier (its result is looked up instead).
        StageNotOpenError: the batch finished or failed, or the stage was stopped.
    """
    batch = get_batch(dynamodb, batches_table, batch_id) or {}
    state = batch.get(attr(stage, "state"))
    if state == FINISHED:
        raise StageAlreadyFinishedError(f"batch {batch_id}: the Label Studio {stage} stage already finished")
    if state == STOPPED or batch.get("status") in (PUBLISHED, FAILED) or not batch:
        raise StageNotOpenError(f"batch {batch_id} is {batch.get('status') or 'missing'} (stage {state or 'new'}); "
                                "nothing is submitted for it")
    # The project and the token are recorded BEFORE any task is imported: from then on a stop (timeout, failure
    # path, stopped execution) knows where the batch's tasks are, even if this call dies halfway through.
    project_id = ops.project(stage=stage)
    names = {"#s": "status", "#st": attr(stage, "state"), "#p": attr(stage, "project"),
             "#j": attr(stage, "job"), "#t": attr(stage, "token"), "#e": attr(stage, "expected")}
    try:
        dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET #p = :project, #j = :job, #t = :token, #st = :open, updated_at = :now "
                             "REMOVE #e ADD ls_pending :stage",
            ConditionExpression="attribute_exists(batch_id) AND #s <> :published AND #s <> :failed "
                                "AND (attribute_not_exists(#st) OR #st = :open)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={k: _attr_value(v) for k, v in {
                ":project": project_id, ":job": job_name, ":token": task_token, ":open": OPEN, ":now": now_iso,
                ":stage": {stage}, ":published": PUBLISHED, ":failed": FAILED}.items()},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        raise StageNotOpenError(f"batch {batch_id} stopped or finished before its {stage} stage was submitted") \
            from exc
    expected = ops.submit(stage=stage, project_id=project_id, batch_id=batch_id, manifest_uri=manifest_uri)
    try:
        dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET #e = :expected", ConditionExpression="#st = :open AND #t = :token",
            ExpressionAttributeNames={"#e": attr(stage, "expected"), "#st": attr(stage, "state"),
                                      "#t": attr(stage, "token")},
            ExpressionAttributeValues={":expected": {"N": str(expected)}, ":open": {"S": OPEN},
                                       ":token": {"S": task_token}},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        # Stopped while the photos were being imported: take back what this call imported, so no taxonomist
        # labels a photo that went back to the pool.
        if (get_batch(dynamodb, batches_table, batch_id) or {}).get(attr(stage, "state")) == STOPPED:
            ops.stop(stage=stage, project_id=project_id, batch_id=batch_id)
        raise StageNotOpenError(f"batch {batch_id}: its {stage} stage changed while it was submitted") from exc
    return {"batch_id": batch_id, "stage": stage, "project_id": project_id, "tasks": expected, "job_name": job_name}


# ------------------------------------------------------------------------------------------------------- finish


@dataclass(frozen=True)
class FinishOutcome:
    """What one completion check did: ``finished`` (this call resumed the execution), ``incomplete``,
    ``submitting`` (the photos are not all imported yet), ``already`` (someone else finished it), ``not_open``
    (stopped, unknown), ``delivered_late`` (a stored result sent again), ``gone`` (the execution no longer waits)."""

    batch_id: str
    stage: str
    outcome: str
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "stage": self.stage, "outcome": self.outcome, "done": self.done,
                "total": self.total}


def check_stage(*, dynamodb: Any, sfn: Any | None, batches_table: str, artifacts_bucket: str, ops: StageOps,
                batch_id: str, stage: str, now_iso: str) -> FinishOutcome:
    """The completion check of the webhook and the poll: finish the stage and resume the execution, once.

    ``sfn`` None (the state machine's own look-up) finishes without delivering: the caller returns the result.
    """
    batch = get_batch(dynamodb, batches_table, batch_id) or {}
    state = batch.get(attr(stage, "state"))
    if state == FINISHED:
        if sfn is not None and batch.get(attr(stage, "sent")) != batch.get(attr(stage, "token")):
            return _deliver(dynamodb, sfn, batches_table, batch, stage, "delivered_late")
        return FinishOutcome(batch_id, stage, "already", result=batch.get(attr(stage, "result")))
    if state != OPEN:
        return FinishOutcome(batch_id, stage, "not_open")
    project_id = int(batch[attr(stage, "project")])
    if batch.get(attr(stage, "expected")) is None:
        # The submission is still importing, or died halfway (the run state's retry submits again).
        return FinishOutcome(batch_id, stage, "submitting")
    expected = int(batch[attr(stage, "expected")])
    progress = ops.progress(stage=stage, project_id=project_id, batch_id=batch_id, expected=expected)
    if not progress.complete:
        return FinishOutcome(batch_id, stage, "incomplete", progress.done, progress.total)
    job_name = str(batch[attr(stage, "job")])
    uri = output_uri(artifacts_bucket, job_name)
    result = ops.finish(stage=stage, project_id=project_id, batch_id=batch_id, job_name=job_name, output_uri=uri)
    token = str(batch.get(attr(stage, "token")) or "")
    try:
        resp = dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET #st = :finished, #r = :result, #o = :uri, updated_at = :now",
            ConditionExpression="#st = :open AND #t = :token",
            ExpressionAttributeNames={"#st": attr(stage, "state"), "#r": attr(stage, "result"),
                                      "#o": attr(stage, "output"), "#t": attr(stage, "token")},
            ExpressionAttributeValues={k: _attr_value(v) for k, v in {
                ":finished": FINISHED, ":result": result, ":uri": uri, ":now": now_iso, ":open": OPEN,
                ":token": token}.items()},
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        # Another finisher claimed it, the batch was stopped, or a newer attempt of the run state holds a new
        # token (the next check finishes for that one).
        return FinishOutcome(batch_id, stage, "already", progress.done, progress.total)
    claimed = from_item(resp.get("Attributes")) or {}
    if sfn is None:
        return FinishOutcome(batch_id, stage, "finished", progress.done, progress.total, result)
    out = _deliver(dynamodb, sfn, batches_table, claimed, stage, "finished")
    return FinishOutcome(batch_id, stage, out.outcome, progress.done, progress.total, result)


def _deliver(dynamodb: Any, sfn: Any, batches_table: str, batch: dict[str, Any], stage: str,
             outcome: str) -> FinishOutcome:
    """SendTaskSuccess with the stored result, then note the token it went to (and drop the stage from pending)."""
    batch_id = str(batch["batch_id"])
    token = str(batch.get(attr(stage, "token")) or "")
    result = batch.get(attr(stage, "result")) or {}
    try:
        sfn.send_task_success(taskToken=token, output=json.dumps(result, separators=(",", ":"), default=str))
    except ClientError as exc:
        if error_code(exc) not in _GONE:
            raise  # e.g. throttled: the stage stays pending and the next poll delivers it
        outcome = "gone"
    try:
        dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET #sent = :token DELETE ls_pending :stage",
            ConditionExpression="#t = :token",
            ExpressionAttributeNames={"#sent": attr(stage, "sent"), "#t": attr(stage, "token")},
            ExpressionAttributeValues={":token": {"S": token}, ":stage": {"SS": [stage]}},
        )
    except ClientError as exc:
        # A newer attempt of the run state replaced the token meanwhile: the stage stays pending for that one.
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
    return FinishOutcome(batch_id, stage, outcome, result=result)


def look_up_stage(*, dynamodb: Any, batches_table: str, artifacts_bucket: str, ops: StageOps, batch_id: str,
                  stage: str, job_name: str, now_iso: str) -> dict[str, Any]:
    """The state machine's "Look up" of a Label Studio stage: the DescribeLabelingJob-shaped result.

    A finished stage returns its stored result; an open one is finished now when complete (``Completed``) or
    reported ``InProgress`` (the state machine waits and looks again). A stage never submitted, stopped, or whose
    submission did not get all its photos in is ``Stopped``, which the state machine treats like a job that ended
    without completing (the failure path withdraws what was imported and releases the photos): the look-up runs
    only after the run state gave up, so nothing would import the rest.
    """
    out = check_stage(dynamodb=dynamodb, sfn=None, batches_table=batches_table, artifacts_bucket=artifacts_bucket,
                      ops=ops, batch_id=batch_id, stage=stage, now_iso=now_iso)
    if out.outcome == "already" and out.result is None:
        # A concurrent finisher won the claim a moment ago: its result is on the batch now.
        out = FinishOutcome(batch_id, stage, "already",
                            result=(get_batch(dynamodb, batches_table, batch_id) or {}).get(attr(stage, "result")))
    if out.result:
        return dict(out.result)
    status = "InProgress" if out.outcome == "incomplete" else "Stopped"
    reason = {"submitting": f"the {stage} stage's submission did not import every photo",
              "not_open": f"the Label Studio {stage} stage is not open"}.get(out.outcome)
    return {"LabelingJobName": job_name, "LabelingJobArn": None, "LabelingJobStatus": status,
            "LabelCounters": {"TotalLabeled": out.done, "HumanLabeled": out.done, "MachineLabeled": 0,
                              "FailedNonRetryableError": 0, "Unlabeled": max(out.total - out.done, 0)},
            "FailureReason": reason,
            "Backend": "label_studio"}


# --------------------------------------------------------------------------------------------------------- stop


def stop_stage(*, dynamodb: Any, batches_table: str, ops: StageOps, batch_id: str, stage: str,
               now_iso: str) -> str:
    """Take the stage's unanswered tasks back and mark it STOPPED; what the stage was.

    Returns ``Completed`` when the stage had finished (its answers are paid for: the failure path parks instead of
    releasing), ``absent`` when it was never submitted, else the backend's ``stopped``/``absent``. The state is
    written first (conditional on OPEN), so a finisher racing with the stop cannot claim the stage afterwards, and a
    webhook arriving later finds it STOPPED.
    """
    batch = get_batch(dynamodb, batches_table, batch_id) or {}
    state = batch.get(attr(stage, "state"))
    if state == FINISHED:
        return "Completed"
    if state is None:
        return "absent"
    if state == OPEN:
        try:
            dynamodb.update_item(
                TableName=batches_table, Key={"batch_id": {"S": batch_id}},
                UpdateExpression="SET #st = :stopped, updated_at = :now DELETE ls_pending :stage",
                ConditionExpression="#st = :open",
                ExpressionAttributeNames={"#st": attr(stage, "state")},
                ExpressionAttributeValues={":stopped": {"S": STOPPED}, ":open": {"S": OPEN},
                                           ":now": {"S": now_iso}, ":stage": {"SS": [stage]}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return stop_stage(dynamodb=dynamodb, batches_table=batches_table, ops=ops, batch_id=batch_id,
                              stage=stage, now_iso=now_iso)
    # STOPPED (now or by an earlier call): delete what is still unanswered; idempotent.
    return ops.stop(stage=stage, project_id=int(batch[attr(stage, "project")]), batch_id=batch_id)


class LabelStudioJobs:
    """The failure path's view of a batch's Label Studio stages, in the backend seam's shape.

    ``fail_batch``'s :func:`fieldlabel.labeling.failure.settle_batch` stops "jobs" by name; here a job is a stage
    of the batch (``<project>-<batch_id>`` the labeling, ``...-review`` the review), and stopping it is
    :func:`stop_stage`. The names are the Ground Truth backend's, so the batch record reads the same on both.
    """

    def __init__(self, *, dynamodb: Any, batches_table: str, project: str, ops: StageOps, batch_id: str,
                 now_iso: str) -> None:
        self._ddb = dynamodb
        self._table = batches_table
        self._project = project
        self._ops = ops
        self._batch_id = batch_id
        self._now = now_iso

    def job_name(self, batch_id: str) -> str:
        return f"{self._project}-{batch_id}"

    def review_job_name(self, batch_id: str) -> str:
        return f"{self._project}-{batch_id}-review"

    def stop_job(self, client: Any, job_name: str) -> str:  # noqa: ARG002 - the seam's signature; ops has the client
        return stop_stage(dynamodb=self._ddb, batches_table=self._table, ops=self._ops, batch_id=self._batch_id,
                          stage=stage_of_job(job_name), now_iso=self._now)


# --------------------------------------------------------------------------------------------------------- poll


def pending_stages(dynamodb: Any, batches_table: str) -> Iterator[tuple[str, str]]:
    """``(batch_id, stage)`` of every stage a poll must look at (items with ``ls_pending``), page by page.

    A Scan with a filter: the batches table has one small item per batch and no index on these attributes, and a
    poll every few minutes reads it in a few requests even with thousands of batches (docs/label-studio.md).
    """
    kwargs: dict[str, Any] = {"TableName": batches_table, "FilterExpression": "attribute_exists(ls_pending)",
                              "ProjectionExpression": "batch_id, ls_pending"}
    while True:
        resp = dynamodb.scan(**kwargs)
        for raw in resp.get("Items", []):
            item = from_item(raw) or {}
            for stage in sorted(item.get("ls_pending") or ()):
                if stage in STAGES:
                    yield str(item["batch_id"]), stage
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def poll(*, dynamodb: Any, sfn: Any, batches_table: str, artifacts_bucket: str, ops: StageOps, now_iso: str,
         on_error: Callable[[str, str, Exception], None]) -> list[FinishOutcome]:
    """Check every pending stage (:func:`check_stage`); one stage's error is reported and the others go on."""
    out = []
    for batch_id, stage in list(pending_stages(dynamodb, batches_table)):
        try:
            out.append(check_stage(dynamodb=dynamodb, sfn=sfn, batches_table=batches_table,
                                   artifacts_bucket=artifacts_bucket, ops=ops, batch_id=batch_id, stage=stage,
                                   now_iso=now_iso))
        except Exception as exc:  # noqa: BLE001 - one unreachable batch must not hide the others
            on_error(batch_id, stage, exc)
    return out


def stage_of_project(batch: dict[str, Any], project_id: int) -> str | None:
    """Which stage of ``batch`` runs in Label Studio project ``project_id`` (a webhook names only the project)."""
    for stage in STAGES:
        value = batch.get(attr(stage, "project"))
        if value is not None and int(value) == int(project_id):
            return stage
    return None


def _attr_value(value: Any) -> dict[str, Any]:
    return dict(to_attr(value))
