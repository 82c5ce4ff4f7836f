"""``fieldlabel export`` against moto, over dataset versions written by the workflow's publish step."""

from __future__ import annotations

import csv
import json

import pytest
from fieldlabel.labeling.publish import LATEST_KEY, MANIFEST_NAME
from moto import mock_aws
from operator_fixtures import ARTIFACTS, INTAKE, Photo, make_world, publish_batch

B1 = "b20261103t060000z-00000001"
B2 = "b20261110t060000z-00000002"


@pytest.fixture
def world(tmp_path):
    with mock_aws():
        w = make_world(tmp_path)
        publish_batch(w, B1, [Photo("sha256:old1", "pinus-sylvestris", True)], kind="human_only",
                      published_at="2026-11-03T12:00:00.000000Z")
        photos = [
            Photo("sha256:aa01", "quercus-robur", True, 0.97,
                  field={"site_id": "S12", "latitude": 52.1, "longitude": 4.3, "captured_at": "2026-10-01T09:00:00Z",
                         "collector": "Ana", "zz_extra": "x"}),
            Photo("sha256:aa02", "quercus-robur", False, 0.88, field={"site_id": "S12"},
                  review={"decision": "confirm", "reviewed_label": "quercus-robur", "confidence": 0.99,
                          "agreement": 1.0, "needs_adjudication": False, "job_name": "rj"}),
            Photo("sha256:aa03", "fagus-sylvatica", False, 0.91, key="labeling-copies/odd name:1.png"),
            Photo("sha256:aa04", "not-a-tree-or-cannot-tell", True, 0.5),
        ]
        w.published = publish_batch(w, B2, photos, kind="automated", published_at="2026-11-10T12:00:00.000000Z")
        yield w


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_latest_writes_manifest_csv_and_species_listings(world, cli, tmp_path):
    out = tmp_path / "export"
    r = cli("export", str(out), "--outputs", world.outputs)
    assert r.code == 0, r.stderr
    version = world.published["version"]
    folder = out / version
    assert f"Exported dataset {version}" in r.stdout and "4 photo(s), 3 species" in r.stdout
    # the manifest byte for byte
    published = world.s3.get_object(Bucket=ARTIFACTS, Key=f"datasets/{version}/{MANIFEST_NAME}")["Body"].read()
    assert (folder / MANIFEST_NAME).read_bytes() == published
    assert {p.name for p in folder.iterdir()} >= {"dataset.manifest", "dataset.csv", "species", "statistics.json",
                                                  "lineage.json"}
    rows = {row["photo_id"]: row for row in read_csv(folder / "dataset.csv")}
    assert set(rows) == {"sha256:aa01", "sha256:aa02", "sha256:aa03", "sha256:aa04"}
    a1, a2 = rows["sha256:aa01"], rows["sha256:aa02"]
    assert a1["source_ref"] == f"s3://{INTAKE}/labeling-copies/sha256-aa01.jpg"
    assert a1["original_ref"] == f"s3://{INTAKE}/uploads/site/aa01.HEIC"
    assert (a1["label"], a1["label_index"], a1["confidence"]) == ("quercus-robur", "0", "0.97")
    assert (a1["label_source"], a1["human_annotated"], a1["reviewed"]) == ("human", "yes", "no")
    assert (a2["label_source"], a2["reviewed"], a2["review_decision"]) == ("machine", "yes", "confirm")
    assert a1["field.site_id"] == "S12" and a1["field.latitude"] == "52.1" and a1["field.collector"] == "Ana"
    assert a2["field.latitude"] == ""
    header = next(csv.reader(open(folder / "dataset.csv", encoding="utf-8")))
    fields = [h for h in header if h.startswith("field.")]
    # known metadata first in a fixed order, unknown ones after
    assert fields == ["field.site_id", "field.captured_at", "field.latitude", "field.longitude", "field.collector",
                      "field.zz_extra"]
    assert (folder / "species" / "quercus-robur.txt").read_text().splitlines() == [
        f"s3://{INTAKE}/labeling-copies/sha256-aa01.jpg", f"s3://{INTAKE}/labeling-copies/sha256-aa02.jpg"]
    assert sorted(p.name for p in (folder / "species").iterdir()) == [
        "fagus-sylvatica.txt", "not-a-tree-or-cannot-tell.txt", "quercus-robur.txt"]
    assert json.loads((folder / "lineage.json").read_text())["batch_id"] == B2


def test_export_a_named_version_with_download_and_resume(world, cli, tmp_path):
    out = tmp_path / "export"
    version = f"v000001-{B1}"
    r = cli("export", str(out), "--outputs", world.outputs, "--version", version, "--download", "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["version"] == version and data["photos"] == 1 and data["downloaded"] == 1
    img = out / version / "images" / "pinus-sylvestris" / "sha256-old1.jpg"
    assert img.read_bytes() == b"jpeg bytes of sha256:old1"
    r = cli("export", str(out), "--outputs", world.outputs, "--version", version, "--download", "--json")
    assert r.json()["downloaded"] == 0 and r.json()["skipped_existing"] == 1


def test_download_names_files_safely_and_reports_missing_photos(world, cli, tmp_path):
    world.s3.delete_object(Bucket=INTAKE, Key="labeling-copies/sha256-aa04.jpg")
    out = tmp_path / "e"
    r = cli("export", str(out), "--outputs", world.outputs, "--download")
    assert r.code == 1  # one photo could not be fetched
    assert "Downloaded 3 photo(s)" in r.stdout and "failed: 1" in r.stdout and "sha256-aa04.jpg" in r.stdout
    images = out / world.published["version"] / "images"
    assert (images / "fagus-sylvatica" / "sha256-aa03.png").read_bytes() == b"jpeg bytes of sha256:aa03"
    assert not list(images.rglob("*.part"))


def test_download_originals(world, cli, tmp_path):
    world.s3.put_object(Bucket=INTAKE, Key="uploads/site/old1.HEIC", Body=b"original heic")
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--version", f"v000001-{B1}", "--download",
            "--originals", "--json")
    assert r.code == 0, r.stderr
    assert (tmp_path / f"v000001-{B1}" / "images" / "pinus-sylvestris" / "sha256-old1.heic").read_bytes() == \
        b"original heic"


def test_bad_input(world, cli, tmp_path):
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--version", "v000099-b20991231t000000z-deadbeef")
    assert r.code == 1
    assert "dataset version 'v000099-b20991231t000000z-deadbeef' not found" in r.stderr
    assert f"v000001-{B1}" in r.stderr  # the message lists the versions that exist
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--version", "newest")
    assert r.code == 2 and "not a dataset version: 'newest'" in r.stderr
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--originals")
    assert r.code == 2 and "--download" in r.stderr
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--workers", "0")
    assert r.code == 2
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    r = cli("export", str(afile), "--outputs", world.outputs)
    assert r.code == 2 and "not a folder" in r.stderr
    r = cli("export", str(tmp_path), "--outputs", world.outputs, "--artifacts-bucket", "no-such-bucket")
    assert r.code == 1 and "no-such-bucket" in r.stderr and "Traceback" not in r.stderr
    for line in r.stderr.splitlines():
        assert line.startswith("fieldlabel: error: ")


def test_nothing_published(world, cli, tmp_path):
    world.s3.delete_object(Bucket=ARTIFACTS, Key=LATEST_KEY)
    r = cli("export", str(tmp_path), "--outputs", world.outputs)
    assert r.code == 1 and "no dataset has been published yet" in r.stderr


def test_missing_config(cli, tmp_path):
    outputs = tmp_path / "o.json"
    outputs.write_text("{not json")
    r = cli("export", str(tmp_path), "--outputs", str(outputs))
    assert r.code == 2 and "is not valid JSON" in r.stderr
