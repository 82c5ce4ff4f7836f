"""Label Studio webhook Lambda (a Function URL, AuthType NONE): an answer was given, maybe a stage is complete.

Label Studio posts ``{"action": "ANNOTATION_CREATED" | ...}`` (no payload: the webhook carries no photo data) to
``<function URL>?project=<id>`` with the shared secret in ``X-Fieldlabel-Webhook-Secret``. A request without the
right secret gets 401 before anything is read. Then every pending stage running in that project gets the
completion check (:func:`fieldlabel.labeling.ls_workflow.check_stage`): a complete stage is finished and its
execution resumed, once. Label Studio does not retry a webhook; a lost or failed one only waits for the poll.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.ls_wiring import HandlerSetup, webhook_verified
from fieldlabel.labeling.ls_workflow import check_stage, pending_stages, stage_of_project
from fieldlabel.labeling.registry_io import get_batch


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


_SETUP = HandlerSetup()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    if not webhook_verified(headers, _SETUP.secret):
        metrics.add_metric(name="LabelStudioWebhooksRefused", unit=MetricUnit.Count, value=1)
        logger.warning("webhook refused: missing or wrong shared secret")
        return _response(401, {"message": "unauthorized"})
    raw = event.get("body") or "{}"
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    try:
        action = str(json.loads(raw).get("action") or "")
    except (ValueError, AttributeError):
        return _response(400, {"message": "the body is not a Label Studio webhook"})
    query = event.get("queryStringParameters") or {}
    try:
        project = int(query["project"]) if query.get("project") is not None else None
    except ValueError:
        return _response(400, {"message": "project must be a Label Studio project id"})
    env = _SETUP.env
    dynamodb, _s3, sfn = _SETUP.clients
    now_iso = iso(utc_now())
    ops = _SETUP.ops
    outcomes = []
    for batch_id, stage in list(pending_stages(dynamodb, env.batches_table)):
        if project is not None:
            batch = get_batch(dynamodb, env.batches_table, batch_id) or {}
            if stage_of_project(batch, project) != stage:
                continue
        out = check_stage(dynamodb=dynamodb, sfn=sfn, batches_table=env.batches_table,
                          artifacts_bucket=env.artifacts_bucket, ops=ops, batch_id=batch_id, stage=stage,
                          now_iso=now_iso)
        outcomes.append(out.as_dict())
        if out.outcome in ("finished", "delivered_late"):
            metrics.add_metric(name="LabelStudioStagesFinishedByWebhook", unit=MetricUnit.Count, value=1)
            logger.info("stage finished; execution resumed", extra=out.as_dict())
    return _response(200, {"action": action, "checked": outcomes})
