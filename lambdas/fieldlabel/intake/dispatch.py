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
from typing import Any, Protocol

from botocore.exceptions import ClientError

from fieldlabel.common.clock import iso, parse_iso
from fieldlabel.common.ids import new_batch_id
from fieldlabel.intake.settings import AL_MIN_OBJECTS, DispatchSettings
from fieldlabel.registry.control import acquire_lease, add_pending, batch_get, release_lease, set_pending
from fieldlabel.registry.model import (
    BACKOFF,
    BATCHED,
    BY_BATCH_INDEX,
    BY_DUE_INDEX,
    BY_STATUS_INDEX,
    CLAIMING,
    FAILED,
    KIND_AUTOMATED,
    KIND_HUMAN_ONLY,
    NO_LABELING_COPY,
    PARKED,
    PENDING,
    PUBLISHED,
    QUARANTINED,
    STARTED,
    error_code,
    from_item,
    to_attr,
)
from fieldlabel.registry.photos import count_status

_TRANSACT_LIMIT = 100
_TRANSACT_RETRIES = 3
_LEASE_RENEW_EVERY = 100  # claim transactions between lease renewals
SWEEP_CURSOR_KEY = "#sweep-cursor"


class LeaseLostError(RuntimeError):
    """Another dispatcher took the ``#dispatch-lease`` over (ours expired): this run must stop at once."""


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
) -> BulkResult:
    """Apply conditional photo updates in TransactWriteItems of up to 100 items (99 with a fence).

    Args:
        ddb: boto3 DynamoDB client.
        table: the photos table.
        updates: ``(photo_id, Update-without-TableName-and-Key)`` pairs, each with its own ConditionExpression.
        fence: an optional ``ConditionCheck`` (full TransactItem body) included in every transaction; when it fails,
            processing stops with ``fenced=True``.

    A cancelled transaction is retried without the items whose condition failed (they are ``rejected``); after
    repeated cancellations for other reasons (conflicts), the remaining items fall back to one request per item.
    With a fence, each of those is a two-item transaction (the fence and the update), so ownership is checked
    atomically with every single update, not once before the fallback.
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
        for pid, upd in chunk:
            outcome = _single_update(ddb, table, pid, upd, fence)
            result.requests += 1
            if outcome == "fenced":
                result.fenced = True
                return result
            (result.done if outcome == "done" else result.rejected).append(pid)
    return result


def _single_update(ddb: Any, table: str, pid: str, upd: dict[str, Any], fence: dict[str, Any] | None) -> str:
    """One conditional update, fenced when ``fence`` is given: ``"done"``, ``"rejected"`` or ``"fenced"``."""
    update = {"TableName": table, "Key": {"photo_id": {"S": pid}}, **upd}
    if fence is None:
        try:
            ddb.update_item(**update)
            return "done"
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return "rejected"
    for attempt in range(_TRANSACT_RETRIES):
        try:
            ddb.transact_write_items(TransactItems=[{"ConditionCheck": fence}, {"Update": update}])
            return "done"
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
            if codes and codes[0] == "ConditionalCheckFailed":
                return "fenced"
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return "rejected"
            if attempt == _TRANSACT_RETRIES - 1:
                raise  # still conflicting: the run fails, recovery finishes the batch later
    raise AssertionError("unreachable: the last attempt returns or raises")


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
    total = BulkResult()
    step = (_TRANSACT_LIMIT - 1) * _LEASE_RENEW_EVERY
    for start in range(0, len(photo_ids), step):
        part = claim_chunk = photo_ids[start : start + step]
        res = conditional_bulk_update(ddb, photos_table, [(pid, upd) for pid in claim_chunk], fence=fence)
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
    promoted: int = 0
    swept: SweepReport | None = None
    lease_lost: bool = False


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

    Taking over rewrites ``claim_owner`` under a condition, which fences the old dispatcher out of the batch. The
    photos are counted on the ``by_batch`` index, which may lag behind the claim: a count of zero therefore never
    deletes the record (a photo the index has not shown yet would be left BATCHED in a batch that no longer exists).
    The batch is marked FAILED instead, and the stray sweep (:func:`sweep_strays`) returns any photo it did claim.
    Returns the execution ARN, or None when there was nothing to start.
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
        try:
            ddb.update_item(
                TableName=settings.batches_table, Key=_batch_key(batch_id),
                UpdateExpression="SET #s = :failed, failure_reason = :r, updated_at = :now",
                ConditionExpression="#s = :claiming AND #o = :me",
                ExpressionAttributeNames={"#s": "status", "#o": "claim_owner"},
                ExpressionAttributeValues={":failed": {"S": FAILED}, ":claiming": {"S": CLAIMING},
                                           ":me": {"S": owner}, ":now": {"S": now_iso},
                                           ":r": {"S": "recovery found no claimed photo (by_batch index); "
                                                       "the stray sweep returns any it missed"}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
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
        # `now` is the run's start (injected for tests); the lease must run from the real current time. A refused
        # renewal means another dispatcher holds the lease now: stop before doing anything else.
        if not acquire_lease(ddb, settings.batches_table, owner, now_epoch + (time.monotonic() - started),
                             settings.lease_seconds):
            raise LeaseLostError(f"dispatch lease taken over while run {owner} was working")

    try:
        cutoff = iso(now - timedelta(seconds=settings.claim_grace_seconds))
        for record in stale_claiming_batches(ddb, settings.batches_table, cutoff):
            if recover_batch(ddb, sfn, settings, record, owner, iso(now)) is not None:
                report.recovered.append(record["batch_id"])
        renew()
        report.promoted = promote_due_photos(ddb, settings.photos_table, now)
        report.swept = sweep_strays(ddb, settings, now)
        for _ in range(settings.max_batches_per_run):
            renew()
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
    except LeaseLostError:
        # The batch being claimed (if any) stays CLAIMING under our name; the new lease holder's recovery takes it
        # over after the grace period. Nothing else is written by this run.
        report.lease_lost = True
    finally:
        release_lease(ddb, settings.batches_table, owner)
    return report


# --- back-off: released photos wait before they are due again ------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """How long a released photo waits before it is PENDING again: ``base * 2^(attempts - 1)``, at most ``cap``.

    ``base_seconds = 0`` switches the back-off off (released photos are PENDING at once).
    """

    base_seconds: int = 3600
    max_seconds: int = 86_400

    def delay_seconds(self, attempts: int) -> int:
        """The wait after the ``attempts``-th failed attempt (1 for the first)."""
        if self.base_seconds <= 0:
            return 0
        return int(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


def backoff_of(settings: DispatchSettings) -> Backoff:
    """The back-off configured for the dispatcher (and the release callers)."""
    return Backoff(settings.retry_backoff_seconds, settings.retry_backoff_max_seconds)


def promote_due_photos(ddb: Any, photos_table: str, now: datetime, *, limit: int = 100_000) -> int:
    """Move photos whose back-off is over from BACKOFF to PENDING; returns how many.

    Reads the sparse ``by_due`` index (only photos backing off carry ``due_at``); each move is conditional on the
    base item (``status = BACKOFF AND due_at <= now``), so a lagging index read cannot promote a photo early.
    """
    now_iso = iso(now)
    ids: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_DUE_INDEX,
        "KeyConditionExpression": "#s = :b AND due_at <= :now", "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":b": {"S": BACKOFF}, ":now": {"S": now_iso}},
    }
    while len(ids) < limit:
        resp = ddb.query(**kwargs)
        ids.extend(item["photo_id"]["S"] for item in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    upd = {
        "UpdateExpression": "SET #s = :pending, updated_at = :now REMOVE due_at",
        "ConditionExpression": "#s = :backoff AND due_at <= :now",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":pending": {"S": PENDING}, ":backoff": {"S": BACKOFF},
                                      ":now": {"S": now_iso}},
    }
    res = conditional_bulk_update(ddb, photos_table, [(pid, upd) for pid in ids[:limit]])
    return len(res.done)


# --- the stray sweep: no photo stays BATCHED in a batch that is over ----------------------------------------------


@dataclass
class SweepReport:
    """What :func:`sweep_strays` did in one run."""

    examined: int = 0
    released: int = 0
    parked: int = 0
    quarantined: int = 0
    wrapped: bool = False  # the cursor reached the end of the BATCHED photos and starts over next run
    reasons: dict[str, int] = field(default_factory=dict)


def _read_cursor(ddb: Any, batches_table: str) -> dict[str, Any] | None:
    item = from_item(ddb.get_item(TableName=batches_table, Key=_batch_key(SWEEP_CURSOR_KEY),
                                  ConsistentRead=True).get("Item")) or {}
    key = item.get("last_key")
    return dict(key) if isinstance(key, dict) else None


def _write_cursor(ddb: Any, batches_table: str, last_key: dict[str, Any] | None, now_iso: str) -> None:
    item: dict[str, Any] = {"batch_id": {"S": SWEEP_CURSOR_KEY}, "updated_at": {"S": now_iso}}
    if last_key:
        item["last_key"] = to_attr(last_key)
    ddb.put_item(TableName=batches_table, Item=item)


def sweep_strays(ddb: Any, settings: DispatchSettings, now: datetime) -> SweepReport:
    """Find BATCHED photos whose batch is over (PUBLISHED, FAILED) or missing, and release or quarantine them.

    Bounded per run: up to ``SWEEP_PHOTOS_PER_RUN`` photos from the ``by_status`` index, continuing from a cursor
    (``#sweep-cursor``) so long-running batches at the front never hide strays behind them. The index only proposes
    candidates: each photo and its batch are re-read from the base tables with strongly consistent reads, and a
    photo is acted on only when the base item is still BATCHED in that batch, was last changed longer than the
    claim grace period ago, and the batch record (read consistently) is over or absent. Every update is conditional
    on exactly what was read, so nothing that moved on in between is touched, and nothing is ever deleted.

    A stray of a batch that never started a labeling job goes back without counting an attempt; otherwise the
    release rule applies (attempts + 1, back-off, or PARKED); a photo without a labeling copy is quarantined.
    """
    report = SweepReport()
    limit = settings.sweep_photos_per_run
    if limit <= 0:
        return report
    now_iso = iso(now)
    kwargs: dict[str, Any] = {
        "TableName": settings.photos_table, "IndexName": BY_STATUS_INDEX, "ScanIndexForward": True,
        "KeyConditionExpression": "#s = :b", "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":b": {"S": BATCHED}}, "Limit": min(limit, 1000),
    }
    cursor = _read_cursor(ddb, settings.batches_table)
    if cursor:
        kwargs["ExclusiveStartKey"] = to_attr(cursor)["M"]
    ids: list[str] = []
    last_key: dict[str, Any] | None = None
    while len(ids) < limit:
        resp = ddb.query(**kwargs)
        ids.extend(item["photo_id"]["S"] for item in resp.get("Items", []))
        raw_last = resp.get("LastEvaluatedKey")
        last_key = from_item(raw_last) if raw_last else None
        if not raw_last:
            break
        kwargs["ExclusiveStartKey"] = raw_last
    report.wrapped = last_key is None
    _write_cursor(ddb, settings.batches_table, last_key, now_iso)
    if not ids:
        return report
    report.examined = len(ids)
    photos, _ = batch_get(ddb, {settings.photos_table: ("photo_id", ids)})
    grace_cutoff = iso(now - timedelta(seconds=settings.claim_grace_seconds))
    candidates = [p for p in photos.values()
                  if p.get("status") == BATCHED and p.get("batch_id") and str(p.get("updated_at", "")) < grace_cutoff]
    batch_ids = {str(p["batch_id"]) for p in candidates}
    batches, _ = batch_get(ddb, {settings.batches_table: ("batch_id", batch_ids)}) if batch_ids else ({}, 0)
    updates: list[tuple[str, dict[str, Any]]] = []
    outcomes: dict[str, str] = {}
    backoff = backoff_of(settings)
    for photo in candidates:
        batch_id = str(photo["batch_id"])
        batch = batches.get(batch_id)
        if batch is None:
            reason = f"stray: batch {batch_id} has no record"
        elif batch.get("status") in (FAILED, PUBLISHED):
            reason = f"stray: batch {batch_id} is {batch['status']}"
        else:
            continue  # the batch is still going (or parked for an operator): its photos are its own
        counted = bool(batch and batch.get("job_name"))
        pid, upd, outcome = release_update(photo, batch_id=batch_id, reason=reason,
                                           max_attempts=settings.max_attempts, now=now, backoff=backoff,
                                           count_attempt=counted)
        updates.append((pid, upd))
        outcomes[pid] = outcome
        report.reasons[reason] = report.reasons.get(reason, 0) + 1
    _commit_releases(ddb, photos_table=settings.photos_table, batches_table=settings.batches_table,
                     updates=updates, outcomes=outcomes, report=report, now_iso=now_iso)
    return report


# --- release after a failed labeling run ----------------------------------------------------------------------------


@dataclass
class ReleaseReport:
    """What :func:`release_batch` did."""

    batch_id: str
    released: int = 0
    parked: int = 0
    quarantined: int = 0


def release_update(
    photo: dict[str, Any], *, batch_id: str, reason: str, max_attempts: int, now: datetime, backoff: Backoff,
    count_attempt: bool = True,
) -> tuple[str, dict[str, Any], str]:
    """The release rule for one photo still BATCHED in ``batch_id``: ``(photo_id, Update, outcome)``.

    Outcomes: ``quarantined`` (no labeling copy: no job could ever show it; reason ``no_labeling_copy``),
    ``parked`` (``attempts + 1`` reached ``max_attempts``; ``park_reason``), ``backoff`` (``attempts + 1``, due
    again at ``now + backoff(attempts)``), or ``pending`` (no back-off configured, or ``count_attempt`` False: the
    photo was never sent to a labeling job, so the attempt is not held against it).

    The update is conditional on ``status = BATCHED AND batch_id = <batch> AND attempts = <read value>``, so a
    repeated release changes nothing and a photo that moved on is untouched. ``batch_id`` moves to
    ``last_batch_id``.
    """
    pid = str(photo["photo_id"])
    now_iso = iso(now)
    attempts = int(photo.get("attempts") or 0)
    new_attempts = attempts + 1 if count_attempt else attempts
    values: dict[str, Any] = {":b": {"S": batch_id}, ":now": {"S": now_iso}, ":batched": {"S": BATCHED},
                              ":a": {"N": str(new_attempts)}}
    sets = ["attempts = :a", "last_batch_id = :b", "updated_at = :now"]
    if not photo.get("labeling_ref"):
        outcome, status = "quarantined", QUARANTINED
        sets.append("quarantine_reason = :q")
        values[":q"] = {"S": NO_LABELING_COPY}
    elif count_attempt and new_attempts >= max_attempts:
        outcome, status = "parked", PARKED
        sets.append("park_reason = :r")
        values[":r"] = {"S": reason}
    else:
        delay = backoff.delay_seconds(new_attempts) if count_attempt else 0
        if delay > 0:
            outcome, status = "backoff", BACKOFF
            sets.append("due_at = :due")
            values[":due"] = {"S": iso(now + timedelta(seconds=delay))}
        else:
            outcome, status = "pending", PENDING
    values[":new"] = {"S": status}
    if "attempts" in photo:
        values[":old"] = {"N": str(attempts)}
    update = {
        "UpdateExpression": "SET #s = :new, " + ", ".join(sets) + " REMOVE batch_id",
        "ConditionExpression": "#s = :batched AND batch_id = :b AND "
                               + ("attempts = :old" if "attempts" in photo else "attribute_not_exists(attempts)"),
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": values,
    }
    return pid, update, outcome


def release_batch(
    ddb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int, now: datetime,
    backoff: Backoff | None = None,
) -> ReleaseReport:
    """Put a failed batch's photos back in the pool and mark the batch FAILED; safe to call again.

    :func:`release_batch_photos` does the photos; this adds the batch's ``FAILED`` status and ``failure_reason``
    (conditional: the batch exists and is not ``PUBLISHED``; a published batch is never failed).

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors; ``ConditionalCheckFailedException`` when there is no
            batch record ``batch_id`` or it is PUBLISHED.
    """
    report = release_batch_photos(ddb, photos_table=photos_table, batches_table=batches_table, batch_id=batch_id,
                                  reason=reason, max_attempts=max_attempts, now=now, backoff=backoff)
    ddb.update_item(
        TableName=batches_table, Key=_batch_key(batch_id),
        UpdateExpression="SET #s = :failed, failure_reason = :r, updated_at = :now",
        ConditionExpression="attribute_exists(batch_id) AND #s <> :published",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": FAILED}, ":r": {"S": reason}, ":now": {"S": iso(now)},
                                   ":published": {"S": PUBLISHED}},
    )
    return report


def release_batch_photos(
    ddb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int, now: datetime,
    backoff: Backoff | None = None,
) -> ReleaseReport:
    """Put the photos still ``BATCHED`` in ``batch_id`` back in the pool; the batch record is not changed.

    Used alone for the photos a finished labeling job could not label or that were left out of its manifest (the
    batch goes on), and by :func:`release_batch` for a failed batch. Each photo follows :func:`release_update`:
    ``BACKOFF`` until ``now + backoff(attempts)`` (then the dispatcher makes it PENDING again; its ``registered_at``
    is kept, so it is claimed first), ``PARKED`` with ``park_reason`` once ``attempts`` reaches ``max_attempts``, or
    ``QUARANTINED`` (``no_labeling_copy``) when it has no labeling copy. Photos that already left the batch (labeled,
    or released by an earlier call) are untouched, so a repeated call changes nothing.

    Args:
        ddb: boto3 DynamoDB client.
        photos_table: photos table name.
        batches_table: batches table name.
        batch_id: the batch.
        reason: why (stored as the batch's ``failure_reason`` by the caller and parked photos' ``park_reason``).
        max_attempts: failed labeling attempts after which a photo is parked instead of retried.
        now: the current time.
        backoff: the back-off rule; None = :class:`Backoff` defaults.

    Returns:
        How many photos were released, parked and quarantined.

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors.
    """
    backoff = backoff or Backoff()
    now_iso = iso(now)
    photos: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_BATCH_INDEX,
        "KeyConditionExpression": "batch_id = :b", "ExpressionAttributeValues": {":b": {"S": batch_id}},
        "ProjectionExpression": "photo_id, #s, attempts, labeling_ref", "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        resp = ddb.query(**kwargs)
        photos.extend(from_item(i) or {} for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    updates: list[tuple[str, dict[str, Any]]] = []
    outcomes: dict[str, str] = {}
    for photo in photos:
        if photo.get("status") != BATCHED:
            continue
        pid, upd, outcome = release_update(photo, batch_id=batch_id, reason=reason, max_attempts=max_attempts,
                                           now=now, backoff=backoff)
        updates.append((pid, upd))
        outcomes[pid] = outcome
    report = ReleaseReport(batch_id)
    _commit_releases(ddb, photos_table=photos_table, batches_table=batches_table, updates=updates,
                     outcomes=outcomes, report=report, now_iso=now_iso)
    return report


class _ReleaseCounts(Protocol):
    released: int
    parked: int
    quarantined: int


def _commit_releases(ddb: Any, *, photos_table: str, batches_table: str, updates: list[tuple[str, dict[str, Any]]],
                     outcomes: dict[str, str], report: _ReleaseCounts, now_iso: str) -> None:
    """Write the release updates (each conditional on the photo still being where it was read) and count into
    ``report`` what the photos that were written became; the pending counter is advisory (the next run recounts)."""
    res = conditional_bulk_update(ddb, photos_table, updates)
    pending = 0
    for pid in res.done:
        if outcomes[pid] == "parked":
            report.parked += 1
        elif outcomes[pid] == "quarantined":
            report.quarantined += 1
        else:
            report.released += 1
            pending += 1 if outcomes[pid] == "pending" else 0
    if pending:
        try:
            add_pending(ddb, batches_table, pending, now_iso)
        except ClientError:
            pass
