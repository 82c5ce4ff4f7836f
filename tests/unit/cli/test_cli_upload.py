"""``fieldlabel upload`` against moto: layout, checksums, resume, duplicates, progress, sidecar order."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from fieldlabel_cli.upload import STATE_FILE, UploadState, execute_upload, plan_upload
from moto import mock_aws

BUCKET = "intake-test"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def make_folder(tmp_path, files, n: int = 5):
    folder = tmp_path / "survey"
    for i in range(n):
        files.write(folder / f"IMG_{i}.jpg", files.jpeg(i))
    return folder


def test_upload_puts_photos_and_sidecars_under_uploads_prefix_with_sha256_metadata(s3, tmp_path, files, cli):
    # Given a folder with a sub-folder, a per-photo sidecar and a folder sidecar
    folder = tmp_path / "survey"
    photo = files.write(folder / "plot-a" / "IMG_1.jpg", files.jpeg(1))
    files.write(folder / "plot-a" / "IMG_1.json", {"site_id": "S12", "latitude": 48.1})
    files.write(folder / "plot-a" / "_folder.json", {"collector": "Ana"})
    files.write(folder / "IMG_2.png", files.png(2))

    # When it is uploaded with a prefix
    r = cli("upload", str(folder), "--bucket", BUCKET, "--prefix", "site-12", "--json")

    # Then every file sits under uploads/site-12/<relative path>
    assert r.code == 0, r.stderr
    assert keys(s3) == [
        "uploads/site-12/IMG_2.png",
        "uploads/site-12/plot-a/IMG_1.jpg",
        "uploads/site-12/plot-a/IMG_1.json",
        "uploads/site-12/plot-a/_folder.json",
    ]
    # And the photo carries the whole file's SHA-256 as metadata, an S3 SHA-256 checksum, and its content type
    head = s3.head_object(Bucket=BUCKET, Key="uploads/site-12/plot-a/IMG_1.jpg", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert "ChecksumSHA256" in head
    assert head["ContentType"] == "image/jpeg"
    assert r.json()["counts"]["uploaded"] == 4


def test_rerun_skips_everything_via_the_state_file(s3, tmp_path, files, cli, aws_calls):
    # Given a folder uploaded once
    folder = make_folder(tmp_path, files, 4)
    assert cli("upload", str(folder), "--bucket", BUCKET).code == 0
    assert aws_calls.count("PutObject") == 4
    assert (folder / STATE_FILE).exists()

    # When it is uploaded again
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")

    # Then nothing is sent again, not even a HeadObject: the state file answers
    assert r.code == 0
    assert aws_calls.count("PutObject") == 4
    assert aws_calls.count("HeadObject") == 4  # only the first run's checks
    assert r.json()["counts"] == {"uploaded": 0, "would_upload": 0, "skipped": 4, "duplicates": 0, "rejected": 0,
                                  "failed": 0}


def test_resume_after_interruption_uploads_only_the_rest(s3, tmp_path, files, cli, aws_calls):
    # Given 6 photos and an upload that is interrupted (Ctrl-C) during the 4th PutObject
    folder = make_folder(tmp_path, files, 6)
    aws_calls.fail_on = ("PutObject", 4, KeyboardInterrupt())
    first = cli("upload", str(folder), "--bucket", BUCKET, "--workers", "1")
    assert first.code == 130
    assert "resume" in first.stderr
    assert len(keys(s3)) == 3
    recorded = json.loads((folder / STATE_FILE).read_text())["files"]
    assert sorted(recorded) == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"]

    # When the same command runs again
    aws_calls.fail_on = None
    puts_before = aws_calls.count("PutObject")
    second = cli("upload", str(folder), "--bucket", BUCKET, "--workers", "1", "--json")

    # Then only the 3 remaining photos are sent
    assert second.code == 0, second.stderr
    assert aws_calls.count("PutObject") - puts_before == 3
    assert second.json()["counts"]["uploaded"] == 3
    assert second.json()["counts"]["skipped"] == 3
    assert len(keys(s3)) == 6


def test_files_already_in_the_bucket_are_recognised_without_a_state_file(s3, tmp_path, files, cli, aws_calls):
    # Given a folder uploaded once, whose state file is then lost
    folder = make_folder(tmp_path, files, 3)
    assert cli("upload", str(folder), "--bucket", BUCKET).code == 0
    (folder / STATE_FILE).unlink()
    # and one photo changed since (same name, other content)
    files.write(folder / "IMG_1.jpg", files.jpeg(100))
    puts_before = aws_calls.count("PutObject")

    # When it is uploaded again
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")

    # Then HeadObject (size + sha256 metadata) spares the 2 unchanged photos; only the changed one is sent
    assert r.code == 0
    assert aws_calls.count("PutObject") - puts_before == 1
    assert r.json()["uploaded"] == ["IMG_1.jpg"]
    assert sorted(r.json()["skipped"]) == ["IMG_0.jpg", "IMG_2.jpg"]


def test_duplicate_photos_in_the_folder_are_uploaded_once(s3, tmp_path, files, cli):
    # Given the same photo under three names (e.g. copied from two cards)
    folder = tmp_path / "survey"
    same = files.jpeg(7)
    files.write(folder / "a" / "IMG_7.jpg", same)
    files.write(folder / "b" / "IMG_7.jpg", same)
    files.write(folder / "b" / "copy.jpeg", same)
    files.write(folder / "other.jpg", files.jpeg(8))

    # When uploaded
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")

    # Then the first (in path order) is uploaded and the others are reported as its duplicates
    assert r.code == 0
    assert keys(s3) == ["uploads/a/IMG_7.jpg", "uploads/other.jpg"]
    assert r.json()["duplicates"] == [
        {"path": "b/IMG_7.jpg", "duplicate_of": "a/IMG_7.jpg"},
        {"path": "b/copy.jpeg", "duplicate_of": "a/IMG_7.jpg"},
    ]


def test_sidecar_of_a_duplicate_photo_is_reported_not_sent(s3, tmp_path, files, cli):
    # The duplicate photo is not uploaded, so its own metadata would attach to nothing: the scientist must see it.
    folder = tmp_path / "survey"
    same = files.jpeg(7)
    files.write(folder / "a" / "IMG_7.jpg", same)
    files.write(folder / "b" / "IMG_7.jpg", same)
    files.write(folder / "b" / "IMG_7.json", {"site_id": "S-other"})
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")
    assert r.code == 0
    assert keys(s3) == ["uploads/a/IMG_7.jpg"]
    assert r.json()["rejected"] == [{"path": "b/IMG_7.json", "reason": "sidecar_orphan",
                                     "detail": "its photo is a duplicate of a/IMG_7.jpg and is not uploaded"}]


def test_identical_sidecars_of_different_photos_are_not_treated_as_duplicates(s3, tmp_path, files, cli):
    folder = tmp_path / "survey"
    for i in range(2):
        files.write(folder / f"IMG_{i}.jpg", files.jpeg(i))
        files.write(folder / f"IMG_{i}.json", {"site_id": "S1"})
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")
    assert r.code == 0
    assert keys(s3) == ["uploads/IMG_0.jpg", "uploads/IMG_0.json", "uploads/IMG_1.jpg", "uploads/IMG_1.json"]


def test_sidecars_are_uploaded_before_any_photo(s3, tmp_path, files, cli, aws_calls):
    # Sidecars first, so that a photo is registered with its metadata at once.
    folder = tmp_path / "survey"
    for i in range(3):
        files.write(folder / f"IMG_{i}.jpg", files.jpeg(i))
        files.write(folder / f"IMG_{i}.json", {"site_id": f"S{i}"})
    files.write(folder / "_folder.json", {"collector": "Ana"})
    assert cli("upload", str(folder), "--bucket", BUCKET, "--workers", "4").code == 0
    order = [params["Key"] for name, params in aws_calls.params if name == "PutObject"]
    kinds = ["json" if k.endswith(".json") else "photo" for k in order]
    assert kinds == ["json"] * 4 + ["photo"] * 3


def test_large_files_use_multipart_and_keep_the_whole_file_sha256(s3, tmp_path, files):
    # Given a photo above the multipart threshold (a small threshold here, to keep the test fast)
    from boto3.s3.transfer import TransferConfig

    folder = tmp_path / "survey"
    big = files.write(folder / "big.jpg", files.jpeg(1, size=(1200, 900)))
    state = UploadState(folder / STATE_FILE)
    plan = plan_upload(folder, state=state, bucket=BUCKET)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))

    # When uploaded with a 5 MiB part size and a threshold below the file size
    config = TransferConfig(multipart_threshold=64 * 1024, multipart_chunksize=5 * 1024 * 1024, use_threads=False)
    assert big.stat().st_size > 64 * 1024
    summary = execute_upload(plan, s3=s3, bucket=BUCKET, state=state, transfer_config=config)

    # Then it went up as a multipart upload, still with the whole file's SHA-256 in the metadata
    assert summary.uploaded == ["big.jpg"]
    assert "CreateMultipartUpload" in calls and "PutObject" not in calls
    head = s3.head_object(Bucket=BUCKET, Key="uploads/big.jpg")
    assert head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


def test_non_interactive_progress_has_no_carriage_returns(s3, tmp_path, files, cli):
    # Given stderr is not a terminal (CI log, pipe)
    folder = make_folder(tmp_path, files, 5)

    # When uploading with a progress line every 2 files
    r = cli("upload", str(folder), "--bucket", BUCKET, "--progress-every", "2")

    # Then progress is plain lines, never a carriage return
    assert r.code == 0
    assert "\r" not in r.stderr and "\r" not in r.stdout
    # both phases report: checking the photos, then sending them
    lines = r.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "2/5 files checked", "4/5 files checked", "2/5 files sent", "4/5 files sent"]
    assert "Uploaded 5 file(s)" in r.stdout


def test_interactive_progress_redraws_one_line(s3, tmp_path, files, cli):
    folder = make_folder(tmp_path, files, 3)
    r = cli("upload", str(folder), "--bucket", BUCKET, stderr_tty=True)
    assert r.code == 0
    assert r.stderr.count("\r") >= 2
    assert r.stderr.endswith("\n")
    assert "3/3 files checked" in r.stderr and "3/3 files sent" in r.stderr


def test_failed_file_is_reported_and_retried_on_the_next_run(s3, tmp_path, files, cli, aws_calls):
    # Given a transient per-file error (not a bucket-wide one) on the 2nd PutObject
    from botocore.exceptions import ClientError

    folder = make_folder(tmp_path, files, 3)
    err = ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "PutObject")
    aws_calls.fail_on = ("PutObject", 2, err)
    first = cli("upload", str(folder), "--bucket", BUCKET, "--workers", "1", "--json")

    # Then the run goes on, reports the failure and exits 1
    assert first.code == 1
    assert first.json()["counts"]["uploaded"] == 2
    assert first.json()["failed"][0]["path"] == "IMG_1.jpg"
    # And the next run sends just that file
    aws_calls.fail_on = None
    second = cli("upload", str(folder), "--bucket", BUCKET, "--json")
    assert second.code == 0
    assert second.json()["uploaded"] == ["IMG_1.jpg"]


def test_state_file_for_another_bucket_is_not_trusted(s3, tmp_path, files, cli):
    folder = make_folder(tmp_path, files, 2)
    assert cli("upload", str(folder), "--bucket", BUCKET).code == 0
    s3.create_bucket(Bucket="other-bucket")
    r = cli("upload", str(folder), "--bucket", "other-bucket", "--json")
    assert r.code == 0
    assert r.json()["counts"]["uploaded"] == 2


def test_bucket_comes_from_the_outputs_file(s3, tmp_path, files, cli):
    folder = make_folder(tmp_path, files, 1)
    outputs = files.write(tmp_path / "outputs.json", {"treelabel-Storage": {"IntakeBucketName": BUCKET}})
    r = cli("upload", str(folder), "--outputs", str(outputs))
    assert r.code == 0, r.stderr
    assert keys(s3) == ["uploads/IMG_0.jpg"]


def test_read_only_folder_still_uploads_and_warns(s3, tmp_path, files, cli, monkeypatch):
    # Given a folder where the state file cannot be written (a write-protected card)
    folder = make_folder(tmp_path, files, 2)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.write_text", refuse)
    r = cli("upload", str(folder), "--bucket", BUCKET, "--json")
    monkeypatch.undo()

    # Then the photos are uploaded, the problem is a warning, and a rerun finds them via HeadObject
    assert r.code == 0, r.stderr
    assert len(keys(s3)) == 2
    assert any("cannot write .fieldlabel-upload.json" in w["message"] for w in r.json()["warnings"])
    again = cli("upload", str(folder), "--bucket", BUCKET, "--json")
    assert again.json()["counts"]["skipped"] == 2 and again.json()["counts"]["uploaded"] == 0


def test_upload_to_a_moto_server_through_endpoint_url(tmp_path, files, cli):
    # The offline demo runs a moto server; --endpoint-url must carry every request there over real HTTP.
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        s3.create_bucket(Bucket="demo-intake")
        folder = make_folder(tmp_path, files, 2)
        files.write(folder / "IMG_0.json", {"site_id": "S1"})
        outputs = files.write(tmp_path / "demo-outputs.json", {"IntakeBucketName": "demo-intake"})

        r = cli("upload", str(folder), "--outputs", str(outputs), "--endpoint-url", endpoint, "--prefix", "demo")

        assert r.code == 0, r.stderr
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="demo-intake")["Contents"])
        assert listed == ["uploads/demo/IMG_0.jpg", "uploads/demo/IMG_0.json", "uploads/demo/IMG_1.jpg"]
    finally:
        server.stop()
