"""Dispatcher against moto: decision, claiming, execution start, races, crash recovery and release_batch."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fieldlabel.common.clock import frozen, iso
from fieldlabel.common.ids import BATCH_ID_PATTERN
from fieldlabel.intake.dispatch import (
    claim_photos,
    conditional_bulk_update,
    execution_name,
    release_batch,
    run_dispatch,
)
from fieldlabel.registry.model import PENDING_COUNTER_KEY, from_item
from intake_helpers import BATCHES, PHOTOS, Env, SerializedClient, dispatch_settings, fast_moto_transactions, make_env
from moto import mock_aws

T0 = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


def seed_pending(env: Env, n: int, *, start: datetime = T0, prefix: str = "sha256:p") -> list[str]:
    ids = []
    for i in range(n):
        pid = f"{prefix}{i:06d}"
        env.ddb.put_item(TableName=PHOTOS, Item={
            "photo_id": {"S": pid}, "status": {"S": "PENDING"}, "attempts": {"N": "0"},
            "labeling_ref": {"S": f"s3://intake/labeling-copies/{pid.replace(':', '-')}.jpg"},
            "registered_at": {"S": iso(start + timedelta(seconds=i))}})
        ids.append(pid)
    return ids


def photos_by_status(env: Env) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for page in env.ddb.get_paginator("scan").paginate(TableName=PHOTOS):
        for raw in page["Items"]:
            item = from_item(raw)
            out.setdefault(item["status"], []).append(item)
    return out


def batch_records(env: Env) -> dict[str, dict[str, Any]]:
    items = [from_item(i) for i in env.ddb.scan(TableName=BATCHES)["Items"]]
    return {i["batch_id"]: i for i in items if not i["batch_id"].startswith("#")}


def executions(env: Env) -> dict[str, dict[str, Any]]:
    out = {}
    for e in env.sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]:
        desc = env.sfn.describe_execution(executionArn=e["executionArn"])
        out[e["name"]] = json.loads(desc["input"])
    return out


def assert_each_claimed_once(env: Env) -> None:
    """Every BATCHED photo names a batch record whose photo_count matches, and that batch has an execution."""
    statuses = photos_by_status(env)
    per_batch = Counter(p["batch_id"] for p in statuses.get("BATCHED", []))
    records = batch_records(env)
    execs = executions(env)
    for batch_id, count in per_batch.items():
        assert records[batch_id]["status"] == "STARTED"
        assert records[batch_id]["photo_count"] == count
        assert execs[execution_name(batch_id)]["photo_count"] == count


# --- decision and claiming -------------------------------------------------------------------------------------------


def test_due_by_count_claims_oldest_and_starts_execution_with_contract_input(env):
    # Given 25 pending photos and batch_size 10, max_batch_size 12
    ids = seed_pending(env, 25)
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_BATCH_SIZE=12, MAX_BATCHES_PER_RUN=1)
    # When the dispatcher runs
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=1),
                          batch_tokens=["0000abcd"])
    # Then the 12 oldest photos are BATCHED into one batch, started with the contract's name and input
    assert len(report.batches) == 1
    batch_id = report.batches[0]["batch_id"]
    assert batch_id == "b20261126t060100z-0000abcd" and BATCH_ID_PATTERN.match(batch_id)
    batched = sorted(p["photo_id"] for p in photos_by_status(env)["BATCHED"])
    assert batched == ids[:12]
    assert executions(env)[f"batch-{batch_id}"] == {"batch_id": batch_id, "photo_count": 12,
                                                      "kind": "human_only", "attempt": 1}
    assert batch_records(env)[batch_id]["status"] == "STARTED"
    assert len(photos_by_status(env)["PENDING"]) == 13


def test_not_due_until_oldest_pending_exceeds_max_wait(env):
    seed_pending(env, 3)
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_WAIT_SECONDS=3600)
    early = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=59))
    assert early.batches == [] and early.stats.count == 3
    late = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=61))
    assert [b["photo_count"] for b in late.batches] == [3]
    assert late.batches[0]["kind"] == "human_only"


def test_small_batch_waits_when_policy_is_wait(env):
    seed_pending(env, 3)
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_WAIT_SECONDS=60, SMALL_BATCH_POLICY="wait")
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(hours=5))
    assert report.batches == [] and "wait" in report.decision.reason
    assert len(photos_by_status(env)["PENDING"]) == 3


@pytest.fixture
def small_al_minimum(monkeypatch):
    """Ground Truth's 1,250-object minimum scaled to 12 so moto tests stay fast; test_intake_domain checks decide()
    with the real value."""
    import fieldlabel.intake.dispatch as dispatch_mod

    monkeypatch.setattr(dispatch_mod, "AL_MIN_OBJECTS", 12)


def test_batch_at_automated_minimum_is_automated_unless_disabled(env, small_al_minimum):
    seed_pending(env, 30)
    on = dispatch_settings(env, BATCH_SIZE=12, MAX_BATCH_SIZE=12, AUTOMATED_LABELING="true", MAX_WAIT_SECONDS=60)
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=on, now=T0 + timedelta(minutes=1))
    # two full automated batches by count, then the 6 left stay pending (below batch_size, not yet old)
    assert [(b["photo_count"], b["kind"]) for b in report.batches] == [(12, "automated"), (12, "automated")]
    # later, by age, the 6 left run human-only (below the automated minimum)
    late = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=on, now=T0 + timedelta(hours=1))
    assert [(b["photo_count"], b["kind"]) for b in late.batches] == [(6, "human_only")]
    assert_each_claimed_once(env)


def test_automated_labeling_disabled_makes_every_batch_human_only(env, small_al_minimum):
    seed_pending(env, 13)
    off = dispatch_settings(env, BATCH_SIZE=12, AUTOMATED_LABELING="false", MAX_BATCHES_PER_RUN=1)
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=off, now=T0 + timedelta(hours=1))
    assert [(b["photo_count"], b["kind"]) for b in report.batches] == [(13, "human_only")]


def test_repeats_batches_while_due_by_count_and_resets_counter(env):
    seed_pending(env, 35)
    settings = dispatch_settings(env, BATCH_SIZE=10, MAX_BATCH_SIZE=10)
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=1))
    assert [b["photo_count"] for b in report.batches] == [10, 10, 10]
    counter = from_item(env.ddb.get_item(TableName=BATCHES, Key={"batch_id": {"S": PENDING_COUNTER_KEY}})["Item"])
    assert counter["pending"] == 5
    assert_each_claimed_once(env)


def test_lease_held_by_another_dispatcher_blocks_run(env):
    seed_pending(env, 20)
    settings = dispatch_settings(env, LEASE_SECONDS=300)
    from fieldlabel.registry.control import acquire_lease

    assert acquire_lease(env.ddb, BATCHES, "other", T0.timestamp(), 300)
    blocked = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(seconds=10))
    assert not blocked.lease and blocked.batches == []
    after_expiry = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(seconds=301))
    assert after_expiry.lease and after_expiry.photos_claimed == 20


def test_claim_skips_photos_taken_meanwhile_and_fences_after_takeover(env):
    ids = seed_pending(env, 5)
    now_iso = iso(T0)
    env.ddb.put_item(TableName=BATCHES, Item={"batch_id": {"S": "b1"}, "status": {"S": "CLAIMING"},
                                              "claim_owner": {"S": "me"}})
    # a photo already claimed elsewhere is rejected, the others claimed in the same request sequence
    env.ddb.update_item(TableName=PHOTOS, Key={"photo_id": {"S": ids[2]}}, UpdateExpression="SET #s = :b",
                        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":b": {"S": "BATCHED"}})
    res = claim_photos(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id="b1", owner="me",
                       photo_ids=ids, now_iso=now_iso)
    assert sorted(res.done) == sorted(ids[:2] + ids[3:]) and res.rejected == [ids[2]] and not res.fenced
    # once the batch is owned by someone else, nothing more can be claimed into it
    more = seed_pending(env, 3, prefix="sha256:q")
    env.ddb.update_item(TableName=BATCHES, Key={"batch_id": {"S": "b1"}}, UpdateExpression="SET claim_owner = :o",
                        ExpressionAttributeValues={":o": {"S": "recovery"}})
    fenced = claim_photos(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id="b1", owner="me",
                          photo_ids=more, now_iso=now_iso)
    assert fenced.fenced and fenced.done == []
    assert {p["photo_id"] for p in photos_by_status(env)["PENDING"]} == set(more)


class ConflictingClient:
    """Cancels every transaction with TransactionConflict, to drive the single-update fallback."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.singles = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                           "CancellationReasons": reasons}, "TransactWriteItems")

    def update_item(self, **kwargs: Any) -> Any:
        self.singles += 1
        return self.real.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_cancelled_transactions_fall_back_to_single_conditional_updates(env):
    ids = seed_pending(env, 4)
    env.ddb.update_item(TableName=PHOTOS, Key={"photo_id": {"S": ids[0]}}, UpdateExpression="SET #s = :b",
                        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":b": {"S": "PARKED"}})
    client = ConflictingClient(env.ddb)
    upd = {"UpdateExpression": "SET #s = :b", "ConditionExpression": "#s = :p",
           "ExpressionAttributeNames": {"#s": "status"},
           "ExpressionAttributeValues": {":b": {"S": "BATCHED"}, ":p": {"S": "PENDING"}}}
    res = conditional_bulk_update(client, PHOTOS, [(pid, upd) for pid in ids])
    assert client.singles == 4
    assert sorted(res.done) == sorted(ids[1:]) and res.rejected == [ids[0]]


# --- races ---------------------------------------------------------------------------------------------------------


def test_two_dispatchers_racing_never_put_a_photo_in_two_batches(env):
    # Given 300 pending photos and two dispatchers whose leases cannot exclude each other (both think they own it)
    ids = seed_pending(env, 300)
    settings = dispatch_settings(env, BATCH_SIZE=50, MAX_BATCH_SIZE=150, MAX_BATCHES_PER_RUN=10)
    import fieldlabel.intake.dispatch as dispatch_mod

    original = dispatch_mod.acquire_lease
    dispatch_mod.acquire_lease = lambda *a, **k: True
    lock = threading.Lock()
    ddb, sfn = SerializedClient(env.ddb, lock), SerializedClient(env.sfn, lock)
    barrier = threading.Barrier(2)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run(owner: str, token_base: int) -> None:
        try:
            barrier.wait()
            reports.append(run_dispatch(ddb=ddb, sfn=sfn, settings=settings, now=T0 + timedelta(minutes=1),
                                        owner=owner, batch_tokens=[f"{token_base + i:08x}" for i in range(10)]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(f"d{n}", n * 100)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        dispatch_mod.acquire_lease = original
    # Then every photo is in exactly one batch and the batches' counts add up
    assert errors == []
    statuses = photos_by_status(env)
    assert "PENDING" not in statuses
    assert sorted(p["photo_id"] for p in statuses["BATCHED"]) == ids
    assert sum(r.photos_claimed for r in reports) == 300
    assert_each_claimed_once(env)


# --- crash recovery ----------------------------------------------------------------------------------------------


class Crash(Exception):
    """The process died."""


class CrashingClient:
    """Proxy that dies at a chosen call; after that every call fails too, as in a killed Lambda."""

    def __init__(self, real: Any, should_crash) -> None:
        self.real = real
        self.should_crash = should_crash
        self.calls: Counter[str] = Counter()
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if not callable(attr):
            return attr

        def call(**kwargs: Any) -> Any:
            if self.dead:
                raise Crash(name)
            self.calls[name] += 1
            when = self.should_crash(name, kwargs, self.calls[name])
            if when == "before":
                self.dead = True
                raise Crash(name)
            result = attr(**kwargs)
            if when == "after":
                self.dead = True
                raise Crash(name)
            return result

        return call


def _is_batch_put(name, kw):
    return name == "put_item" and not kw["Item"]["batch_id"]["S"].startswith("#")


CRASH_POINTS = {
    "after lease, before the batch record": lambda n, kw, i: "before" if _is_batch_put(n, kw) else None,
    "after the batch record, before any claim": lambda n, kw, i: "after" if _is_batch_put(n, kw) else None,
    "mid-claim (first transaction committed)": lambda n, kw, i: "after" if n == "transact_write_items" else None,
    "after claim, before the batch record update": (
        lambda n, kw, i: "before" if n == "update_item" and "photo_count" in kw.get("UpdateExpression", "") else None),
    "after the batch record, before start": lambda n, kw, i: "before" if n == "start_execution" else None,
    "after start, before STARTED": lambda n, kw, i: "after" if n == "start_execution" else None,
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_crash_at_each_step_is_repaired_by_the_next_run(env, point):
    # Given 110 pending photos (two claim transactions) and a dispatcher that dies at `point`
    ids = seed_pending(env, 110)
    settings = dispatch_settings(env, BATCH_SIZE=100, MAX_BATCH_SIZE=110, LEASE_SECONDS=300,
                                 CLAIM_GRACE_SECONDS=600, MAX_BATCHES_PER_RUN=1)
    should = CRASH_POINTS[point]
    ddb = CrashingClient(env.ddb, lambda n, kw, i: should(n, kw, i))
    sfn = CrashingClient(env.sfn, lambda n, kw, i: should(n, kw, i))
    ddb.dead_partner = sfn
    with pytest.raises(Crash):
        run_dispatch(ddb=ddb, sfn=_Linked(sfn, ddb), settings=settings, now=T0, owner="crashed",
                     batch_tokens=["0000dead"])
    # When the next run comes after the lease expired and the grace period passed
    later = T0 + timedelta(seconds=601)
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=later, owner="next",
                          batch_tokens=["0000beef"])
    # Then nothing is lost, no photo is in two batches, and every claimed photo's batch is started
    statuses = photos_by_status(env)
    assert set(statuses) <= {"PENDING", "BATCHED"}
    assert sorted(p["photo_id"] for p in statuses.get("BATCHED", []) + statuses.get("PENDING", [])) == ids
    assert_each_claimed_once(env)
    crashed = "b20261126t060000z-0000dead"
    if any(p["batch_id"] == crashed for p in statuses.get("BATCHED", [])):
        assert report.recovered == [crashed]
    # A batch the crash left without photos is marked FAILED by recovery, never deleted (its index count may lag)
    for batch_id, record in batch_records(env).items():
        claimed = [p for p in statuses.get("BATCHED", []) if p["batch_id"] == batch_id]
        assert record["status"] == "STARTED" or (record["status"] == "FAILED" and not claimed), (batch_id, record)


class _Linked:
    """Makes the Step Functions proxy share the DynamoDB proxy's death (one process, two clients)."""

    def __init__(self, sfn: CrashingClient, ddb: CrashingClient) -> None:
        self.sfn, self.ddb = sfn, ddb

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.sfn, name)

        def call(**kwargs: Any) -> Any:
            if self.ddb.dead:
                raise Crash(name)
            try:
                return fn(**kwargs)
            except Crash:
                self.ddb.dead = True
                raise

        return call


def test_start_is_idempotent_when_execution_already_exists(env):
    seed_pending(env, 12)
    settings = dispatch_settings(env, BATCH_SIZE=10)
    name = "batch-b20261126t060100z-0000abcd"
    env.sfn.start_execution(stateMachineArn=env.state_machine_arn, name=name, input="{}")
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=1),
                          batch_tokens=["0000abcd"])
    assert report.batches[0]["execution_arn"].endswith(f":{name}")
    assert batch_records(env)["b20261126t060100z-0000abcd"]["status"] == "STARTED"


# --- release_batch -------------------------------------------------------------------------------------------------


def test_release_batch_returns_photos_then_parks_after_max_attempts(env):
    ids = seed_pending(env, 6)
    settings = dispatch_settings(env, BATCH_SIZE=6, MAX_ATTEMPTS=2)
    labeled = ids[0]
    first = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=T0 + timedelta(minutes=1))
    b1 = first.batches[0]["batch_id"]
    env.ddb.update_item(TableName=PHOTOS, Key={"photo_id": {"S": labeled}}, UpdateExpression="SET #s = :l",
                        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":l": {"S": "LABELED"}})
    # When the workflow fails and releases the batch (twice: the call is idempotent)
    r1 = release_batch(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id=b1, reason="job failed",
                       max_attempts=2, now=T0 + timedelta(hours=1))
    again = release_batch(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id=b1, reason="job failed",
                          max_attempts=2, now=T0 + timedelta(hours=1))
    # Then the 5 unlabeled photos back off with attempts 1 (due again after the 1-hour first back-off), the
    # labeled one is untouched, the batch FAILED
    assert (r1.released, r1.parked) == (5, 0) and (again.released, again.parked) == (0, 0)
    statuses = photos_by_status(env)
    assert sorted(p["photo_id"] for p in statuses["BACKOFF"]) == ids[1:]
    assert all(p["attempts"] == 1 and "batch_id" not in p and p["last_batch_id"] == b1
               and p["due_at"] == iso(T0 + timedelta(hours=2)) for p in statuses["BACKOFF"])
    assert [p["photo_id"] for p in statuses["LABELED"]] == [labeled]
    assert batch_records(env)[b1]["status"] == "FAILED" and batch_records(env)[b1]["failure_reason"] == "job failed"
    # And once due again they are claimed, and a second failure parks them (max_attempts 2)
    second = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=dispatch_settings(env, BATCH_SIZE=5),
                          now=T0 + timedelta(hours=2))
    assert second.promoted == 5
    b2 = second.batches[0]["batch_id"]
    r2 = release_batch(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id=b2, reason="job failed again",
                       max_attempts=2, now=T0 + timedelta(hours=3))
    assert (r2.released, r2.parked) == (0, 5)
    parked = photos_by_status(env)["PARKED"]
    assert sorted(p["photo_id"] for p in parked) == ids[1:]
    assert all(p["attempts"] == 2 and p["park_reason"] == "job failed again" for p in parked)


def test_release_of_an_unknown_batch_raises(env):
    with pytest.raises(ClientError) as exc:
        release_batch(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id="b20261126t060000z-00000000",
                      reason="x", max_attempts=3, now=T0)
    assert exc.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert batch_records(env) == {}


def test_dispatch_handler_runs_once_and_emits_metrics(env, monkeypatch, capsys):
    # Given 7 pending photos registered long ago and a handler configured through its environment
    from intake_helpers import FakeContext

    seed_pending(env, 7, start=T0)
    for k, v in {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
                 "BATCH_SIZE": "100", "MAX_WAIT_SECONDS": "3600"}.items():
        monkeypatch.setenv(k, v)
    from dispatch import handler as mod

    mod.settings.cache_clear()
    mod.clients.cache_clear()
    try:
        # When the schedule invokes it two hours later (the handler's clock is pinned)
        with frozen(T0 + timedelta(hours=2)):
            summary = mod.lambda_handler({"source": "aws.events"}, FakeContext())
    finally:
        mod.settings.cache_clear()
        mod.clients.cache_clear()
    # Then one human-only batch of 7 is started (due by age) and the metrics carry the figures
    assert summary["lease"] and summary["photos_claimed"] == 7 and summary["decision"] == "age"
    assert [b["kind"] for b in summary["batches"]] == ["human_only"]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"]: blob[m["Name"]] for blob in emf for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in names.items()}
    assert flat["BatchesClaimed"] == 1 and flat["PhotosClaimed"] == 7
    assert flat["PendingPhotos"] == 0  # counted after the claim
    assert "OldestPendingAgeSeconds" in flat
