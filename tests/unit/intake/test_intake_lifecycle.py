"""No photo is lost or stuck: the stray sweep (with a lagging index), recovery that never deletes on an index read,
the claim fence on every single update, a lost lease stopping the run, and the back-off of released photos."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fieldlabel.common.clock import iso
from fieldlabel.intake.dispatch import (
    Backoff,
    claim_photos,
    promote_due_photos,
    run_dispatch,
    sweep_strays,
)
from fieldlabel.registry.model import DISPATCH_LEASE_KEY, to_item
from intake_helpers import BATCHES, PHOTOS, dispatch_settings, fast_moto_transactions, make_env
from moto import mock_aws
from test_intake_dispatch import T0, batch_records, photos_by_status, seed_pending

from tests.unit.crash import Crash, CrashAfter

LONG_AGO = iso(T0 - timedelta(days=2))


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


def _photo(env, pid: str, status: str, *, batch_id: str | None = None, updated_at: str = LONG_AGO,
           labeling_ref: bool = True, **extra: Any) -> None:
    item: dict[str, Any] = {"photo_id": pid, "status": status, "registered_at": LONG_AGO, "updated_at": updated_at,
                            "attempts": 0, **extra}
    if batch_id:
        item["batch_id"] = batch_id
    if labeling_ref:
        item["labeling_ref"] = f"s3://intake/labeling-copies/{pid}.jpg"
    env.ddb.put_item(TableName=PHOTOS, Item=to_item(item))


def _batch(env, batch_id: str, status: str, **extra: Any) -> None:
    env.ddb.put_item(TableName=BATCHES, Item=to_item({"batch_id": batch_id, "status": status, **extra}))


def _status(env, pid: str) -> tuple[Any, ...]:
    p = env.photo(pid)
    return p["status"], p.get("attempts"), p.get("batch_id")


class LaggingIndex:
    """A DynamoDB client whose GSI reads lag behind the table: ``stale`` rows are added to (or, for COUNT queries,
    ``hide`` removes rows from) what an index query returns. Base-table reads are exact."""

    def __init__(self, real: Any, *, index: str, stale: list[dict[str, Any]] | None = None,
                 hide_count: bool = False) -> None:
        self.real, self.index, self.stale, self.hide_count = real, index, stale or [], hide_count

    def query(self, **kwargs: Any) -> Any:
        resp = self.real.query(**kwargs)
        if kwargs.get("IndexName") != self.index:
            return resp
        if self.hide_count and kwargs.get("Select") == "COUNT":
            return {**resp, "Count": 0}
        if self.hide_count:
            return {**resp, "Items": []}
        return {**resp, "Items": list(resp.get("Items", [])) + self.stale}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# --- the stray sweep --------------------------------------------------------------------------------------------------


def _stray_world(env) -> dict[str, str]:
    _batch(env, "b-published", "PUBLISHED", job_name="job-p")
    _batch(env, "b-failed", "FAILED", job_name="job-f")
    _batch(env, "b-labeling", "LABELING", job_name="job-l")
    _batch(env, "b-parked", "PARKED", job_name="job-k", parked_step="publish")
    _batch(env, "b-claimed", "FAILED")  # failed before it ever had a job (e.g. recovery found it empty)
    _photo(env, "p-published", "BATCHED", batch_id="b-published")
    _photo(env, "p-failed", "BATCHED", batch_id="b-failed", attempts=2)
    _photo(env, "p-missing", "BATCHED", batch_id="b-gone")
    _photo(env, "p-claimed", "BATCHED", batch_id="b-claimed")
    _photo(env, "p-bare", "BATCHED", batch_id="b-published", labeling_ref=False)
    _photo(env, "p-running", "BATCHED", batch_id="b-labeling")
    _photo(env, "p-parked", "BATCHED", batch_id="b-parked")
    _photo(env, "p-fresh", "BATCHED", batch_id="b-failed", updated_at=iso(T0 - timedelta(seconds=30)))
    _photo(env, "p-labeled", "LABELED", batch_id="b-published", label="quercus-robur")
    return {}


def _assert_swept(env) -> None:
    assert _status(env, "p-published") == ("BACKOFF", 1, None)
    assert env.photo("p-published")["last_batch_id"] == "b-published"
    assert env.photo("p-published")["due_at"] == iso(T0 + timedelta(hours=1))
    assert _status(env, "p-failed") == ("PARKED", 3, None)  # out of attempts (MAX_ATTEMPTS 3)
    assert _status(env, "p-missing") == ("PENDING", 0, None)  # never sent to a job: no attempt counted
    assert _status(env, "p-claimed") == ("PENDING", 0, None)
    assert (env.photo("p-bare")["status"], env.photo("p-bare")["quarantine_reason"]) == (
        "QUARANTINED", "no_labeling_copy")
    # photos of a batch still going, of a parked batch, or changed within the grace period are theirs
    assert _status(env, "p-running") == ("BATCHED", 0, "b-labeling")
    assert _status(env, "p-parked") == ("BATCHED", 0, "b-parked")
    assert _status(env, "p-fresh") == ("BATCHED", 0, "b-failed")
    assert env.photo("p-labeled")["status"] == "LABELED"
    # and no batch record was touched or deleted
    assert {b: r["status"] for b, r in batch_records(env).items()} == {
        "b-published": "PUBLISHED", "b-failed": "FAILED", "b-labeling": "LABELING", "b-parked": "PARKED",
        "b-claimed": "FAILED"}


def test_the_sweep_returns_photos_of_batches_that_are_over_and_nothing_else(env):
    _stray_world(env)
    report = sweep_strays(env.ddb, dispatch_settings(env), T0)
    assert (report.released, report.parked, report.quarantined) == (3, 1, 1)
    assert report.reasons["stray: batch b-gone has no record"] == 1
    _assert_swept(env)


def test_the_sweep_acts_on_the_tables_not_on_a_lagging_index(env):
    # Given an index that still lists photos as BATCHED although the table says otherwise: one is LABELED in a
    # published batch, one was released and claimed again by a running batch, one no longer exists
    _stray_world(env)
    _photo(env, "p-moved", "BATCHED", batch_id="b-labeling")
    stale = [{"photo_id": {"S": pid}, "status": {"S": "BATCHED"}, "registered_at": {"S": LONG_AGO}}
             for pid in ("p-labeled", "p-moved", "p-deleted")]
    lagging = LaggingIndex(env.ddb, index="by_status", stale=stale)
    sweep_strays(lagging, dispatch_settings(env), T0)
    # Then only the table's truth counts: the labeled photo stays labeled, the re-claimed one stays in its batch
    _assert_swept(env)
    assert _status(env, "p-moved") == ("BATCHED", 0, "b-labeling")
    assert env.photo("p-deleted") is None


def test_the_sweep_works_through_the_batched_photos_a_page_per_run(env):
    _stray_world(env)
    settings = dispatch_settings(env, SWEEP_PHOTOS_PER_RUN=3)
    # 8 BATCHED photos: three runs of at most 3 cover them, the third reaches the end and the cursor starts over
    runs = [sweep_strays(env.ddb, settings, T0) for _ in range(3)]
    assert [(r.examined, r.wrapped) for r in runs] == [(3, False), (3, False), (2, True)]
    _assert_swept(env)


def test_the_sweep_survives_a_crash_after_every_write(env):
    _stray_world(env)
    settings = dispatch_settings(env)
    plan = CrashAfter(None)
    sweep_strays(plan.wrap(env.ddb), settings, T0)
    writes = list(plan.writes)
    assert writes == ["put_item", "transact_write_items", "update_item"]  # cursor, releases, pending counter
    for k in range(1, len(writes) + 1):
        # reset the world to before the sweep
        for item in env.ddb.scan(TableName=PHOTOS)["Items"]:
            env.ddb.delete_item(TableName=PHOTOS, Key={"photo_id": item["photo_id"]})
        for item in env.ddb.scan(TableName=BATCHES)["Items"]:
            env.ddb.delete_item(TableName=BATCHES, Key={"batch_id": item["batch_id"]})
        _stray_world(env)
        crash = CrashAfter(k)
        with pytest.raises(Crash):
            sweep_strays(crash.wrap(env.ddb), settings, T0)
        # the next run finishes the job; a cursor saved before the crash starts the next pass from the top
        for _ in range(2):
            sweep_strays(env.ddb, settings, T0)
        _assert_swept(env)


# --- recovery never deletes a batch on an index read ------------------------------------------------------------------


def test_recovery_with_a_lagging_index_keeps_the_batch_and_the_sweep_returns_its_photos(env):
    # Given a dispatcher that claimed 5 photos and died before recording the count (batch CLAIMING)
    ids = seed_pending(env, 5)
    settings = dispatch_settings(env, BATCH_SIZE=5, CLAIM_GRACE_SECONDS=600, MAX_BATCHES_PER_RUN=1)
    plan = CrashAfter(None, operation="transact_write_items")  # right after the claim transaction
    with pytest.raises(Crash):
        run_dispatch(ddb=plan.wrap(env.ddb), sfn=env.sfn, settings=settings, now=T0, owner="crashed",
                     batch_tokens=["0000dead"])
    crashed = "b20261126t060000z-0000dead"
    assert {p["batch_id"] for p in photos_by_status(env)["BATCHED"]} == {crashed}
    # When the next run's by_batch index read still shows no photo in that batch
    later = T0 + timedelta(seconds=601)
    lagging = LaggingIndex(env.ddb, index="by_batch", hide_count=True)
    report = run_dispatch(ddb=lagging, sfn=env.sfn, now=later, owner="next",
                          settings=dispatch_settings(env, BATCH_SIZE=50, CLAIM_GRACE_SECONDS=600))
    # Then the batch record is kept (FAILED, with why), never deleted
    record = batch_records(env)[crashed]
    assert record["status"] == "FAILED" and "index" in record["failure_reason"]
    # and the stray sweep, reading the tables, returns its photos to the pool (no attempt counted: the batch never
    # had a job), so none is left BATCHED in a batch that is over
    assert report.swept is not None and report.swept.released == 5
    statuses = photos_by_status(env)
    assert "BATCHED" not in statuses
    assert {(p["attempts"], p["last_batch_id"]) for p in statuses["PENDING"]} == {(0, crashed)}
    # and the next due run claims them into a new batch
    third = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=dispatch_settings(env, BATCH_SIZE=5),
                         now=T0 + timedelta(seconds=700), owner="third", batch_tokens=["0000beef"])
    assert third.photos_claimed == 5
    assert sorted(p["photo_id"] for p in photos_by_status(env)["BATCHED"]) == ids


# --- the claim fence holds for every single update --------------------------------------------------------------------


class ConflictsThenTakeover:
    """Multi-photo transactions always conflict (forcing the single-update fallback); before the 3rd single update
    another dispatcher's recovery takes the batch over."""

    def __init__(self, real: Any, batch_id: str) -> None:
        self.real, self.batch_id, self.singles = real, batch_id, 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        items = kwargs["TransactItems"]
        if len(items) > 2:
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                               "CancellationReasons": [{"Code": "TransactionConflict"} for _ in items]},
                              "TransactWriteItems")
        self.singles += 1
        if self.singles == 3:
            self.real.update_item(TableName=BATCHES, Key={"batch_id": {"S": self.batch_id}},
                                  UpdateExpression="SET claim_owner = :r",
                                  ExpressionAttributeValues={":r": {"S": "recovery"}})
        return self.real.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_the_single_update_fallback_checks_ownership_with_every_update(env):
    ids = seed_pending(env, 6)
    batch_id = "b20261126t060000z-0000f00d"
    _batch(env, batch_id, "CLAIMING", claim_owner="me")
    client = ConflictsThenTakeover(env.ddb, batch_id)
    res = claim_photos(client, photos_table=PHOTOS, batches_table=BATCHES, batch_id=batch_id, owner="me",
                       photo_ids=ids, now_iso=iso(T0))
    # Two photos were claimed while we owned the batch; the takeover fenced the third and everything after it
    assert res.fenced and len(res.done) == 2 and client.singles == 3
    batched = photos_by_status(env)["BATCHED"]
    assert sorted(p["photo_id"] for p in batched) == sorted(res.done)
    assert len(photos_by_status(env)["PENDING"]) == 4


# --- a lost lease stops the run ---------------------------------------------------------------------------------------


class LeaseThief:
    """After the first batch is started, another dispatcher takes the lease over (ours is treated as expired)."""

    def __init__(self, real: Any) -> None:
        self.real, self.stolen = real, False

    def update_item(self, **kwargs: Any) -> Any:
        out = self.real.update_item(**kwargs)
        if not self.stolen and "execution_arn" in kwargs.get("UpdateExpression", ""):
            self.stolen = True
            self.real.put_item(TableName=BATCHES, Item={
                "batch_id": {"S": DISPATCH_LEASE_KEY}, "owner": {"S": "other"},
                "expires_at": {"N": str(T0.timestamp() + 10_000)}})
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_lost_lease_stops_the_dispatcher_run(env):
    seed_pending(env, 30)
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_BATCH_SIZE=10, MAX_BATCHES_PER_RUN=3)
    client = LeaseThief(env.ddb)
    report = run_dispatch(ddb=client, sfn=env.sfn, settings=settings, now=T0, owner="me")
    # Then the run stopped after its first batch, left the new holder's lease alone, and claimed nothing more
    assert report.lease_lost and len(report.batches) == 1
    assert len(photos_by_status(env)["BATCHED"]) == 10 and len(photos_by_status(env)["PENDING"]) == 20
    lease = env.ddb.get_item(TableName=BATCHES, Key={"batch_id": {"S": DISPATCH_LEASE_KEY}})["Item"]
    assert lease["owner"]["S"] == "other"


# --- back-off ---------------------------------------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_up_to_its_cap():
    rule = Backoff(base_seconds=600, max_seconds=3000)
    assert [rule.delay_seconds(a) for a in (1, 2, 3, 4)] == [600, 1200, 2400, 3000]
    assert Backoff(0, 3000).delay_seconds(5) == 0


def test_released_photos_are_not_due_until_their_backoff_is_over(env):
    # Given 12 photos released by a failed batch half an hour ago (due in 30 min) and 3 due already
    for i in range(12):
        _photo(env, f"w{i:02d}", "BACKOFF", attempts=1, due_at=iso(T0 + timedelta(minutes=30)))
    for i in range(3):
        _photo(env, f"d{i}", "BACKOFF", attempts=2, due_at=iso(T0 - timedelta(minutes=1)))
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_WAIT_SECONDS=60)
    # When the dispatcher runs now: the 3 due photos are pending again, the 12 still backing off are not counted
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0)
    assert report.promoted == 3
    assert report.batches[0]["photo_count"] == 3  # due by age (registered long ago); only the due ones
    statuses = photos_by_status(env)
    assert len(statuses["BACKOFF"]) == 12 and all("due_at" in p for p in statuses["BACKOFF"])
    assert all("due_at" not in p and p["attempts"] == 2 for p in statuses["BATCHED"])
    # and 30 minutes later the rest are due
    later = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=30))
    assert later.promoted == 12 and later.photos_claimed == 12


def test_promotion_trusts_the_table_not_a_lagging_due_index(env):
    # The index still lists a photo whose back-off was moved out by hand, and one that was already promoted
    _photo(env, "later", "BACKOFF", attempts=1, due_at=iso(T0 + timedelta(hours=5)))
    _photo(env, "done", "PENDING", attempts=1)
    stale = [{"photo_id": {"S": pid}, "status": {"S": "BACKOFF"}, "due_at": {"S": iso(T0 - timedelta(hours=1))}}
             for pid in ("later", "done")]
    assert promote_due_photos(LaggingIndex(env.ddb, index="by_due", stale=stale), PHOTOS, T0) == 0
    assert env.photo("later")["status"] == "BACKOFF" and env.photo("done")["status"] == "PENDING"
