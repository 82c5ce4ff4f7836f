"""A bad-input corpus generated here, each file with its expected outcome: through the validator and end to end."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from fieldlabel.intake.exif import read_exif
from fieldlabel.intake.media import QUARANTINE_REASONS, Quarantine, inspect_image, make_labeling_copy
from fieldlabel.intake.register import SqsMessage, register_messages
from intake_helpers import (
    BUCKET,
    encoded,
    fast_moto_transactions,
    jpeg,
    make_env,
    png,
    png_with_declared_size,
    register_settings,
)
from moto import mock_aws
from PIL import Image

_GOOD = jpeg(300, 200, color=(30, 160, 60))

# key, bytes, expected (status, reason-or-format, copy made)
CORPUS = [
    ("uploads/c/good.jpg", _GOOD, ("PENDING", "JPEG", False)),
    ("uploads/c/truncated.jpg", _GOOD[: len(_GOOD) // 2], ("QUARANTINED", "undecodable", None)),
    ("uploads/c/zero.jpg", b"", ("QUARANTINED", "empty", None)),
    ("uploads/c/readme.jpg", b"This is a text file that someone renamed.\n" * 3, ("QUARANTINED", "not_an_image", None)),
    ("uploads/c/really-a-png.jpg", png(50, 40), ("PENDING", "PNG", False)),
    ("uploads/c/alpha.png", png(50, 40, mode="RGBA"), ("PENDING", "PNG", False)),
    ("uploads/c/phone.HEIC", encoded("HEIF", 48, 32), ("PENDING", "HEIF", True)),
    ("uploads/c/scan.tiff", encoded("TIFF"), ("PENDING", "TIFF", True)),
    ("uploads/c/web.webp", encoded("WEBP"), ("PENDING", "WEBP", True)),
    ("uploads/c/old.gif", encoded("GIF"), ("PENDING", "GIF", True)),
    ("uploads/c/bomb.png", png_with_declared_size(40_000, 40_000), ("QUARANTINED", "too_many_pixels", None)),
    ("uploads/c/big-declared.png", png_with_declared_size(12_000, 9_000), ("QUARANTINED", "too_many_pixels", None)),
    ("uploads/c/rotated.jpg", jpeg(64, 48, orientation=8), ("PENDING", "JPEG", True)),
    ("uploads/c/wide.jpg", jpeg(4000, 100, quality=40), ("PENDING", "JPEG", True)),
    ("uploads/c/dir with spaces/ünïcödé photo.jpg", jpeg(30, 30, color=(1, 2, 250)), ("PENDING", "JPEG", False)),
]


@pytest.fixture(scope="module")
def registered():
    with mock_aws(), fast_moto_transactions():
        env = make_env()
        msgs = [SqsMessage(f"m{i}", json.dumps({"Records": [env.put(k, d)]})) for i, (k, d, _) in enumerate(CORPUS)]
        report = register_messages(msgs, s3=env.s3, ddb=env.ddb, lambda_client=None,
                                   settings=register_settings(MAX_PIXELS=100_000_000),
                                   now=datetime(2026, 11, 26, tzinfo=UTC))
        photos = {k: p for p in env.all_photos() for k in p["source_keys"]}
        tags = {k: env.tags(k) for k, _, _ in CORPUS}
        yield report, photos, tags


@pytest.mark.parametrize("key,data,expected", CORPUS, ids=[c[0].rsplit("/", 1)[1] for c in CORPUS])
def test_corpus_outcome(registered, key, data, expected):
    report, photos, tags = registered
    status, detail, copy_made = expected
    assert report.failures == {}
    photo = photos[key]
    assert photo["status"] == status
    if status == "QUARANTINED":
        assert detail in QUARANTINE_REASONS
        assert photo["quarantine_reason"] == detail
        assert tags[key] == {"quarantine": "true", "quarantine-reason": detail}
    else:
        assert photo["media"]["format"] == detail and photo["media"]["copy_made"] is copy_made
        assert "quarantine" not in tags[key]
        expected_ref = "labeling-copies/" if copy_made else key
        assert photo["labeling_ref"].startswith(f"s3://{BUCKET}/{expected_ref}")


def test_every_reason_code_is_exercised_by_the_corpus_or_register_tests():
    reasons = {e[2][1] for e in CORPUS if e[2][0] == "QUARANTINED"}
    # too_large_bytes depends on MAX_PHOTO_BYTES: test_intake_register covers it
    assert reasons | {"too_large_bytes"} == set(QUARANTINE_REASONS)


def test_labeling_copy_of_each_convertible_format_is_a_jpeg_within_limits():
    for _key, data, (status, _fmt, copy_made) in CORPUS:
        if status != "PENDING" or not copy_made:
            continue
        copy = Image.open(io.BytesIO(make_labeling_copy(inspect_image(data))))
        assert copy.format == "JPEG" and copy.mode in ("RGB", "L")
        assert copy.width <= 3840 and copy.height <= 2160
        assert not copy.getexif()  # no GPS or other EXIF leaves with the copy


def test_orientation_8_copy_is_upright():
    # orientation 8 = rotate 90° counter-clockwise for display: stored top-left ends bottom-left
    copy = Image.open(io.BytesIO(make_labeling_copy(inspect_image(jpeg(64, 48, orientation=8)))))
    assert copy.size == (48, 64)
    assert max(copy.getpixel((2, 61))) < 60 and max(copy.getpixel((45, 2))) > 120


def test_decompression_bomb_limit_is_configurable():
    data = png(200, 100)
    assert inspect_image(data, max_pixels=20_000).width == 200
    with pytest.raises(Quarantine) as exc:
        inspect_image(data, max_pixels=19_999)
    assert exc.value.reason == "too_many_pixels"


def test_exif_fields_gps_in_decimal_degrees_camera_and_time():
    data = jpeg(gps=(-33.8568, 151.2153), make="Apple", model="iPhone 15", taken="2026:04:02 09:15:00")
    fields, issues = read_exif(Image.open(io.BytesIO(data)))
    assert issues == []
    assert fields["camera_make"] == "Apple" and fields["camera_model"] == "iPhone 15"
    assert fields["captured_at"] == "2026-04-02T09:15:00"
    assert fields["latitude"] == pytest.approx(-33.8568, abs=1e-4)
    assert fields["longitude"] == pytest.approx(151.2153, abs=1e-4)


def test_bad_exif_time_is_an_issue_not_an_error():
    fields, issues = read_exif(Image.open(io.BytesIO(jpeg(taken="sometime in May"))))
    assert "captured_at" not in fields and len(issues) == 1
