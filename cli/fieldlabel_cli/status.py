"""Reading the registry for the operator commands: the pending pool, batches, control items, and their rendering.

Reads only: Query (COUNT) on the photos table's ``by_status`` index, a Scan of the (small) batches table, and
BatchGetItem of the control items. Shapes are docs/contracts.md's and docs/intake.md's.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.common.clock import parse_iso
from fieldlabel.intake.dispatch import pending_stats
from fieldlabel.labeling.registry_io import MODEL_CONTROL_PREFIX
from fieldlabel.registry.model import (
    BACKOFF,
    BATCHED,
    BY_DUE_INDEX,
    DISPATCH_LEASE_KEY,
    LABELED,
    PARKED,
    PENDING,
    PENDING_COUNTER_KEY,
    QUARANTINED,
    from_item,
)
from fieldlabel.registry.photos import count_status

from fieldlabel_cli.errors import CliError, UsageError, error_code, translate_aws_error

# Batch statuses of a batch still on its way (docs/contracts.md, batches table).
ACTIVE_STATUSES = ("CLAIMING", "STARTED", "LABELING", "REVIEWING")
PUBLISHED = "PUBLISHED"
FAILED = "FAILED"
BATCH_PARKED = "PARKED"
COUNTED_PHOTO_STATUSES = (PENDING, BACKOFF, BATCHED, LABELED, PARKED, QUARANTINED)
BATCH_ID_RE = re.compile(r"^b[0-9]{8}t[0-9]{6}z-[0-9a-f]{8}$")


def registry_options(p: argparse.ArgumentParser) -> None:
    """``--photos-table`` and ``--batches-table`` (defaults: Storage stack outputs)."""
    g = p.add_argument_group("registry (default: from the Storage stack outputs)")
    g.add_argument("--photos-table", metavar="NAME", help="photos table (output PhotosTableName)")
    g.add_argument("--batches-table", metavar="NAME", help="batches table (output BatchesTableName)")


def validate_batch_id(batch_id: str) -> str:
    """A batch id as the dispatcher makes them (``b20261126t063000z-1a2b3c4d``).

    Raises:
        UsageError: anything else, before any AWS call.
    """
    value = batch_id.strip().lower()
    if not BATCH_ID_RE.match(value):
        raise UsageError(f"not a batch id: {batch_id!r} (expected like b20261126t063000z-1a2b3c4d; "
                         "`fieldlabel status` and `fieldlabel report` list them)")
    return value


def table_error(exc: ClientError, table: str, option: str) -> CliError:
    """One line for a DynamoDB error on ``table``."""
    if error_code(exc) == "ResourceNotFoundException":
        return CliError(f"table {table!r} not found (check {option}, --outputs or --stack-prefix, and --region)")
    return translate_aws_error(exc, what=f"table {table!r}")


def iter_batches(ddb: Any, batches_table: str) -> Iterator[dict[str, Any]]:
    """Every batch record (control items, whose keys start with ``#``, are skipped)."""
    kwargs: dict[str, Any] = {"TableName": batches_table}
    while True:
        resp = ddb.scan(**kwargs)
        for raw in resp.get("Items", []):
            item = from_item(raw) or {}
            if not str(item.get("batch_id", "#")).startswith("#"):
                yield item
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def get_batch(ddb: Any, batches_table: str, batch_id: str) -> dict[str, Any] | None:
    """One batch record, or None."""
    return from_item(ddb.get_item(TableName=batches_table, Key={"batch_id": {"S": batch_id}}).get("Item"))


def latest_model(ddb: Any, batches_table: str) -> dict[str, Any] | None:
    """The most recently completed of the stored models (one ``#model#<taxonomy hash>`` item per label set)."""
    models: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": batches_table, "FilterExpression": "begins_with(batch_id, :m)",
                              "ExpressionAttributeValues": {":m": {"S": MODEL_CONTROL_PREFIX}}}
    while True:
        resp = ddb.scan(**kwargs)
        models.extend(from_item(raw) or {} for raw in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return max(models, key=lambda m: str(m.get("completed_at", "")), default=None)


def next_due(ddb: Any, photos_table: str) -> str | None:
    """When the first photo backing off is due again (the sparse ``by_due`` index), or None."""
    resp = ddb.query(TableName=photos_table, IndexName=BY_DUE_INDEX, Limit=1, ScanIndexForward=True,
                     KeyConditionExpression="#s = :b", ExpressionAttributeNames={"#s": "status"},
                     ExpressionAttributeValues={":b": {"S": BACKOFF}})
    items = resp.get("Items", [])
    return str(items[0]["due_at"]["S"]) if items else None


def control_items(ddb: Any, batches_table: str) -> dict[str, dict[str, Any]]:
    """``#pending-counter`` and ``#dispatch-lease`` (those that exist), by key."""
    keys = [PENDING_COUNTER_KEY, DISPATCH_LEASE_KEY]
    request: dict[str, Any] = {batches_table: {"Keys": [{"batch_id": {"S": k}} for k in keys]}}
    found: dict[str, dict[str, Any]] = {}
    while request:
        resp = ddb.batch_get_item(RequestItems=request)
        for raw in resp.get("Responses", {}).get(batches_table, []):
            item = from_item(raw) or {}
            found[item["batch_id"]] = item
        request = resp.get("UnprocessedKeys") or {}
    return found


def _age(now: datetime, when: Any) -> float | None:
    if not isinstance(when, str) or not when:
        return None
    try:
        return max(0.0, (now - parse_iso(when)).total_seconds())
    except ValueError:
        return None


def _batch_view(b: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "batch_id": b["batch_id"], "status": b.get("status"), "kind": b.get("kind"),
        "photo_count": b.get("photo_count"), "created_at": b.get("created_at"), "updated_at": b.get("updated_at"),
        "age_seconds": _age(now, b.get("created_at")), "execution_arn": b.get("execution_arn"),
        "job_name": b.get("job_name"), "review_job_name": b.get("review_job_name"),
    }


def gather_status(ddb: Any, *, photos_table: str, batches_table: str, now: datetime,
                  failures: int = 5) -> dict[str, Any]:
    """Everything ``fieldlabel status`` shows, as one JSON-able dict.

    Args:
        ddb: boto3 DynamoDB client.
        photos_table: photos table name.
        batches_table: batches table name.
        now: the current time (ages are computed against it).
        failures: how many of the most recent FAILED batches to list.
    """
    stats = pending_stats(ddb, photos_table, now)
    counts = {s: (stats.count if s == PENDING else count_status(ddb, photos_table, s))
              for s in COUNTED_PHOTO_STATUSES}
    batches = list(iter_batches(ddb, batches_table))
    running = sorted((b for b in batches if b.get("status") in ACTIVE_STATUSES),
                     key=lambda b: str(b.get("created_at", "")))
    failed = sorted((b for b in batches if b.get("status") == FAILED),
                    key=lambda b: str(b.get("updated_at", "")), reverse=True)
    published = sorted((b for b in batches if b.get("status") == PUBLISHED),
                       key=lambda b: str(b.get("updated_at", "")))
    control = control_items(ddb, batches_table)
    lease = control.get(DISPATCH_LEASE_KEY)
    lease_expires = float(lease["expires_at"]) if lease and "expires_at" in lease else None
    model = latest_model(ddb, batches_table)
    parked = sorted((b for b in batches if b.get("status") == BATCH_PARKED
                     or (b.get("status") == PUBLISHED and b.get("parked_step"))),
                    key=lambda b: str(b.get("parked_at", "")))
    last = published[-1] if published else None
    return {
        "pending": {"count": stats.count, "oldest_registered_at": stats.oldest_registered_at,
                    "oldest_age_seconds": round(stats.oldest_age_seconds, 1),
                    "counter": (control.get(PENDING_COUNTER_KEY) or {}).get("pending")},
        "photos": counts,
        "backoff_next_due_at": next_due(ddb, photos_table) if counts[BACKOFF] else None,
        "running": [_batch_view(b, now) for b in running],
        "parked": [{**_batch_view(b, now), "parked_step": b.get("parked_step"), "park_reason": b.get("park_reason"),
                    "parked_at": b.get("parked_at")} for b in parked],
        "failures": [{**_batch_view(b, now), "failure_reason": b.get("failure_reason")} for b in failed[:failures]],
        "failed_batches": len(failed),
        "dispatcher": {
            "running": lease_expires is not None and lease_expires > now.timestamp(),
            "lease_expires_at": datetime.fromtimestamp(lease_expires, now.tzinfo).isoformat()
            if lease_expires is not None else None,
        },
        "model": None if not model else {k: model.get(k) for k in ("model_arn", "job_name", "source_batch_id",
                                                                      "completed_at", "taxonomy_hash")},
        "published": {
            "batches": len(published),
            "last": None if not last else {"batch_id": last["batch_id"], "dataset_version": last.get("dataset_version"),
                                           "published_at": last.get("updated_at")},
        },
    }


def describe_jobs(sagemaker: Any, running: list[dict[str, Any]]) -> None:
    """Add each running batch's labeling-job progress (``DescribeLabelingJob``) in place; errors become a note."""
    for b in running:
        name = b.get("review_job_name") if b.get("status") == "REVIEWING" else b.get("job_name")
        if not name:
            continue
        try:
            job = sagemaker.describe_labeling_job(LabelingJobName=name)
        except ClientError as exc:
            b["job"] = {"name": name, "error": f"{error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"}
            continue
        b["job"] = {"name": name, "status": job.get("LabelingJobStatus"),
                    "counters": job.get("LabelCounters") or {}, "failure_reason": job.get("FailureReason")}


def human_age(seconds: float | None) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``40 s``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


def render_status(data: dict[str, Any]) -> str:
    """The human rendering of :func:`gather_status`."""
    p = data["pending"]
    c = data["photos"]
    lines = []
    if p["count"]:
        lines.append(f"Pending:    {p['count']:,} photo(s), oldest registered {p['oldest_registered_at']} "
                     f"({human_age(p['oldest_age_seconds'])} ago)")
    else:
        lines.append("Pending:    none")
    lines.append(f"Photos:     {c[PENDING]:,} pending, {c[BATCHED]:,} in batches, {c[LABELED]:,} labeled, "
                 f"{c[PARKED]:,} parked, {c[QUARANTINED]:,} quarantined")
    if c[BACKOFF]:
        lines.append(f"Backing off: {c[BACKOFF]:,} photo(s) released after a failed attempt, pending again from "
                     f"{data.get('backoff_next_due_at') or '-'}")
    d = data["dispatcher"]
    state = f"running now (lease until {d['lease_expires_at']})" if d["running"] else "idle"
    lines.append(f"Dispatcher: {state}")
    m = data["model"]
    lines.append(f"Model:      {m['model_arn']} (from batch {m['source_batch_id']}, {m['completed_at']})" if m
                 else "Model:      none yet (the next automated job starts from scratch)")
    pub = data["published"]
    if pub["last"]:
        lines.append(f"Published:  {pub['batches']} batch(es); latest {pub['last']['batch_id']} as dataset "
                     f"{pub['last']['dataset_version']} ({pub['last']['published_at']})")
    else:
        lines.append("Published:  no batch yet")
    lines.append("")
    running = data["running"]
    if running:
        lines.append(f"Running batches ({len(running)}):")
        header = f"  {'BATCH':<28} {'STATUS':<10} {'KIND':<10} {'PHOTOS':>7}  {'AGE':<10} JOB"
        lines.append(header)
        for b in running:
            job = b.get("review_job_name") if b["status"] == "REVIEWING" else b.get("job_name")
            progress = ""
            if "job" in b:
                j = b["job"]
                if "error" in j:
                    progress = f"  [{j['error']}]"
                else:
                    k = j.get("counters") or {}
                    progress = (f"  [{j.get('status')}: {k.get('TotalLabeled', 0)} labeled "
                                f"({k.get('HumanLabeled', 0)} human, {k.get('MachineLabeled', 0)} machine), "
                                f"{k.get('Unlabeled', 0)} to go]")
            lines.append(f"  {b['batch_id']:<28} {str(b['status']):<10} {str(b['kind'] or '-'):<10} "
                         f"{b['photo_count'] or 0:>7,}  {human_age(b['age_seconds']):<10} {job or '-'}{progress}")
    else:
        lines.append("Running batches: none")
    parked_batches = data.get("parked") or []
    if parked_batches:
        lines.append("")
        lines.append(f"Parked batches ({len(parked_batches)}), labels kept; resume with `fieldlabel resume BATCH_ID`:")
        for b in parked_batches:
            lines.append(f"  {b['batch_id']}  at {b.get('parked_step')}  since {b.get('parked_at') or '-'}  "
                         f"{b.get('park_reason') or 'no reason recorded'}")
    failures = data["failures"]
    if failures:
        lines.append("")
        lines.append(f"Last failures ({len(failures)} of {data['failed_batches']}):")
        for b in failures:
            lines.append(f"  {b['batch_id']}  {b['updated_at']}  {b['photo_count'] or 0:,} photo(s)  "
                         f"{b.get('failure_reason') or 'no reason recorded'}")
    else:
        lines.append("Failures: none")
    return "\n".join(lines)
