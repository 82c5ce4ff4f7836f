"""Dispatch: decide whether a batch is due, claim pending photos for it, start the labeling workflow, repair crashes.

Race safety (docs/intake.md): one dispatcher at a time holds the ``#dispatch-lease`` item; independently of the lease,
each photo moves PENDING -> BATCHED only under the condition ``status = PENDING``, and every claim transaction also
checks that the batch record is still ``CLAIMING`` and owned by the claimer, so a dispatcher whose batch was taken over
by recovery cannot add photos to it. A photo can therefore never end up in two batches.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.common.clock import iso, parse_iso
from fieldlabel.common.ids import new_batch_id
from fieldlabel.intake.settings import AL_MIN_OBJECTS, DispatchSettings
from fieldlabel.registry.control import acquire_lease, add_pending, release_lease, set_pending
from fieldlabel.registry.model import (
    BATCHED,
    BY_BATCH_INDEX,
    BY_STATUS_INDEX,
    CLAIMING,
    FAILED,
    KIND_AUTOMATED,
    KIND_HUMAN_ONLY,
    PARKED,
    PENDING,
    STARTED,
    error_code,
    from_item,
)
from fieldlabel.registry.photos import count_status

_TRANSACT_LIMIT = 100
_TRANSACT_RETRIES = 3
_LEASE_RENEW_EVERY = 100  # claim transactions between lease renewals


# --- decision ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingStats:
    """The pending pool as counted from the ``by_status`` index."""

    count: int
    oldest_registered_at: str | None
    oldest_age_seconds: float


@dataclass(frozen=True)
class Decision:
    """Whether a batch is due now, of which kind, with up to how many photos, and why."""

    due: bool
    reason: str
    kind: str | None = None
    target: int = 0


def decide(stats: PendingStats, settings: DispatchSettings, *, force: bool = False) -> Decision:
    """Decide whether a batch is due: pending >= ``batch_size``, or the oldest pending photo older than ``max_wait``.

    The kind is ``automated`` when automated labeling is enabled and the batch reaches Ground Truth's 1,250-object
    minimum; a smaller batch runs ``human_only`` or waits, per ``small_batch_policy``. With automated labeling off,
    every batch is ``human_only``.

    ``force`` (an operator's ``fieldlabel flush``) makes whatever is pending due now, whatever its size or age; below
    the automated-labeling minimum it runs ``human_only`` even under the ``wait`` policy (the operator confirmed that).
    """
    if stats.count <= 0:
        return Decision(False, "no pending photos")
    if force:
        target = min(stats.count, settings.max_batch_size)
        kind = KIND_AUTOMATED if settings.automated_labeling and target >= AL_MIN_OBJECTS else KIND_HUMAN_ONLY
        return Decision(True, "forced", kind, target)
    by_count = stats.count >= settings.batch_size
    by_age = stats.oldest_age_seconds >= settings.max_wait_seconds
    if not (by_count or by_age):
        return Decision(False, f"{stats.count} pending < {settings.batch_size}, oldest {stats.oldest_age_seconds:.0f}s")
    target = min(stats.count, settings.max_batch_size)
    reason = "count" if by_count else "age"
    if not settings.automated_labeling:
        return Decision(True, reason, KIND_HUMAN_ONLY, target)
    if target >= AL_MIN_OBJECTS:
        return Decision(True, reason, KIND_AUTOMATED, target)
    if settings.small_batch_policy == "human_only":
        return Decision(True, reason, KIND_HUMAN_ONLY, target)
    return Decision(False, f"{target} pending < automated-labeling minimum {AL_MIN_OBJECTS}; policy is wait")


def pending_stats(ddb: Any, photos_table: str, now: datetime) -> PendingStats:
    """Count pending photos and find the oldest, from the ``by_status`` index (keys only, paginated COUNT)."""
    count = count_status(ddb, photos_table, PENDING)
    oldest: str | None = None
    if count:
        resp = ddb.query(
            TableName=photos_table, IndexName=BY_STATUS_INDEX, Limit=1, ScanIndexForward=True,
            KeyConditionExpression="#s = :p", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":p": {"S": PENDING}},
        )
        items = resp.get("Items", [])
        oldest = items[0]["registered_at"]["S"] if items else None
    age = max(0.0, (now - parse_iso(oldest)).total_seconds()) if oldest else 0.0
    return PendingStats(count, oldest, age)


def oldest_pending_ids(ddb: Any, photos_table: str, limit: int) -> list[str]:
    """Up to ``limit`` pending photo ids, oldest registration first."""
    ids: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_STATUS_INDEX, "ScanIndexForward": True,
        "KeyConditionExpression": "#s = :p", "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":p": {"S": PENDING}},
    }
    while len(ids) < limit:
        resp = ddb.query(**kwargs)
        ids.extend(item["photo_id"]["S"] for item in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return ids[:limit]


# --- conditional bulk updates --------------------------------------------------------------------------------------


@dataclass
class BulkResult:
    """Outcome of :func:`conditional_bulk_update`."""

    done: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fenced: bool = False
    requests: int = 0


def conditional_bulk_update(
    ddb: Any,
    table: str,
    updates: list[tuple[str, dict[str, Any]]],
    *,
    fence: dict[str, Any] | None = None,
    fence_ok: Callable[[], bool] | None = None,
) -> BulkResult:
    """Apply conditional photo updates in TransactWriteItems of up to 100 items (99 with a fence).

    Args:
        ddb: boto3 DynamoDB client.
        table: the photos table.
        updates: ``(photo_id, Update-without-TableName-and-Key)`` pairs, each with its own ConditionExpression.
        fence: an optional ``ConditionCheck`` (full TransactItem body) included in every transaction; when it fails,
            processing stops with ``fenced=True``.
        fence_ok: re-checks the fence before single-item fallbacks (which cannot include it).

    A cancelled transaction is retried without the items whose condition failed (they are ``rejected``); after
    repeated cancellations for other reasons (conflicts), the remaining items fall back to single conditional updates.
    """
    result = BulkResult()
    size = _TRANSACT_LIMIT - (1 if fence else 0)
    for start in range(0, len(updates), size):
        chunk = updates[start : start + size]
        for _attempt in range(_TRANSACT_RETRIES):
            if not chunk:
                break
            items = ([{"ConditionCheck": fence}] if fence else []) + [
                {"Update": {"TableName": table, "Key": {"photo_id": {"S": pid}}, **upd}} for pid, upd in chunk
            ]
            try:
                ddb.transact_write_items(TransactItems=items)
                result.requests += 1
                result.done.extend(pid for pid, _ in chunk)
                chunk = []
                break
            except ClientError as exc:
                result.requests += 1
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if fence and reasons and reasons[0] == "ConditionalCheckFailed":
                    result.fenced = True
                    return result
                photo_reasons = reasons[1:] if fence else reasons
                if len(photo_reasons) != len(chunk):
                    break  # no usable reasons: fall back to single updates
                keep = []
                for (pid, upd), code in zip(chunk, photo_reasons, strict=True):
                    if code == "ConditionalCheckFailed":
                        result.rejected.append(pid)
                    else:
                        keep.append((pid, upd))
                chunk = keep
        if chunk:
            if fence_ok is not None and not fence_ok():
                result.fenced = True
                return result
            for pid, upd in chunk:
                try:
                    ddb.update_item(TableName=table, Key={"photo_id": {"S": pid}}, **upd)
                    result.done.append(pid)
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise
                    result.rejected.append(pid)
                finally:
                    result.requests += 1
    return result


# --- batch records -----------------------------------------------------------------------------------------------


def _batch_key(batch_id: str) -> dict[str, Any]:
    return {"batch_id": {"S": batch_id}}


def get_batch(ddb: Any, batches_table: str, batch_id: str) -> dict[str, Any] | None:
    """One batch record (strongly consistent), or None."""
    return from_item(ddb.get_item(TableName=batches_table, Key=_batch_key(batch_id), ConsistentRead=True).get("Item"))


def _owner_fence(batches_table: str, batch_id: str, owner: str) -> dict[str, Any]:
    return {
        "TableName": batches_table, "Key": _batch_key(batch_id),
        "ConditionExpression": "#s = :claiming AND #o = :me",
        "ExpressionAttributeNames": {"#s": "status", "#o": "claim_owner"},
        "ExpressionAttributeValues": {":claiming": {"S": CLAIMING}, ":me": {"S": owner}},
    }


def claim_photos(
    ddb: Any, *, photos_table: str, batches_table: str, batch_id: str, owner: str, photo_ids: list[str],
    now_iso: str, on_chunk: Callable[[], None] | None = None,
) -> BulkResult:
    """Move photos PENDING -> BATCHED for ``batch_id``; each move is conditional and fenced by the batch owner.

    Args:
        on_chunk: called between transactions (the dispatcher renews its lease there).

    Returns:
        Which photos were claimed (``done``), which were already taken (``rejected``), and whether the batch was
        taken over by someone else (``fenced``).
    """
    upd = {
        "UpdateExpression": "SET #s = :batched, #b = :bid, #u = :now",
        "ConditionExpression": "#s = :pending",
        "ExpressionAttributeNames": {"#s": "status", "#b": "batch_id", "#u": "updated_at"},
        "ExpressionAttributeValues": {":batched": {"S": BATCHED}, ":bid": {"S": batch_id}, ":now": {"S": now_iso},
                                      ":pending": {"S": PENDING}},
    }
    fence = _owner_fence(batches_table, batch_id, owner)

    def fence_ok() -> bool:
        rec = get_batch(ddb, batches_table, batch_id) or {}
        return rec.get("status") == CLAIMING and rec.get("claim_owner") == owner

    total = BulkResult()
    step = (_TRANSACT_LIMIT - 1) * _LEASE_RENEW_EVERY
    for start in range(0, len(photo_ids), step):
        part = claim_chunk = photo_ids[start : start + step]
        res = conditional_bulk_update(ddb, photos_table, [(pid, upd) for pid in claim_chunk], fence=fence,
                                      fence_ok=fence_ok)
        total.done += res.done
        total.rejected += res.rejected
        total.requests += res.requests
        if res.fenced:
            total.fenced = True
            break
        if on_chunk is not None and start + len(part) < len(photo_ids):
            on_chunk()
    return total


def execution_input(batch_id: str, photo_count: int, kind: str, attempt: int = 1) -> dict[str, Any]:
    """The labeling workflow's execution input (docs/contracts.md)."""
    return {"batch_id": batch_id, "photo_count": photo_count, "kind": kind, "attempt": attempt}


def execution_name(batch_id: str) -> str:
    """``batch-<batch_id>``: deterministic, so a repeated start is recognised by Step Functions."""
    return f"batch-{batch_id}"


def start_batch(
    ddb: Any, sfn: Any, *, batches_table: str, state_machine_arn: str, batch_id: str, photo_count: int, kind: str,
    now_iso: str,
) -> str:
    """Start the workflow for a claimed batch (``ExecutionAlreadyExists`` counts as started) and mark it STARTED.

    Returns:
        The execution ARN.
    """
    name = execution_name(batch_id)
    try:
        arn = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name,
            input=json.dumps(execution_input(batch_id, photo_count, kind)),
        )["executionArn"]
    except ClientError as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    try:
        ddb.update_item(
            TableName=batches_table, Key=_batch_key(batch_id),
            UpdateExpression="SET #s = :started, execution_name = :n, execution_arn = :a, updated_at = :now",
            ConditionExpression="#s = :claiming",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":started": {"S": STARTED}, ":n": {"S": name}, ":a": {"S": arn},
                                       ":now": {"S": now_iso}, ":claiming": {"S": CLAIMING}},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise  # already past CLAIMING: the workflow moved it on, nothing to do
    return arn


def count_batch_photos(ddb: Any, photos_table: str, batch_id: str) -> int:
    """Photos currently carrying ``batch_id`` (``by_batch`` index, paginated COUNT)."""
    count = 0
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_BATCH_INDEX, "Select": "COUNT",
        "KeyConditionExpression": "batch_id = :b", "ExpressionAttributeValues": {":b": {"S": batch_id}},
    }
    while True:
        resp = ddb.query(**kwargs)
        count += int(resp.get("Count", 0))
        if "LastEvaluatedKey" not in resp:
            return count
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _kind_for(count: int, wanted: str, settings: DispatchSettings) -> str:
    """A batch that ended up below the automated-labeling minimum runs human-only."""
    if not settings.automated_labeling or count < AL_MIN_OBJECTS:
        return KIND_HUMAN_ONLY
    return wanted


# --- one dispatcher run -------------------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What a dispatcher run did."""

    lease: bool = False
    stats: PendingStats | None = None
    decision: Decision | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    photos_claimed: int = 0


def stale_claiming_batches(ddb: Any, batches_table: str, older_than_iso: str) -> list[dict[str, Any]]:
    """Batch records still ``CLAIMING`` whose last update is older than ``older_than_iso`` (a small Scan)."""
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": batches_table, "FilterExpression": "#s = :claiming AND updated_at < :t",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":claiming": {"S": CLAIMING}, ":t": {"S": older_than_iso}},
    }
    while True:
        resp = ddb.scan(**kwargs)
        out.extend(from_item(i) or {} for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return out
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def recover_batch(ddb: Any, sfn: Any, settings: DispatchSettings, record: dict[str, Any], owner: str,
                  now_iso: str) -> str | None:
    """Finish a batch whose dispatcher crashed (or whose start failed): take it over, count it, start it.

    Taking over rewrites ``claim_owner`` under a condition, which fences the old dispatcher out of the batch. An empty
    batch record is deleted. Returns the execution ARN, or None when there was nothing to start.
    """
    batch_id = record["batch_id"]
    try:
        ddb.update_item(
            TableName=settings.batches_table, Key=_batch_key(batch_id),
            UpdateExpression="SET #o = :me, updated_at = :now",
            ConditionExpression="#s = :claiming AND #o = :old",
            ExpressionAttributeNames={"#s": "status", "#o": "claim_owner"},
            ExpressionAttributeValues={":me": {"S": owner}, ":now": {"S": now_iso}, ":claiming": {"S": CLAIMING},
                                       ":old": {"S": str(record.get("claim_owner", ""))}},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return None
        raise
    count = count_batch_photos(ddb, settings.photos_table, batch_id)
    if count == 0:
        ddb.delete_item(TableName=settings.batches_table, Key=_batch_key(batch_id))
        return None
    kind = _kind_for(count, str(record.get("kind", KIND_HUMAN_ONLY)), settings)
    ddb.update_item(
        TableName=settings.batches_table, Key=_batch_key(batch_id),
        UpdateExpression="SET photo_count = :n, kind = :k, updated_at = :now",
        ExpressionAttributeValues={":n": {"N": str(count)}, ":k": {"S": kind}, ":now": {"S": now_iso}},
    )
    return start_batch(ddb, sfn, batches_table=settings.batches_table, state_machine_arn=settings.state_machine_arn,
                       batch_id=batch_id, photo_count=count, kind=kind, now_iso=now_iso)


def dispatch_batch(ddb: Any, sfn: Any, settings: DispatchSettings, decision: Decision, *, owner: str,
                   now: datetime, batch_token: str | None = None,
                   renew: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Claim up to ``decision.target`` pending photos for a new batch and start its workflow.

    Order: batch record (CLAIMING, owned) -> claim transactions -> photo_count/kind -> StartExecution -> STARTED.
    A crash at any point leaves a CLAIMING record that :func:`recover_batch` finishes after the grace period.

    Returns:
        ``{batch_id, photo_count, kind, execution_arn}``, or None when nothing could be claimed.
    """
    now_iso = iso(now)
    batch_id = new_batch_id(now, batch_token)
    kind = decision.kind or KIND_HUMAN_ONLY
    ddb.put_item(
        TableName=settings.batches_table,
        Item={"batch_id": {"S": batch_id}, "status": {"S": CLAIMING}, "kind": {"S": kind},
              "claim_owner": {"S": owner}, "photo_count": {"N": "0"}, "created_at": {"S": now_iso},
              "updated_at": {"S": now_iso}},
        ConditionExpression="attribute_not_exists(batch_id)",
    )
    ids = oldest_pending_ids(ddb, settings.photos_table, decision.target)
    res = claim_photos(ddb, photos_table=settings.photos_table, batches_table=settings.batches_table,
                       batch_id=batch_id, owner=owner, photo_ids=ids, now_iso=now_iso, on_chunk=renew)
    if res.fenced:
        return None
    count = len(res.done)
    if count == 0:
        ddb.delete_item(TableName=settings.batches_table, Key=_batch_key(batch_id),
                        ConditionExpression="claim_owner = :me", ExpressionAttributeValues={":me": {"S": owner}})
        return None
    kind = _kind_for(count, kind, settings)
    ddb.update_item(
        TableName=settings.batches_table, Key=_batch_key(batch_id),
        UpdateExpression="SET photo_count = :n, kind = :k, claimed_at = :now, updated_at = :now",
        ConditionExpression="#s = :claiming AND claim_owner = :me",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":n": {"N": str(count)}, ":k": {"S": kind}, ":now": {"S": now_iso},
                                   ":claiming": {"S": CLAIMING}, ":me": {"S": owner}},
    )
    arn = start_batch(ddb, sfn, batches_table=settings.batches_table, state_machine_arn=settings.state_machine_arn,
                      batch_id=batch_id, photo_count=count, kind=kind, now_iso=now_iso)
    try:
        add_pending(ddb, settings.batches_table, -count, now_iso)
    except ClientError:
        pass  # advisory counter; the next run recounts
    return {"batch_id": batch_id, "photo_count": count, "kind": kind, "execution_arn": arn}


def run_dispatch(
    *, ddb: Any, sfn: Any, settings: DispatchSettings, now: datetime, owner: str | None = None,
    batch_tokens: Iterable[str] | None = None, time_left: Callable[[], float] | None = None, force: bool = False,
) -> DispatchReport:
    """One dispatcher run: lease, repair stale claims, count, decide, claim and start (repeat while due by count).

    Args:
        ddb: boto3 DynamoDB client.
        sfn: boto3 Step Functions client.
        settings: dispatch settings.
        now: the current time (also used for lease expiry and the recovery grace period).
        owner: this run's identity in the lease and batch records (random when omitted).
        batch_tokens: fixed 8-hex tokens for the batch ids (tests), random when omitted.
        time_left: seconds left in the invocation; no new batch is started with less than a minute left.
        force: start one batch of whatever is pending now (``fieldlabel flush``), see :func:`decide`.
    """
    owner = owner or uuid.uuid4().hex
    tokens = iter(batch_tokens) if batch_tokens is not None else None
    report = DispatchReport()
    now_epoch = now.timestamp()
    if not acquire_lease(ddb, settings.batches_table, owner, now_epoch, settings.lease_seconds):
        return report
    report.lease = True
    started = time.monotonic()

    def renew() -> None:
        # `now` is the run's start (injected for tests); the lease must run from the real current time
        acquire_lease(ddb, settings.batches_table, owner, now_epoch + (time.monotonic() - started),
                      settings.lease_seconds)

    try:
        cutoff = iso(now - timedelta(seconds=settings.claim_grace_seconds))
        for record in stale_claiming_batches(ddb, settings.batches_table, cutoff):
            if recover_batch(ddb, sfn, settings, record, owner, iso(now)) is not None:
                report.recovered.append(record["batch_id"])
        for _ in range(settings.max_batches_per_run):
            stats = pending_stats(ddb, settings.photos_table, now)
            report.stats = stats
            set_pending(ddb, settings.batches_table, stats.count, iso(now))
            decision = decide(stats, settings, force=force)
            report.decision = decision
            if not decision.due or (time_left is not None and time_left() < 60):
                break
            token = next(tokens) if tokens is not None else None
            batch = dispatch_batch(ddb, sfn, settings, decision, owner=owner, now=now, batch_token=token,
                                   renew=renew)
            if batch is None:
                break
            report.batches.append(batch)
            report.photos_claimed += batch["photo_count"]
            if decision.reason != "count":
                break
        if report.batches:
            # report the pool as the run leaves it, which is what the PendingPhotos alarm should see
            report.stats = pending_stats(ddb, settings.photos_table, now)
            set_pending(ddb, settings.batches_table, report.stats.count, iso(now))
    finally:
        release_lease(ddb, settings.batches_table, owner)
    return report


# --- release after a failed labeling run ----------------------------------------------------------------------------


@dataclass
class ReleaseReport:
    """What :func:`release_batch` did."""

    batch_id: str
    released: int = 0
    parked: int = 0


def release_batch(
    ddb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int, now: datetime,
) -> ReleaseReport:
    """Put a failed batch's photos back in the pending pool and mark the batch FAILED; safe to call again.

    :func:`release_batch_photos` does the photos; this adds the batch's ``FAILED`` status and ``failure_reason``.

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors; ``ConditionalCheckFailedException`` when there is no
            batch record ``batch_id``.
    """
    report = release_batch_photos(ddb, photos_table=photos_table, batches_table=batches_table, batch_id=batch_id,
                                  reason=reason, max_attempts=max_attempts, now=now)
    ddb.update_item(
        TableName=batches_table, Key=_batch_key(batch_id),
        UpdateExpression="SET #s = :failed, failure_reason = :r, updated_at = :now",
        ConditionExpression="attribute_exists(batch_id)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": FAILED}, ":r": {"S": reason}, ":now": {"S": iso(now)}},
    )
    return report


def release_batch_photos(
    ddb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int, now: datetime,
) -> ReleaseReport:
    """Put the photos still ``BATCHED`` in ``batch_id`` back in the pending pool; the batch record is not changed.

    Used alone for the photos a finished labeling job could not label (the batch goes on), and by
    :func:`release_batch` for a failed batch.

    Each photo still ``BATCHED`` in this batch gets ``attempts + 1``; it goes back to ``PENDING`` (its
    ``registered_at`` is kept, so it is claimed first next time), or to ``PARKED`` with ``park_reason`` once
    ``attempts`` reaches ``max_attempts``. Its ``batch_id`` moves to ``last_batch_id``. Photos that already left the
    batch (labeled, or released by an earlier call) are untouched, so a repeated call changes nothing.

    Args:
        ddb: boto3 DynamoDB client.
        photos_table: photos table name.
        batches_table: batches table name.
        batch_id: the failed batch.
        reason: why it failed (stored as the batch's ``failure_reason`` and parked photos' ``park_reason``).
        max_attempts: failed labeling attempts after which a photo is parked instead of retried.
        now: the current time.

    Returns:
        How many photos were released to PENDING and how many parked.

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors.
    """
    now_iso = iso(now)
    photos: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_BATCH_INDEX,
        "KeyConditionExpression": "batch_id = :b", "ExpressionAttributeValues": {":b": {"S": batch_id}},
        "ProjectionExpression": "photo_id, #s, attempts", "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        resp = ddb.query(**kwargs)
        photos.extend(from_item(i) or {} for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    updates: list[tuple[str, dict[str, Any]]] = []
    parked_ids: set[str] = set()
    for photo in photos:
        if photo.get("status") != BATCHED:
            continue
        attempts = int(photo.get("attempts") or 0)
        new_status = PARKED if attempts + 1 >= max_attempts else PENDING
        if new_status == PARKED:
            parked_ids.add(photo["photo_id"])
        updates.append((photo["photo_id"], {
            "UpdateExpression": "SET #s = :new, attempts = :a, last_batch_id = :b, updated_at = :now"
                                + (", park_reason = :r" if new_status == PARKED else "") + " REMOVE batch_id",
            "ConditionExpression": "#s = :batched AND batch_id = :b AND "
                                   + ("attempts = :old" if "attempts" in photo else "attribute_not_exists(attempts)"),
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":new": {"S": new_status}, ":a": {"N": str(attempts + 1)}, ":b": {"S": batch_id},
                ":now": {"S": now_iso}, ":batched": {"S": BATCHED},
                **({":old": {"N": str(attempts)}} if "attempts" in photo else {}),
                **({":r": {"S": reason}} if new_status == PARKED else {}),
            },
        }))
    res = conditional_bulk_update(ddb, photos_table, updates)
    report = ReleaseReport(batch_id)
    for pid in res.done:
        if pid in parked_ids:
            report.parked += 1
        else:
            report.released += 1
    if report.released:
        try:
            add_pending(ddb, batches_table, report.released, now_iso)
        except ClientError:
            pass  # advisory counter; the next dispatcher run recounts
    return report
