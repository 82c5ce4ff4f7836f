"""Register computes each photo's embedding once, from what ``labeling_ref`` points to, in the registration's write;
a photo whose embedding fails is registered anyway, with the reason in ``metadata_issues``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fieldlabel.embedding import build_embedder, decode_embedding, open_image
from fieldlabel.intake.register import SqsMessage, register_messages
from intake_helpers import BUCKET, RequestCounter, fast_moto_transactions, jpeg, make_env, png, register_settings
from moto import mock_aws

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lite0():
    return build_embedder("lite0")


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


def run(env, records: list[dict[str, Any]], embedder, **overrides):
    msgs = [SqsMessage(f"m{i}", json.dumps({"Records": [r]})) for i, r in enumerate(records)]
    return register_messages(msgs, s3=env.s3, ddb=env.ddb, lambda_client=None,
                             settings=register_settings(**overrides), now=NOW, embedder=embedder)


def by_key(env) -> dict[str, dict[str, Any]]:
    return {k: p for p in env.all_photos() for k in p.get("source_keys", set())}


class CountingEmbedder:
    """A real embedder that records how many images it was asked to embed, and refuses marked ones."""

    def __init__(self, real, *, model_id: str | None = None, refuse_colour: tuple[int, int, int] | None = None):
        self.real, self.images = real, 0
        self.model_id = model_id or real.model_id
        self.refuse_colour = refuse_colour

    def _check(self, img) -> None:
        if self.refuse_colour and img.getpixel((img.width - 1, img.height - 1)) == self.refuse_colour:
            raise RuntimeError("cannot embed this one")

    def embed_images(self, imgs):
        for img in imgs:
            self._check(img)
        self.images += len(imgs)
        return self.real.embed_images(imgs)

    def embed_image(self, img):
        self._check(img)
        self.images += 1
        return self.real.embed_image(img)


def test_the_stored_embedding_is_what_the_workflow_would_compute_from_labeling_ref(env, lite0):
    # Given a photo usable as it is and one that needs an upright labeling copy
    plain = env.put("uploads/e/plain.jpg", jpeg(300, 200, color=(30, 140, 60)))
    rotated = env.put("uploads/e/rotated.jpg", jpeg(4032, 3024, orientation=6, color=(150, 90, 20), quality=40))
    counted = RequestCounter().attach(env.s3, env.ddb)
    report = run(env, [plain, rotated], lambda: lite0)
    assert report.failures == {} and (report.registered, report.embedded, report.copies_made) == (2, 2, 1)
    # Then each entry holds float16 bytes of the embedding of the image its labeling_ref points to
    vectors = []
    for key in ("uploads/e/plain.jpg", "uploads/e/rotated.jpg"):
        photo = by_key(env)[key]
        assert photo["embedding_model"] == lite0.model_id and "embedding_issue" not in photo
        stored = decode_embedding(photo["embedding"])
        bucket, ref_key = photo["labeling_ref"].removeprefix("s3://").split("/", 1)
        ref_bytes = env.s3.get_object(Bucket=bucket, Key=ref_key)["Body"].read()
        expected = lite0.embed_image(open_image(ref_bytes))
        np.testing.assert_allclose(stored, expected, atol=4e-3, rtol=1e-3)  # float16 storage
        vectors.append(stored)
    assert np.abs(vectors[0] - vectors[1]).max() > 0.1
    assert by_key(env)["uploads/e/rotated.jpg"]["labeling_ref"].startswith(f"s3://{BUCKET}/labeling-copies/")
    # and no request was added for it: one UpdateItem per photo carries it
    assert counted.calls.count("UpdateItem") == 2 + 1  # + the pending counter


def test_a_duplicate_is_not_embedded_again_unless_the_model_changed(env, lite0):
    data = jpeg(120, 90, color=(10, 200, 10))
    first, second = env.put("uploads/d/a.jpg", data), env.put("uploads/d/b.jpg", data)
    embedder = CountingEmbedder(lite0)
    run(env, [first], lambda: embedder)
    stored = by_key(env)["uploads/d/a.jpg"]["embedding"]
    report = run(env, [second], lambda: embedder)
    assert (report.duplicates, report.embedded, embedder.images) == (1, 0, 1)
    assert by_key(env)["uploads/d/b.jpg"]["embedding"] == stored
    newer = CountingEmbedder(lite0, model_id="effnet-lite0-v2-00000000")
    report = run(env, [first], lambda: newer)
    assert (report.embedded, newer.images) == (1, 1)
    assert by_key(env)["uploads/d/a.jpg"]["embedding_model"] == "effnet-lite0-v2-00000000"


def test_a_photo_that_cannot_be_embedded_is_registered_with_the_reason(env, lite0):
    # Given three photos of one batch, one of which the embedder refuses
    good = [env.put(f"uploads/f/{i}.jpg", jpeg(80, 60, color=(20 * i, 100, 100))) for i in range(2)]
    bad = env.put("uploads/f/bad.png", png(80, 60))
    embedder = CountingEmbedder(lite0, refuse_colour=(10, 120, 10))  # png()'s fill colour
    report = run(env, [good[0], bad, good[1]], lambda: embedder)
    # Then all three are registered, the two others still get theirs, and the failure is reported on the photo
    assert report.failures == {} and report.registered == 3
    assert (report.embedded, report.embedding_failures) == (2, 1)
    photos = by_key(env)
    assert all("embedding" in photos[f"uploads/f/{i}.jpg"] for i in range(2))
    failed = photos["uploads/f/bad.png"]
    assert failed["status"] == "PENDING" and "embedding" not in failed
    assert failed["embedding_issue"] == "RuntimeError: cannot embed this one"
    assert failed["metadata_issues"] == ["embedding: RuntimeError: cannot embed this one"]


def test_missing_models_register_every_photo_and_a_later_sidecar_keeps_the_issue(env):
    def unavailable():
        raise FileNotFoundError("/opt/fieldlabel-models/efficientnet-lite0.onnx")

    photo = env.put("uploads/g/IMG_1.jpg", jpeg())
    report = run(env, [photo], unavailable)
    assert report.registered == 1 and report.embedding_failures == 1 and report.failures == {}
    sidecar = env.put("uploads/g/IMG_1.json", json.dumps({"site_id": "S1"}).encode(), sequencer="00E1")
    run(env, [sidecar], unavailable)
    item = by_key(env)["uploads/g/IMG_1.jpg"]
    assert item["field"] == {"site_id": "S1"}
    assert item["metadata_issues"] == [
        "embedding: model unavailable: FileNotFoundError: /opt/fieldlabel-models/efficientnet-lite0.onnx"]


def test_a_later_successful_embedding_clears_the_issue(env, lite0):
    def unavailable():
        raise RuntimeError("no models")

    rec = env.put("uploads/h/a.jpg", jpeg())
    run(env, [rec], unavailable)
    assert by_key(env)["uploads/h/a.jpg"]["embedding_issue"]
    run(env, [rec], lambda: lite0)  # SQS redelivers, or the photo is uploaded again
    item = by_key(env)["uploads/h/a.jpg"]
    assert "embedding_issue" not in item and item["metadata_issues"] == [] and len(item["embedding"]) == 2560


def test_embedding_can_be_left_to_the_workflow(env, lite0):
    embedder = CountingEmbedder(lite0)
    report = run(env, [env.put("uploads/i/a.jpg", jpeg())], lambda: embedder, EMBED_AT_INTAKE="false")
    assert report.registered == 1 and embedder.images == 0
    assert "embedding" not in by_key(env)["uploads/i/a.jpg"]
