"""release_batch_photos: the photo half of release_batch, for a finished job whose batch goes on."""

from __future__ import annotations

from datetime import timedelta

from fieldlabel.intake import release_batch_photos
from fieldlabel.intake.dispatch import run_dispatch
from intake_helpers import BATCHES, PHOTOS, dispatch_settings
from test_intake_dispatch import T0, batch_records, env, photos_by_status, seed_pending  # noqa: F401 - fixture


def test_releases_photos_still_batched_and_leaves_the_batch_alone(env):  # noqa: F811 - pytest fixture
    # Given a claimed batch of 4 in which Ground Truth labeled one photo
    ids = seed_pending(env, 4)
    claimed = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=dispatch_settings(env, BATCH_SIZE=4),
                           now=T0 + timedelta(minutes=1))
    batch_id = claimed.batches[0]["batch_id"]
    env.ddb.update_item(TableName=PHOTOS, Key={"photo_id": {"S": ids[0]}}, UpdateExpression="SET #s = :l",
                        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":l": {"S": "LABELED"}})
    status_before = batch_records(env)[batch_id]["status"]
    # When the three unlabeled photos are released (twice: idempotent)
    first = release_batch_photos(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id=batch_id,
                                 reason="no label from the job", max_attempts=3, now=T0 + timedelta(hours=1))
    again = release_batch_photos(env.ddb, photos_table=PHOTOS, batches_table=BATCHES, batch_id=batch_id,
                                 reason="no label from the job", max_attempts=3, now=T0 + timedelta(hours=1))
    # Then they back off with one attempt, the labeled one untouched, and the batch record unchanged
    assert (first.released, first.parked, again.released) == (3, 0, 0)
    waiting = photos_by_status(env)["BACKOFF"]
    assert sorted(p["photo_id"] for p in waiting) == ids[1:]
    assert all(p["attempts"] == 1 and p["last_batch_id"] == batch_id for p in waiting)
    record = batch_records(env)[batch_id]
    assert record["status"] == status_before and "failure_reason" not in record
