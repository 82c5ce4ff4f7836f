"""Label Studio submit Lambda: the state machine's run, look-up and stop of a batch's Label Studio stage.

Events (docs/label-studio.md, "Workflow"):

* ``{"action": "submit", "stage": "labeling" | "review", "batch_id", "job_name", "manifest_uri", "task_token"}``
  (the ``lambda:invoke.waitForTaskToken`` run state): imports the manifest's photos into the stage's project, keeps
  the task token on the batch; returns what it submitted (Step Functions waits for the token, not this result).
  Raises ``StageAlreadyFinishedError`` when the stage finished before: the state machine looks its result up.
* ``{"action": "look_up", "stage", "batch_id", "job_name"}``: the stage's DescribeLabelingJob-shaped result
  (finished now when complete; ``InProgress`` while taxonomists work; ``Stopped`` when it is not open).
* ``{"action": "stop", "stage", "batch_id", "job_name"}``: deletes the stage's unanswered tasks, marks it stopped.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.ls_wiring import HandlerSetup
from fieldlabel.labeling.ls_workflow import look_up_stage, stop_stage, submit_stage

_SETUP = HandlerSetup()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _SETUP.env
    dynamodb, _s3, _sfn = _SETUP.clients
    action = str(event.get("action") or "submit")
    stage, batch_id = str(event["stage"]), str(event["batch_id"])
    logger.append_keys(batch_id=batch_id, stage=stage, action=action)
    now_iso = iso(utc_now())
    ops = _SETUP.ops
    if action == "submit":
        out = submit_stage(dynamodb=dynamodb, batches_table=env.batches_table, ops=ops, stage=stage,
                           batch_id=batch_id, job_name=str(event["job_name"]),
                           manifest_uri=str(event["manifest_uri"]), task_token=str(event["task_token"]),
                           now_iso=now_iso)
        metrics.add_metric(name="LabelStudioTasksSubmitted", unit=MetricUnit.Count, value=out["tasks"])
        logger.info("stage submitted to Label Studio", extra=out)
        return out
    if action == "look_up":
        result = look_up_stage(dynamodb=dynamodb, batches_table=env.batches_table,
                               artifacts_bucket=env.artifacts_bucket, ops=ops, batch_id=batch_id, stage=stage,
                               job_name=str(event.get("job_name") or ""), now_iso=now_iso)
        logger.info("stage looked up", extra={"status": result.get("LabelingJobStatus")})
        return result
    if action == "stop":
        outcome = stop_stage(dynamodb=dynamodb, batches_table=env.batches_table, ops=ops, batch_id=batch_id,
                             stage=stage, now_iso=now_iso)
        logger.warning("stage stopped", extra={"outcome": outcome})
        return {"batch_id": batch_id, "stage": stage, "outcome": outcome}
    raise ValueError(f"unknown action {action!r}: submit, look_up or stop")
