"""Property: whatever the interleaving of uploads, duplicate and out-of-order deliveries and dispatcher runs, every
valid photo ends in exactly one started batch or is still pending, every invalid one is quarantined with its reason,
sidecars land whatever their order, and nothing is lost."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from fieldlabel.intake.dispatch import execution_name, run_dispatch
from fieldlabel.intake.register import SqsMessage, register_messages
from fieldlabel.intake.settings import DispatchSettings
from fieldlabel.registry.model import from_item
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_helpers import encoded, fast_moto_transactions, jpeg, make_env, png, register_settings
from moto import mock_aws

VALID = [jpeg(20, 20, color=(i * 40, 255 - i * 30, 90)) for i in range(4)] + [png(18 + i, 18) for i in range(2)] + [
    encoded("HEIF", 24, 24), jpeg(24, 16, orientation=6, color=(5, 5, 200))]
_T = jpeg(300, 200, color=(10, 200, 10))
INVALID = [(b"", "empty"), (b"plain text, not a photo", "not_an_image"), (_T[: len(_T) // 2], "undecodable")]
T0 = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


@st.composite
def scenarios(draw):
    valid = draw(st.lists(st.integers(0, len(VALID) - 1), min_size=1, max_size=5, unique=True))
    invalid = draw(st.lists(st.integers(0, len(INVALID) - 1), max_size=3))
    uploads = []  # (key, bytes, sidecar site id or None)
    for i, v in enumerate(valid):
        for folder in range(draw(st.integers(1, 2))):  # identical content re-uploaded elsewhere
            site = f"site-{i}-{folder}" if draw(st.booleans()) else None
            uploads.append((f"uploads/f{folder}/v{i}.jpg", VALID[v], site))
    for j, b in enumerate(invalid):
        uploads.append((f"uploads/bad/{j}.jpg", INVALID[b][0], None))
    deliveries = [("photo", n) for n in range(len(uploads))] + [
        ("sidecar", n) for n, u in enumerate(uploads) if u[2] is not None]
    extra = draw(st.lists(st.sampled_from(deliveries), max_size=len(deliveries)))  # at-least-once delivery
    order = draw(st.permutations(deliveries + extra))
    cuts = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))  # end an SQS batch here?
    runs = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))  # then run the dispatcher?
    batch_size = draw(st.integers(1, 4))
    max_wait = draw(st.sampled_from([0, 10**6]))
    return valid, invalid, uploads, order, cuts, runs, batch_size, max_wait


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_intake_and_dispatch_invariants(scenario):
    valid, invalid, uploads, order, cuts, runs, batch_size, max_wait = scenario
    with mock_aws(), fast_moto_transactions():
        env = make_env()
        records = {}
        for n, (key, data, site) in enumerate(uploads):
            records[("photo", n)] = env.put(key, data, sequencer=f"{n + 1:04X}")
            if site is not None:
                records[("sidecar", n)] = env.put(key[:-4] + ".json", json.dumps({"site_id": site}).encode(),
                                                  sequencer=f"{n + 1:04X}")
        dsettings = DispatchSettings.from_env({
            "PHOTOS_TABLE": "photos", "BATCHES_TABLE": "batches", "STATE_MACHINE_ARN": env.state_machine_arn,
            "BATCH_SIZE": str(batch_size), "MAX_WAIT_SECONDS": str(max_wait)})
        rsettings = register_settings()
        step = 0
        pending: list[SqsMessage] = []
        for i, delivery in enumerate(order):
            pending.append(SqsMessage(f"m{i}", json.dumps({"Records": [records[delivery]]})))
            if cuts[i] or i == len(order) - 1:
                step += 1
                report = register_messages(pending, s3=env.s3, ddb=env.ddb, lambda_client=None, settings=rsettings,
                                           now=T0 + timedelta(seconds=step))
                assert report.failures == {}
                pending = []
            if runs[i]:
                step += 1
                run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=dsettings, now=T0 + timedelta(seconds=step),
                             owner=f"d{step}")

        photos = {p["photo_id"]: p for p in env.all_photos()}
        batches = {b["batch_id"]: b for b in (from_item(i) for i in env.ddb.scan(TableName="batches")["Items"])
                   if not b["batch_id"].startswith("#")}
        executions = {e["name"] for e in env.sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]}

        # nothing lost, nothing invented: one entry per distinct content, listing every key it arrived under
        expected_keys: dict[str, set[str]] = {}
        for key, data, _ in uploads:
            expected_keys.setdefault(f"sha256:{hashlib.sha256(data).hexdigest()}", set()).add(key)
        assert set(photos) == set(expected_keys)
        for pid, keys in expected_keys.items():
            assert photos[pid]["source_keys"] == keys

        # valid photos: pending, or in exactly one started batch whose count matches
        per_batch = Counter(p["batch_id"] for p in photos.values() if p["status"] == "BATCHED")
        for key, data, _ in uploads:
            photo = photos[f"sha256:{hashlib.sha256(data).hexdigest()}"]
            if data in VALID:
                assert photo["status"] in ("PENDING", "BATCHED")
                assert ("batch_id" in photo) == (photo["status"] == "BATCHED")
            else:
                reason = dict(INVALID)[data]
                assert photo["status"] == "QUARANTINED" and photo["quarantine_reason"] == reason
                assert env.tags(key) == {"quarantine": "true", "quarantine-reason": reason}
        for batch_id, count in per_batch.items():
            assert batches[batch_id]["status"] == "STARTED" and batches[batch_id]["photo_count"] == count
            assert execution_name(batch_id) in executions
        assert all(b["status"] == "STARTED" for b in batches.values())

        # sidecars: whatever the arrival order, every upload keeps exactly its own sidecar (content dedupe merges
        # uploads, never their metadata), and the merged field takes the smallest source key's sidecar
        winner: dict[str, tuple[str, str]] = {}
        for key, data, site in uploads:
            pid = f"sha256:{hashlib.sha256(data).hexdigest()}"
            if data not in VALID:
                continue
            own = photos[pid]["sources"][key]
            if site is None:
                assert own == {}
            else:
                assert own["sidecar"]["fields"] == {"site_id": site} and own["sidecar"]["issues"] == []
                winner[pid] = min(winner.get(pid, (key, site)), (key, site))
        for pid, photo in photos.items():
            if pid in winner:
                assert photo["field"].get("site_id") == winner[pid][1]
            else:
                assert "site_id" not in photo.get("field", {})
