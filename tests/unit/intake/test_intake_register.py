"""Register Lambda and domain against moto: partial failures, dedupe, copies, quarantine, sidecars, counter."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from fieldlabel.embedding import EMBEDDING_DIM, EMBEDDING_MODEL_ID, build_embedder
from fieldlabel.intake.register import SqsMessage, register_messages
from fieldlabel.registry.model import PENDING_COUNTER_KEY
from intake_helpers import (
    BATCHES,
    BUCKET,
    PHOTOS,
    FakeContext,
    RequestCounter,
    encoded,
    fast_moto_transactions,
    jpeg,
    make_env,
    png,
    register_settings,
    s3_record,
    sqs_record,
)
from moto import mock_aws
from PIL import Image

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lite0():
    """The cheapest real embedder: the register tests check where embeddings go, not which spec computes them."""
    return build_embedder("lite0")


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


def run(env, records: list[dict[str, Any]] | list[tuple[str, dict[str, Any]]], lambda_client=None, embedder=None,
        **overrides):
    """Register S3 records, one per SQS message (or (message_id, body) pairs); no embeddings unless ``embedder``."""
    msgs = []
    for i, r in enumerate(records):
        if isinstance(r, tuple):
            msgs.append(SqsMessage(r[0], r[1] if isinstance(r[1], str) else json.dumps(r[1])))
        else:
            msgs.append(SqsMessage(f"m{i}", json.dumps({"Records": [r]})))
    return register_messages(msgs, s3=env.s3, ddb=env.ddb, lambda_client=lambda_client,
                             settings=register_settings(**overrides), now=NOW, embedder=embedder)


def by_key(env) -> dict[str, dict[str, Any]]:
    return {k: p for p in env.all_photos() for k in p.get("source_keys", set())}


def counter(env) -> int:
    item = env.ddb.get_item(TableName=BATCHES, Key={"batch_id": {"S": PENDING_COUNTER_KEY}}).get("Item")
    return int(item["pending"]["N"]) if item else 0


# --- handler ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def handler(env, monkeypatch):
    for k, v in {"INTAKE_BUCKET": BUCKET, "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "BATCH_SIZE": "100",
                 "DISPATCH_FUNCTION_NAME": "dispatch-fn"}.items():
        monkeypatch.setenv(k, v)
    from register import handler as mod

    mod.settings.cache_clear()
    mod.clients.cache_clear()
    yield mod
    for cached in (mod.settings, mod.clients):
        getattr(cached, "cache_clear", lambda: None)()


def test_handler_reports_only_the_broken_message_and_emits_metrics(env, handler, capsys):
    # Given a batch with two photos, an unusable object, S3's test event and a message that is not JSON
    event = {"Records": [
        sqs_record("ok-jpeg", {"Records": [env.put("uploads/a/one.jpg", jpeg())]}),
        sqs_record("ok-heic", {"Records": [env.put("uploads/a/two.heic", encoded("HEIF"))]}),
        sqs_record("text", {"Records": [env.put("uploads/a/notes.jpg", b"just some text")]}),
        sqs_record("test-event", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
        sqs_record("garbage", "this is not json"),
    ]}
    # When the handler runs
    response = handler.lambda_handler(event, FakeContext())
    # Then only the broken message is retried, everything else is registered or quarantined
    assert response == {"batchItemFailures": [{"itemIdentifier": "garbage"}]}
    photos = by_key(env)
    assert photos["uploads/a/one.jpg"]["status"] == "PENDING"
    assert photos["uploads/a/two.heic"]["status"] == "PENDING"
    assert photos["uploads/a/notes.jpg"]["status"] == "QUARANTINED"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {}
    for blob in emf:
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            dims = tuple(blob.get(d) for ds in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in ds
                         if d == "reason")
            value = blob[metric["Name"]]
            values[(metric["Name"], dims)] = value[0] if isinstance(value, list) else value
    assert values[("PhotosRegistered", ())] == 2.0
    assert values[("LabelingCopiesMade", ())] == 1.0
    assert values[("PhotosQuarantined", ())] == 1.0
    assert values[("PhotosQuarantined", ("not_an_image",))] == 1.0
    assert values[("DuplicatesSkipped", ())] == 0.0
    # and both photos carry the deployment's embedding, computed by the real models in the same write
    assert values[("PhotosEmbedded", ())] == 2.0 and values[("EmbeddingFailures", ())] == 0.0
    for key in ("uploads/a/one.jpg", "uploads/a/two.heic"):
        assert photos[key]["embedding_model"] == EMBEDDING_MODEL_ID
        assert len(photos[key]["embedding"]) == 2 * EMBEDDING_DIM
    assert "embedding" not in photos["uploads/a/notes.jpg"]


def test_handler_invokes_dispatcher_asynchronously_when_threshold_crossed(env, handler, monkeypatch):
    # Given a dispatch function in moto and a register function whose BATCH_SIZE is 3
    import io as _io
    import zipfile

    role = boto3.client("iam").create_role(RoleName="dispatch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = _io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("h.py", "def h(event, context):\n    return event\n")
    env.lam.create_function(FunctionName="dispatch-fn", Runtime="python3.13", Role=role, Handler="h.h",
                            Code={"ZipFile": code.getvalue()})
    invokes = []
    env.lam.meta.events.register("before-parameter-build.lambda.Invoke", lambda params, **_: invokes.append(params))
    monkeypatch.setenv("BATCH_SIZE", "3")
    handler.settings.cache_clear()
    monkeypatch.setattr(handler, "clients", lambda: {"s3": env.s3, "ddb": env.ddb, "lambda": env.lam})
    # When three SQS batches of two new photos arrive
    batches = [[jpeg(color=(60 * n, 100 * i, 50)) for i in range(2)] for n in range(3)]
    for n, images in enumerate(batches):
        event = {"Records": [sqs_record(f"b{n}m{i}", {"Records": [env.put(f"uploads/x/{n}-{i}.jpg", d)]})
                             for i, d in enumerate(images)]}
        assert handler.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}
        # Then the dispatcher is invoked once, when the counter crosses 3 (second batch), not again after
        assert len(invokes) == (0 if n == 0 else 1)
    assert invokes[0]["FunctionName"] == "dispatch-fn" and invokes[0]["InvocationType"] == "Event"
    assert json.loads(invokes[0]["Payload"])["pending"] == 4
    assert counter(env) == 6


# --- keys, dedupe, requests ----------------------------------------------------------------------------------------


def test_keys_with_spaces_plus_and_unicode_are_decoded(env):
    key = "uploads/site 12/Fotó ñ+1 (copy).jpg"
    report = run(env, [env.put(key, jpeg())])
    assert report.failures == {} and report.registered == 1
    photo = by_key(env)[key]
    assert photo["original"]["key"] == key
    assert photo["labeling_ref"] == f"s3://{BUCKET}/{key}"


def test_identical_content_and_redelivery_make_one_entry_in_content_mode(env):
    data = jpeg(color=(9, 9, 9))
    r1, r2 = env.put("uploads/a/x.jpg", data), env.put("uploads/b/y.jpg", data)
    first = run(env, [r1, r2, r1])
    again = run(env, [r2])
    photos = env.all_photos()
    assert len(photos) == 1 and photos[0]["source_keys"] == {"uploads/a/x.jpg", "uploads/b/y.jpg"}
    assert photos[0]["original"]["key"] == "uploads/a/x.jpg"
    assert (first.registered, first.duplicates, again.duplicates) == (1, 2, 1)
    assert counter(env) == 1


def test_object_mode_keys_by_object_identity(env):
    data = jpeg(color=(8, 8, 8))
    r1, r2 = env.put("uploads/a/x.jpg", data), env.put("uploads/b/y.jpg", data)
    report = run(env, [r1, r2, r1], DEDUPE_MODE="object")
    photos = env.all_photos()
    assert sorted(p["photo_id"][:4] for p in photos) == ["obj:", "obj:"]
    assert (report.registered, report.duplicates) == (2, 1)


@pytest.mark.parametrize("needs_copy,limit", [(False, 3.0), (True, 4.0)])
def test_requests_per_photo_stay_within_budget(env, needs_copy, limit, lite0):
    # Given one SQS batch of 10 distinct photos (JPEGs as they are, or HEICs that need a labeling copy)
    images = [encoded("HEIF", 16 + i, 16) if needs_copy else jpeg(16 + i, 16) for i in range(10)]
    records = [env.put(f"uploads/r/{i}.{'heic' if needs_copy else 'jpg'}", d) for i, d in enumerate(images)]
    counted = RequestCounter().attach(env.s3, env.ddb)
    # When registered, embeddings included
    report = run(env, records, embedder=lambda: lite0)
    assert report.embedded == 10
    # Then the API calls per photo stay within the issue's budget (claiming adds ~0.01 per photo)
    assert report.registered == 10
    per_photo = len(counted.calls) / 10
    assert per_photo <= limit - 0.5, counted.calls
    assert counted.calls.count("GetObject") == 10
    assert counted.calls.count("PutObject") == (10 if needs_copy else 0)


# --- labeling copy and quarantine ------------------------------------------------------------------------------------


def test_rotated_oversized_photo_gets_an_upright_copy_within_limits_and_original_is_untouched(env):
    # Given a 12-megapixel phone photo stored landscape with EXIF orientation 6 (display: portrait)
    data = jpeg(4032, 3024, orientation=6, quality=30)
    report = run(env, [env.put("uploads/p/IMG_0001.JPG", data)])
    photo = by_key(env)["uploads/p/IMG_0001.JPG"]
    # Then the copy is an upright JPEG inside 3840x2160 and the original's bytes are unchanged
    assert report.copies_made == 1 and photo["media"]["copy_made"] is True
    copy_key = photo["labeling_ref"].split(f"s3://{BUCKET}/", 1)[1]
    assert copy_key == f"labeling-copies/{photo['photo_id'].replace(':', '-')}.jpg"
    copy = Image.open(io.BytesIO(env.s3.get_object(Bucket=BUCKET, Key=copy_key)["Body"].read()))
    assert copy.format == "JPEG" and copy.size == (1620, 2160)
    # orientation 6 = rotate 90° clockwise for display, so the stored top-left marker ends top-right
    assert max(copy.getpixel((copy.width - 5, 5))) < 60 and max(copy.getpixel((5, 5))) > 150
    assert env.s3.get_object(Bucket=BUCKET, Key="uploads/p/IMG_0001.JPG")["Body"].read() == data


def test_quarantine_tags_original_keeps_other_tags_and_never_deletes(env):
    rec = env.put("uploads/q/empty.jpg", b"")
    env.s3.put_object_tagging(Bucket=BUCKET, Key="uploads/q/empty.jpg",
                              Tagging={"TagSet": [{"Key": "project", "Value": "oaks"}]})
    report = run(env, [rec, rec])
    assert report.failures == {} and report.quarantined == {"empty": 1} and report.duplicates == 1
    assert env.tags("uploads/q/empty.jpg") == {"project": "oaks", "quarantine": "true", "quarantine-reason": "empty"}
    photo = by_key(env)["uploads/q/empty.jpg"]
    assert photo["status"] == "QUARANTINED" and photo["quarantine_reason"] == "empty"
    assert env.s3.head_object(Bucket=BUCKET, Key="uploads/q/empty.jpg")["ContentLength"] == 0
    assert counter(env) == 0


def test_object_over_max_bytes_is_quarantined_without_being_read(env):
    rec = env.put("uploads/q/huge.tif", png(60, 60))
    counted = RequestCounter().attach(env.s3)
    report = run(env, [rec], MAX_PHOTO_BYTES=100)
    assert report.quarantined == {"too_large_bytes": 1}
    assert "GetObject" not in counted.calls
    assert by_key(env)["uploads/q/huge.tif"]["photo_id"].startswith("obj:")


# --- sidecars ------------------------------------------------------------------------------------------------------


def sidecar_record(env, key: str, payload: Any, seq: str) -> dict[str, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return env.put(key, body, sequencer=seq)


@pytest.mark.parametrize("order", ["photo-first", "sidecar-first", "same-batch"])
def test_sidecar_applies_whatever_the_arrival_order(env, order):
    photo = env.put("uploads/s/IMG_7.jpg", jpeg(gps=(10.0, 20.0), make="Canon"))
    side = sidecar_record(env, "uploads/s/IMG_7.json", {"site_id": "S7", "latitude": -33.5}, "00A1")
    folder = sidecar_record(env, "uploads/s/_folder.json", {"collector": "Ana", "site_id": "folder"}, "00A2")
    if order == "photo-first":
        run(env, [photo]), run(env, [side]), run(env, [folder])
    elif order == "sidecar-first":
        run(env, [folder]), run(env, [side]), run(env, [photo])
    else:
        assert run(env, [side, photo, folder]).failures == {}
    field = by_key(env)["uploads/s/IMG_7.jpg"]["field"]
    # per-photo sidecar beats folder sidecar beats EXIF
    assert field == {"site_id": "S7", "latitude": -33.5, "longitude": 20.0, "camera_make": "Canon",
                     "collector": "Ana"}


def test_older_sidecar_version_arriving_late_does_not_win(env):
    photo = env.put("uploads/s/a.jpg", jpeg())
    new = sidecar_record(env, "uploads/s/a.json", {"site_id": "new"}, "00B2")
    old = {**new, "s3": {**new["s3"], "object": {**new["s3"]["object"], "sequencer": "00B1"}}}
    env.s3.put_object(Bucket=BUCKET, Key="uploads/s/a.json", Body=json.dumps({"site_id": "new"}).encode())
    run(env, [photo]), run(env, [new]), run(env, [old])
    assert by_key(env)["uploads/s/a.jpg"]["field"]["site_id"] == "new"


def test_broken_sidecar_is_reported_not_fatal(env):
    photo = env.put("uploads/s/b.jpg", jpeg())
    bad = sidecar_record(env, "uploads/s/b.json", b'{"site_id": "S1", ', "00C1")
    report = run(env, [bad, photo])
    assert report.failures == {}
    item = by_key(env)["uploads/s/b.jpg"]
    assert item["status"] == "PENDING" and item["field"] == {}
    assert any("not valid JSON" in issue for issue in item["metadata_issues"])


def test_invalid_fields_are_dropped_and_listed(env):
    photo = env.put("uploads/s/c.jpg", jpeg())
    side = sidecar_record(env, "uploads/s/c.json", {"site_id": "S1", "latitude": 123, "specimen_part": "root",
                                                    "colour": "green"}, "00D1")
    run(env, [photo, side])
    item = by_key(env)["uploads/s/c.jpg"]
    assert item["field"] == {"site_id": "S1"}
    assert len(item["metadata_issues"]) == 3


# Identical content under three keys: A with a valid sidecar, B with none, C with a broken one.
_DEDUPE_ORDERS = ["photos-first", "sidecars-first", "interleaved", "one-batch", "reversed"]


@pytest.mark.parametrize("order", _DEDUPE_ORDERS)
def test_deduplicated_uploads_keep_their_own_sidecars_and_issues(env, order):
    data = jpeg(color=(1, 2, 3), gps=(10.0, 20.0))
    a, b, c = "uploads/site-a/IMG_1.jpg", "uploads/site-b/IMG_2.jpg", "uploads/site-c/IMG_3.jpg"
    photos = [env.put(a, data), env.put(b, data), env.put(c, data)]
    good = sidecar_record(env, "uploads/site-a/IMG_1.json", {"site_id": "A", "collector": "Ana"}, "00E1")
    broken = sidecar_record(env, "uploads/site-c/IMG_3.json", b'{"site_id": ', "00E2")
    if order == "photos-first":
        runs = [[p] for p in photos] + [[good], [broken]]
    elif order == "sidecars-first":
        runs = [[good], [broken]] + [[p] for p in photos]
    elif order == "interleaved":
        runs = [[photos[2]], [good], [photos[1]], [broken], [photos[0]]]
    elif order == "one-batch":
        runs = [[broken, photos[1], good, photos[0], photos[2]]]
    else:
        runs = [[broken], [photos[2]], [photos[1]], [photos[0]], [good]]
    for batch in runs:
        assert run(env, batch).failures == {}

    (item,) = env.all_photos()
    assert item["source_keys"] == {a, b, c}
    src = item["sources"]
    # each upload keeps exactly its own sidecar: the valid one is never dropped...
    assert src[a] == {"sidecar": {"key": "uploads/site-a/IMG_1.json", "seq": "00E1".rjust(32, "0"),
                                  "fields": {"site_id": "A", "collector": "Ana"}, "issues": []}}
    # ...the upload without a sidecar gets nobody else's (neither fields nor errors)...
    assert src[b] == {}
    # ...and the broken sidecar's error stays with its own upload, attributed to its own file
    assert src[c]["sidecar"]["fields"] == {} and "not valid JSON" in src[c]["sidecar"]["issues"][0]
    assert item["field"] == {"site_id": "A", "collector": "Ana", "latitude": 10.0, "longitude": 20.0}
    assert len(item["metadata_issues"]) == 1
    assert item["metadata_issues"][0].startswith("sidecar uploads/site-c/IMG_3.json: sidecar is not valid JSON")
    assert item["field_conflicts"] == []


def test_conflicting_sidecars_of_one_content_are_all_kept_and_the_conflict_is_listed(env):
    data = jpeg(color=(4, 5, 6))
    a, d = "uploads/x/p.jpg", "uploads/y/q.jpg"
    recs = [env.put(a, data), env.put(d, data),
            sidecar_record(env, "uploads/y/q.json", {"site_id": "Y", "habitat": "fen"}, "00F2"),
            sidecar_record(env, "uploads/x/p.json", {"site_id": "X"}, "00F1"),
            sidecar_record(env, "uploads/y/_folder.json", {"collector": "Bo"}, "00F3")]
    for r in recs:
        assert run(env, [r]).failures == {}
    (item,) = env.all_photos()
    # the smallest source key's per-photo sidecar wins a disagreement; fields only one upload has are merged in
    assert item["field"] == {"site_id": "X", "habitat": "fen", "collector": "Bo"}
    assert item["field_conflicts"] == ["site_id"]
    assert item["sources"][a]["sidecar"]["fields"] == {"site_id": "X"} and "folder_sidecar" not in item["sources"][a]
    assert item["sources"][d]["sidecar"]["fields"] == {"site_id": "Y", "habitat": "fen"}
    assert item["sources"][d]["folder_sidecar"]["fields"] == {"collector": "Bo"}


def test_items_from_before_per_source_metadata_are_migrated_on_the_next_write(env):
    from fieldlabel.registry.model import to_item

    data = jpeg(color=(7, 7, 7))
    import hashlib

    pid = f"sha256:{hashlib.sha256(data).hexdigest()}"
    legacy = {"photo_id": pid, "status": "PENDING", "source_keys": {"uploads/old/a.jpg"},
              "original": {"bucket": BUCKET, "key": "uploads/old/a.jpg"}, "exif": {"fields": {}, "issues": []},
              "sidecar": {"key": "uploads/old/a.json", "seq": "0001", "fields": {"site_id": "OLD"}, "issues": []},
              "field": {"site_id": "OLD"}, "metadata_issues": []}
    env.ddb.put_item(TableName=PHOTOS, Item=to_item(legacy))
    assert run(env, [env.put("uploads/new/b.jpg", data)]).failures == {}
    (item,) = env.all_photos()
    assert "sidecar" not in item
    assert item["sources"] == {"uploads/old/a.jpg": {"sidecar": legacy["sidecar"]}, "uploads/new/b.jpg": {}}
    assert item["field"] == {"site_id": "OLD"}


def test_non_created_events_and_keys_outside_uploads_are_ignored(env):
    copy = s3_record("labeling-copies/sha256-x.jpg", 10)
    removed = s3_record("uploads/a/gone.jpg", 10, event_name="ObjectRemoved:Delete")
    vanished = s3_record("uploads/a/vanished.jpg", 10)  # event for an object that no longer exists
    report = run(env, [copy, removed, vanished])
    assert report.failures == {} and env.all_photos() == [] and report.skipped == 1


def test_versioned_bucket_reads_and_tags_the_version_named_in_the_event(env):
    # Given a versioned bucket where a key first held text and then a real photo
    env.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = "uploads/v/IMG_9.jpg"
    v1 = env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"oops, a text file")["VersionId"]
    photo = jpeg(color=(1, 200, 3))
    v2 = env.s3.put_object(Bucket=BUCKET, Key=key, Body=photo)["VersionId"]
    # When both events arrive, newest first
    report = run(env, [s3_record(key, len(photo), version_id=v2), s3_record(key, 17, version_id=v1)],
                 DEDUPE_MODE="object")
    # Then each version is judged by its own bytes, and only the bad version is tagged
    assert report.registered == 1 and report.quarantined == {"not_an_image": 1}
    statuses = sorted((p["original"]["version_id"], p["status"]) for p in env.all_photos())
    assert statuses == sorted([(v1, "QUARANTINED"), (v2, "PENDING")])
    tags = {v: {t["Key"]: t["Value"] for t in env.s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=v)["TagSet"]}
            for v in (v1, v2)}
    assert tags[v1] == {"quarantine": "true", "quarantine-reason": "not_an_image"} and tags[v2] == {}
