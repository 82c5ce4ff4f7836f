"""The ``estimated_cost`` of a published batch, for its dataset statistics and the batch summary.

Prices and assumptions: the :mod:`fieldlabel.costs` defaults (docs/costs.md), overridden by the ``costs`` key of the
runtime config (``CONFIG_JSON``: ``{"costs": {"prices": {...}, "assumptions": {...}}}``); the taxonomists per photo
default to the jobs' ``workers_per_photo``. A broken ``costs`` override never stops a publish: the defaults are used
and ``prices_from`` says why.

Ground Truth's per-object tiers count the objects of the calendar month, so each publish adds its objects to a
``#objects-month#<YYYY-MM>`` control item in the batches table (``UpdateItem``, which the publish function may
already do there) and takes its position from the count before it. The item also remembers which batches it counted,
so a retried publish does not count a batch twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from fieldlabel.costs import cost_settings, estimated_cost, load_assumptions, load_price_book, usage_from_counts
from fieldlabel.registry.model import error_code

MONTH_PREFIX = "#objects-month#"


def month_position(dynamodb: Any, batches_table: str, *, batch_id: str, month: str, objects: int) -> int:
    """Objects labeled in ``month`` before this batch; counts the batch's ``objects`` once.

    Args:
        dynamodb: boto3 DynamoDB client.
        batches_table: the batches table (the control item lives there).
        batch_id: the batch being published.
        month: ``YYYY-MM`` of the publication.
        objects: the batch's billable objects (photos that passed through a Ground Truth labeling job plus
            review-job objects).

    Returns:
        The count before this batch. On a retry (batch already counted) it is the month's count minus this batch's
        objects: exact unless another batch was published in between.
    """
    key = {"batch_id": {"S": MONTH_PREFIX + month}}
    try:
        resp = dynamodb.update_item(
            TableName=batches_table, Key=key,
            UpdateExpression="ADD objects :n, counted :b",
            ConditionExpression="attribute_not_exists(counted) OR NOT contains(counted, :id)",
            ExpressionAttributeValues={":n": {"N": str(objects)}, ":b": {"SS": [batch_id]}, ":id": {"S": batch_id}},
            ReturnValues="UPDATED_NEW",
        )
        return max(0, int(resp["Attributes"]["objects"]["N"]) - objects)
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
    item = dynamodb.get_item(TableName=batches_table, Key=key, ConsistentRead=True).get("Item") or {}
    return max(0, int(item.get("objects", {}).get("N", "0")) - objects)


def batch_estimated_cost(
    *,
    dynamodb: Any,
    batches_table: str,
    batch_id: str,
    kind: str | None,
    human_labeled: int,
    machine_labeled: int,
    reviewed: int,
    configuration: Mapping[str, Any],
    published_at: str,
) -> dict[str, Any]:
    """The ``estimated_cost`` block (:func:`fieldlabel.costs.estimated_cost`) of a batch being published.

    Args:
        dynamodb: boto3 DynamoDB client.
        batches_table: the batches table.
        batch_id: the batch.
        kind: ``automated`` or ``human_only``.
        human_labeled: photos in the version labeled by taxonomists.
        machine_labeled: photos in the version labeled by the machine.
        reviewed: photos the expert-review job handled.
        configuration: the lineage configuration ``{"runtime": CONFIG_JSON, "jobs": JOB_SETTINGS_JSON}``.
        published_at: ISO-8601 UTC; its month places the batch in the per-object tiers.
    """
    runtime = dict(configuration.get("runtime") or {})
    jobs = dict(configuration.get("jobs") or {})
    overrides = runtime.get("costs")
    prices_from = "CONFIG_JSON costs" if overrides else "fieldlabel.costs defaults"
    try:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ValueError("costs must be an object")
        prices, assumptions = cost_settings(overrides)
    except (ValidationError, ValueError) as exc:
        prices, assumptions = load_price_book(), load_assumptions()
        prices_from = f"fieldlabel.costs defaults (CONFIG_JSON costs ignored: {str(exc).splitlines()[0][:200]})"
    workers = jobs.get("workers_per_photo", runtime.get("workers_per_photo"))
    explicit = isinstance(overrides, Mapping) and "workers_per_object" in (overrides.get("assumptions") or {})
    if isinstance(workers, int) and 1 <= workers <= 9 and not explicit:
        assumptions = assumptions.model_copy(update={"workers_per_object": workers})
    # The own engine's machine labels never enter a Ground Truth job, and Label Studio has no per-object fee: only
    # the objects that did pass through a job count towards the month's tiers.
    draft = usage_from_counts(human_labeled=human_labeled, machine_labeled=machine_labeled, kind=kind,
                              reviewed=reviewed, engine=runtime.get("engine"), backend=runtime.get("backend"))
    objects = draft.job_objects + draft.review_job_objects
    earlier = month_position(dynamodb, batches_table, batch_id=batch_id, month=published_at[:7], objects=objects)
    usage = draft.model_copy(update={"objects_labeled_earlier_this_month": earlier})
    block = estimated_cost(usage, prices, assumptions, prices_from=prices_from)
    block["workers_per_object"] = assumptions.workers_per_object
    return block
