"""Resuming a parked batch: the operator's request (``fieldlabel resume``) and the workflow's first step on it.

A batch is parked (:mod:`fieldlabel.labeling.failure`) when a step after its labeling job failed: ``record``,
``review`` or ``publish``. Resuming starts a new execution of the same state machine named
``batch-<batch_id>-resume-<n>`` with the input ``{"batch_id", "photo_count", "kind", "attempt": n + 1,
"resume_from": <step>, "resume": n}``. Its first step (:func:`prepare_resume`, in the prepare function) takes the
batch back from PARKED, conditional on ``resume_count = n`` so two resumptions can never run the batch at once, and
rebuilds the state the failed step needs from the registry. Nothing is relabeled and no photo moves.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.labeling.backend import LabelingBackend
from fieldlabel.labeling.failure import PARK_STEPS
from fieldlabel.labeling.registry_io import get_batch
from fieldlabel.registry.model import BATCH_PARKED, PUBLISHED, error_code, from_item, to_attr

EXECUTION_PREFIX = "batch-"
_BATCH_ID = re.compile(r"b[0-9]{8}t[0-9]{6}z-[0-9a-f]{8}")
# A resumed batch is back where its labeling job left it; the review stage sets REVIEWING, publish PUBLISHED.
_RESUMED_STATUS = "LABELING"


class NotResumableError(RuntimeError):
    """The batch is not parked (or another resumption took it over)."""


def batch_id_of_execution(name: str) -> str:
    """The batch id in an execution name: ``batch-<batch_id>`` or ``batch-<batch_id>-resume-<n>``.

    Raises:
        ValueError: when the name holds no batch id.
    """
    match = _BATCH_ID.match(name.removeprefix(EXECUTION_PREFIX))
    if match is None:
        raise ValueError(f"execution name {name!r} names no batch")
    return match.group(0)


def resume_execution_name(batch_id: str, number: int) -> str:
    """``batch-<batch_id>-resume-<n>`` (Step Functions keeps names unique, so each resumption has its own)."""
    return f"{EXECUTION_PREFIX}{batch_id}-resume-{number}"


def is_resumable(batch: dict[str, Any]) -> bool:
    """A PARKED batch, or a PUBLISHED one whose publish step parked before ``LATEST`` moved."""
    return batch.get("parked_step") in PARK_STEPS and batch.get("status") in (BATCH_PARKED, PUBLISHED)


def request_resume(ddb: Any, sfn: Any, *, batches_table: str, state_machine_arn: str, batch_id: str,
                   step: str | None = None, now_iso: str) -> dict[str, Any]:
    """Start the execution that resumes a parked batch; returns ``{"execution_name", "execution_arn", "step", ...}``.

    Takes the next resumption number with a conditional write (``resume_count`` unchanged since it was read and the
    batch still parked), then starts ``batch-<id>-resume-<n>``. A resumption number taken by a request that then
    failed to start is simply skipped by the next request.

    Args:
        step: resume at this step instead of the parked one (``record``, ``review``, ``publish``).

    Raises:
        NotResumableError: the batch does not exist, is not parked, or another request took the number first.
        ValueError: an unknown ``step``.
    """
    batch = get_batch(ddb, batches_table, batch_id)
    if batch is None:
        raise NotResumableError(f"batch {batch_id} does not exist")
    if not is_resumable(batch):
        raise NotResumableError(f"batch {batch_id} is {batch.get('status')}, not parked; only a parked batch can be "
                                "resumed")
    step = step or str(batch["parked_step"])
    if step not in PARK_STEPS:
        raise ValueError(f"unknown step {step!r}; one of {', '.join(PARK_STEPS)}")
    if step != "record" and not batch.get("labeling_stats"):
        raise NotResumableError(f"batch {batch_id} has no recorded labels yet: resume it at record")
    previous = int(batch.get("resume_count") or 0)
    number = previous + 1
    try:
        ddb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET resume_count = :n, resume_requested_at = :now",
            ConditionExpression="parked_step = :step0 AND "
                                + ("resume_count = :old" if "resume_count" in batch
                                   else "attribute_not_exists(resume_count)"),
            ExpressionAttributeValues={k: to_attr(v) for k, v in {
                ":n": number, ":now": now_iso, ":step0": batch["parked_step"],
                **({":old": previous} if "resume_count" in batch else {})}.items()},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        raise NotResumableError(f"batch {batch_id} changed while resuming it (another resume?); look again") from exc
    name = resume_execution_name(batch_id, number)
    execution_input = {"batch_id": batch_id, "photo_count": int(batch.get("photo_count") or 0),
                       "kind": str(batch.get("kind") or "human_only"), "attempt": number + 1,
                       "resume_from": step, "resume": number}
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name,
                              input=json.dumps(execution_input))["executionArn"]
    return {"batch_id": batch_id, "step": step, "resume": number, "execution_name": name, "execution_arn": arn,
            "parked_because": batch.get("park_reason")}


def prepare_resume(*, dynamodb: Any, backend: LabelingBackend, batches_table: str, state: dict[str, Any],
                   poll_seconds: int, review_enabled: bool, now_iso: str) -> dict[str, Any]:
    """The resumed execution's first step: take the batch back from PARKED and rebuild the workflow's state.

    Conditional on the batch being parked at a known step and ``resume_count`` equal to the execution's ``resume``
    number. Returns the new state: the execution input plus ``prepared`` (the labeling job to adopt), and for a
    resume at review or publish ``labeling`` (the recorded statistics) and, at publish, ``review``.

    Raises:
        NotResumableError: the batch is not parked, or a later resumption owns it.
    """
    batch_id = str(state["batch_id"])
    step = str(state["resume_from"])
    number = int(state.get("resume") or 0)
    if step not in PARK_STEPS:
        raise NotResumableError(f"unknown resume step {step!r}")
    batch = get_batch(dynamodb, batches_table, batch_id) or {}
    published = batch.get("status") == PUBLISHED
    sets = ["resumed_at = :now", "updated_at = :now"] + ([] if published else ["#s = :status"])
    values: dict[str, Any] = {":now": now_iso, ":n": number, ":parked": BATCH_PARKED, ":published": PUBLISHED}
    if not published:
        values[":status"] = _RESUMED_STATUS
    try:
        resp = dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE parked_step, park_reason",
            ConditionExpression="(#s = :parked OR #s = :published) AND attribute_exists(parked_step) "
                                "AND resume_count = :n",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()},
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        raise NotResumableError(f"batch {batch_id} is not parked for resumption {number}") from exc
    batch = from_item(resp.get("Attributes")) or {}
    job_name = str(batch.get("job_name") or backend.job_name(batch_id))
    out: dict[str, Any] = {
        "batch_id": batch_id, "photo_count": state.get("photo_count"), "kind": state.get("kind"),
        "attempt": state.get("attempt"), "resume_from": step, "resume": number,
        "prepared": {"exists": True, "job_name": job_name, "kind": str(batch.get("kind") or "human_only"),
                     "job_status": "Completed", "job_arn": batch.get("job_arn"), "poll_seconds": poll_seconds,
                     "review_enabled": review_enabled},
    }
    if not batch.get("job_name") and batch.get("kind") == "model":
        # The own engine labeled every photo and no taxonomists' job ran: "Does the batch already have a labeling
        # job?" then goes straight to recording (human_count 0) instead of looking a job up.
        out["prepared"].update({"exists": False, "human_count": 0})
    if step in ("review", "publish"):
        out["labeling"] = batch.get("labeling_stats") or {}
    if step == "publish":
        out["review"] = batch.get("resume_review") or {"skipped": "resumed at publish; no review result was kept"}
        # The engine's publish also reads the training result (a failed or skipped training never blocks it).
        out["training"] = batch.get("resume_training") or {"trained": False,
                                                           "skipped": "resumed at publish; no training result kept"}
    return out
