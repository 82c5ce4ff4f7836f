"""The dispatcher's forced run (``fieldlabel flush``): whatever is pending becomes one batch now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fieldlabel.common.clock import frozen, iso
from fieldlabel.intake.dispatch import PendingStats, decide, run_dispatch
from fieldlabel.intake.settings import AL_MIN_OBJECTS
from fieldlabel.registry.model import from_item
from intake_helpers import BATCHES, PHOTOS, dispatch_settings, fast_moto_transactions, make_env
from moto import mock_aws

T0 = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


def seed_pending(env, n: int) -> None:
    for i in range(n):
        env.ddb.put_item(TableName=PHOTOS, Item={
            "photo_id": {"S": f"sha256:f{i:06d}"}, "status": {"S": "PENDING"}, "attempts": {"N": "0"},
            "registered_at": {"S": iso(T0 + timedelta(seconds=i))}})


def statuses(env) -> dict[str, int]:
    out: dict[str, int] = {}
    for raw in env.ddb.scan(TableName=PHOTOS)["Items"]:
        s = from_item(raw)["status"]
        out[s] = out.get(s, 0) + 1
    return out


@pytest.mark.parametrize(("pending", "automated", "policy", "kind"), [
    (3, True, "wait", "human_only"),          # the wait policy would hold it; forcing overrides
    (3, True, "human_only", "human_only"),
    (AL_MIN_OBJECTS - 1, True, "wait", "human_only"),
    (AL_MIN_OBJECTS, True, "wait", "automated"),
    (AL_MIN_OBJECTS, False, "wait", "human_only"),
])
def test_forced_decision_is_due_whatever_the_size_and_age(env, pending, automated, policy, kind):
    settings = dispatch_settings(env, BATCH_SIZE=5000, MAX_WAIT_SECONDS=86400, SMALL_BATCH_POLICY=policy,
                                 AUTOMATED_LABELING=str(automated).lower())
    stats = PendingStats(pending, iso(T0), 5.0)
    assert decide(stats, settings).due is False  # young and small: a scheduled run would wait
    forced = decide(stats, settings, force=True)
    assert (forced.due, forced.reason, forced.kind, forced.target) == (True, "forced", kind, pending)


def test_forced_decision_caps_at_max_batch_size_and_needs_something_pending(env):
    settings = dispatch_settings(env, BATCH_SIZE=5000, MAX_BATCH_SIZE=2000)
    assert decide(PendingStats(4500, iso(T0), 1.0), settings, force=True).target == 2000
    assert decide(PendingStats(0, None, 0.0), settings, force=True).due is False


def test_forced_run_claims_everything_pending_as_one_human_only_batch(env):
    # Given 12 young pending photos, far below BATCH_SIZE, under the wait policy
    seed_pending(env, 12)
    settings = dispatch_settings(env, BATCH_SIZE=5000, MAX_WAIT_SECONDS=86400, SMALL_BATCH_POLICY="wait")
    now = T0 + timedelta(minutes=1)
    # A scheduled run starts nothing
    assert run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=now).batches == []
    # When forced
    report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=now, force=True)
    # Then one human-only batch holds all 12 photos and its execution was started
    assert [(b["photo_count"], b["kind"]) for b in report.batches] == [(12, "human_only")]
    assert report.decision is not None and report.decision.reason == "forced"
    assert statuses(env) == {"BATCHED": 12}
    batch = from_item(env.ddb.get_item(TableName=BATCHES,
                                       Key={"batch_id": {"S": report.batches[0]["batch_id"]}})["Item"])
    assert batch["status"] == "STARTED" and batch["kind"] == "human_only" and batch["photo_count"] == 12
    assert len(env.sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]) == 1
    # And forcing again with nothing pending starts nothing
    again = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=now, force=True)
    assert again.batches == [] and again.decision is not None and again.decision.due is False


def test_handler_forces_only_on_an_explicit_true(env, monkeypatch):
    from intake_helpers import FakeContext

    seed_pending(env, 4)
    for k, v in {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
                 "BATCH_SIZE": "100", "MAX_WAIT_SECONDS": "86400", "POWERTOOLS_METRICS_NAMESPACE": "Test"}.items():
        monkeypatch.setenv(k, v)
    from dispatch import handler as mod

    mod.settings.cache_clear()
    mod.clients.cache_clear()
    try:
        # The photos are minutes old and far below BATCH_SIZE: only an explicit force may batch them. The handler's
        # clock is pinned, so the test means the same on any date it runs.
        with frozen(T0 + timedelta(minutes=5)):
            not_forced = mod.lambda_handler({"trigger": "flush", "force": "yes"}, FakeContext())
            forced = mod.lambda_handler({"trigger": "flush", "force": True}, FakeContext())
    finally:
        mod.settings.cache_clear()
        mod.clients.cache_clear()
    assert not_forced["forced"] is False and not_forced["batches"] == []
    assert forced["forced"] is True and forced["trigger"] == "flush" and forced["decision"] == "forced"
    assert [(b["photo_count"], b["kind"]) for b in forced["batches"]] == [(4, "human_only")]
    assert forced["pending_after"] == 0
