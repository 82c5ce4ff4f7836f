"""Local validation: ``upload --dry-run`` on a bad-input corpus, and the photo/sidecar checks one by one."""

from __future__ import annotations

import io

import pytest
from fieldlabel_cli.validate import (
    EMPTY,
    NOT_AN_IMAGE,
    SIDECAR_INVALID_FIELD,
    SIDECAR_INVALID_JSON,
    SIDECAR_NOT_OBJECT,
    SIDECAR_ORPHAN,
    TOO_LARGE_BYTES,
    TOO_MANY_PIXELS,
    UNDECODABLE,
    UNSUPPORTED_TYPE,
    Limits,
    classify_photo_bytes,
    validate_sidecar_bytes,
)
from PIL import Image


@pytest.fixture
def bad_corpus(tmp_path, files):
    """A folder mixing good files with every kind of mistake a field season produces."""
    folder = tmp_path / "season"
    good = files.jpeg(1, size=(200, 150))
    files.write(folder / "good.jpg", good)
    files.write(folder / "good.json", {"site_id": "S1", "specimen_part": "leaf"})
    files.write(folder / "zero.jpg", b"")
    files.write(folder / "notes.jpg", "field notes, typed on the phone and saved with the wrong extension\n")
    files.write(folder / "cut.jpg", good[: len(good) // 2])  # truncated mid-scan, as by a full SD card
    files.write(folder / "plot" / "IMG_9.jpg", files.jpeg(9))
    files.write(folder / "plot" / "IMG_9.json", '{"site_id": "S9", "latitude": 48.1,')  # broken JSON
    files.write(folder / "plot" / "_folder.json", {"collector": "Ana", "latitude": 123})  # out of range
    files.write(folder / "orphan.json", {"site_id": "S1"})
    files.write(folder / "readme.txt", "hello")
    return folder


def test_dry_run_lists_every_rejection_with_its_reason_and_sends_nothing(bad_corpus, cli, aws_calls):
    # When the corpus is checked with --dry-run (no bucket, no credentials needed)
    r = cli("upload", str(bad_corpus), "--dry-run", "--json")

    # Then it succeeds without a single AWS call
    assert r.code == 0, r.stderr
    assert aws_calls.calls == []
    report = r.json()
    reasons = {x["path"]: x["reason"] for x in report["rejected"]}
    # And each bad file is rejected for the right reason
    assert reasons == {
        "zero.jpg": EMPTY,
        "notes.jpg": NOT_AN_IMAGE,
        "cut.jpg": UNDECODABLE,
        "plot/IMG_9.json": SIDECAR_INVALID_JSON,
        "plot/_folder.json": SIDECAR_INVALID_FIELD,
        "orphan.json": SIDECAR_ORPHAN,
        "readme.txt": UNSUPPORTED_TYPE,
    }
    # And the good files (sidecar first) are what would be uploaded
    assert report["would_upload"] == ["good.json", "good.jpg", "plot/IMG_9.jpg"]
    assert report["dry_run"] is True
    details = {x["path"]: x["detail"] for x in report["rejected"]}
    assert "latitude" in details["plot/_folder.json"]
    assert "line 1" in details["plot/IMG_9.json"]


def test_dry_run_human_output_names_files_and_reasons(bad_corpus, cli):
    r = cli("upload", str(bad_corpus), "--dry-run")
    assert r.code == 0
    assert "Dry run: nothing was sent. 3 file(s) would be uploaded" in r.stdout
    assert "zero.jpg: empty" in r.stdout
    assert "cut.jpg: undecodable" in r.stdout
    assert "rejected: 7" in r.stdout


def test_strict_makes_rejections_fail_the_run(bad_corpus, cli):
    assert cli("upload", str(bad_corpus), "--dry-run", "--strict").code == 1


def test_sidecar_of_a_rejected_photo_is_rejected_too(tmp_path, files, cli):
    folder = tmp_path / "f"
    files.write(folder / "IMG_1.jpg", b"")
    files.write(folder / "IMG_1.json", {"site_id": "S1"})
    r = cli("upload", str(folder), "--dry-run", "--json")
    rejected = {x["path"]: (x["reason"], x["detail"]) for x in r.json()["rejected"]}
    assert rejected["IMG_1.json"] == (SIDECAR_ORPHAN, "its photo was rejected")


def test_unknown_sidecar_fields_are_warnings_not_rejections(tmp_path, files, cli):
    folder = tmp_path / "f"
    files.write(folder / "IMG_1.jpg", files.jpeg(1))
    files.write(folder / "IMG_1.json", {"site_id": "S1", "weather": "rain"})
    r = cli("upload", str(folder), "--dry-run", "--json").json()
    assert r["rejected"] == []
    assert r["would_upload"] == ["IMG_1.json", "IMG_1.jpg"]
    assert r["warnings"] == [{"path": "IMG_1.json", "message": "unknown field 'weather' (ignored by intake)"}]


# --- the photo classifier ------------------------------------------------------------------------------------------


def _image_bytes(fmt: str, size=(40, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 120, 30) if mode == "RGB" else 0).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_accepted_formats_pass_with_their_dimensions(fmt):
    v = classify_photo_bytes(_image_bytes(fmt))
    assert v.ok and v.format == fmt and (v.width, v.height) == (40, 30)


def test_heic_passes_when_pillow_heif_is_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        data = _image_bytes("HEIF")
    except (KeyError, OSError, ValueError):
        pytest.skip("this pillow-heif build cannot encode HEIF")
    assert classify_photo_bytes(data).ok


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_formats_intake_converts_are_accepted_like_intake_does(fmt):
    # Intake makes a JPEG labeling copy of any decodable image, so the CLI must not reject these.
    v = classify_photo_bytes(_image_bytes(fmt, mode="L"))
    assert v.ok and v.format == fmt


def test_byte_limit_is_checked_before_decoding():
    data = _image_bytes("PNG")
    assert classify_photo_bytes(data, limits=Limits(max_bytes=len(data) - 1)).reason == TOO_LARGE_BYTES
    assert classify_photo_bytes(data, limits=Limits(max_bytes=len(data))).ok


def test_pixel_limit_uses_the_header_dimensions():
    data = _image_bytes("PNG", size=(100, 100))
    assert classify_photo_bytes(data, limits=Limits(max_pixels=9_999)).reason == TOO_MANY_PIXELS
    assert classify_photo_bytes(data, limits=Limits(max_pixels=10_000)).ok


def test_truncated_png_is_undecodable(files):
    # Noise does not compress, so half the file cuts the pixel data, not the header: the size is read, decoding fails.
    img = Image.open(io.BytesIO(files.jpeg(3, size=(300, 300))))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    v = classify_photo_bytes(data[: len(data) // 2])
    assert v.reason == UNDECODABLE
    assert "truncated" in v.detail


# --- the sidecar checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "error_fragment"),
    [
        ('{"site_id": 12}', "site_id: expected a string"),
        ('{"site_id": ""}', "site_id: empty"),
        ('{"site_id": "' + "x" * 65 + '"}', "site_id: longer than 64"),
        ('{"notes": "' + "x" * 2001 + '"}', "notes: longer than 2000"),
        ('{"latitude": -90.5}', "latitude"),
        ('{"latitude": true}', "latitude"),
        ('{"longitude": 180.01}', "longitude"),
        ('{"specimen_part": "root"}', "specimen_part: 'root' is not one of"),
        ('{"captured_at": "last tuesday"}', "captured_at: 'last tuesday' is not an ISO-8601"),
    ],
)
def test_invalid_field_values_reject_the_sidecar(doc, error_fragment):
    v = validate_sidecar_bytes(doc.encode())
    assert v.reason == SIDECAR_INVALID_FIELD
    assert any(error_fragment in e for e in v.errors), v.errors


def test_a_byte_order_mark_is_tolerated_like_intake_does():
    assert validate_sidecar_bytes(b'\xef\xbb\xbf{"site_id": "S1"}').ok


def test_a_complete_valid_sidecar_passes():
    doc = (b'{"site_id": "S12", "collector": "Ana", "notes": "north slope", "suspected_species": "quercus-robur",'
           b' "captured_at": "2026-05-14T09:30:00Z", "latitude": -90, "longitude": 180, "habitat": "riparian",'
           b' "specimen_part": "bark"}')
    v = validate_sidecar_bytes(doc)
    assert v.ok and v.errors == [] and v.warnings == []


@pytest.mark.parametrize(("raw", "reason"), [(b"[1, 2]", SIDECAR_NOT_OBJECT), (b"\xff\xfe", SIDECAR_INVALID_JSON),
                                             (b"{'single': 'quotes'}", SIDECAR_INVALID_JSON),
                                             (b'{"latitude": NaN}', SIDECAR_INVALID_JSON)])
def test_non_objects_and_non_json_are_rejected(raw, reason):
    assert validate_sidecar_bytes(raw).reason == reason


def test_ctrl_c_while_checking_stops_without_checking_the_rest(tmp_path, files, cli, monkeypatch):
    # Given 20 photos and a real SIGINT delivered to the main thread (where Python raises KeyboardInterrupt) while the
    # 3rd check runs. The check then waits until the command has cancelled what was queued, so the outcome depends on
    # neither the machine's load nor thread scheduling.
    import concurrent.futures as cf
    import signal
    import threading

    folder = tmp_path / "card"
    for i in range(20):
        files.write(folder / f"IMG_{i:02d}.jpg", files.jpeg(i))
    checked: list[int] = []
    cancelled = threading.Event()
    import fieldlabel_cli.upload as upload_module

    real = upload_module.classify_photo_bytes
    real_shutdown = cf.ThreadPoolExecutor.shutdown

    def classify(data, *, limits):
        checked.append(1)
        if len(checked) == 3:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            assert cancelled.wait(timeout=60), "the command never shut its pool down after Ctrl-C"
        return real(data, limits=limits)

    def shutdown(self, wait=True, *, cancel_futures=False):
        real_shutdown(self, wait=False, cancel_futures=cancel_futures)  # the queue is emptied (or not) first
        cancelled.set()
        real_shutdown(self, wait=wait, cancel_futures=cancel_futures)

    monkeypatch.setattr(upload_module, "classify_photo_bytes", classify)
    monkeypatch.setattr(cf.ThreadPoolExecutor, "shutdown", shutdown)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        r = cli("upload", str(folder), "--dry-run", "--workers", "1")
    finally:
        signal.signal(signal.SIGINT, previous)

    # Then the run ends at once with 130, and the queued photos were never checked
    assert r.code == 130
    assert len(checked) == 3
