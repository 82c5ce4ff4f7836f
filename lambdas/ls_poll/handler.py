"""Label Studio poll Lambda (EventBridge Scheduler every ``label_studio.poll_minutes``): the webhook's fallback.

Event ``{"trigger": "schedule"}`` -> ``{"checked", "finished", "incomplete", "errors"}``. Every pending stage (open,
or finished and not yet delivered to its execution) gets the same completion check as a webhook
(:func:`fieldlabel.labeling.ls_workflow.poll`), so a lost webhook, or a finisher that died before SendTaskSuccess,
only delays a batch by one poll interval.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.ls_wiring import HandlerSetup
from fieldlabel.labeling.ls_workflow import poll

_SETUP = HandlerSetup()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _SETUP.env
    dynamodb, _s3, sfn = _SETUP.clients
    errors: list[dict[str, str]] = []

    def on_error(batch_id: str, stage: str, exc: Exception) -> None:
        errors.append({"batch_id": batch_id, "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:500]})
        logger.exception("completion check failed", extra={"batch_id": batch_id, "stage": stage})

    outcomes = poll(dynamodb=dynamodb, sfn=sfn, batches_table=env.batches_table,
                    artifacts_bucket=env.artifacts_bucket, ops=_SETUP.ops, now_iso=iso(utc_now()),
                    on_error=on_error)
    counts = Counter(o.outcome for o in outcomes)
    finished = counts["finished"] + counts["delivered_late"]
    metrics.add_metric(name="LabelStudioStagesFinishedByPoll", unit=MetricUnit.Count, value=finished)
    metrics.add_metric(name="LabelStudioPollErrors", unit=MetricUnit.Count, value=len(errors))
    summary = {"checked": len(outcomes) + len(errors), "finished": finished, "incomplete": counts["incomplete"],
               "outcomes": [o.as_dict() for o in outcomes], "errors": errors}
    logger.info("Label Studio poll done", extra={k: v for k, v in summary.items() if k != "outcomes"})
    return summary
