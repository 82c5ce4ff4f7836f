"""Pure domain logic: event parsing, ids and dedupe keys, the dispatch decision, sidecar schema and merging."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fieldlabel.common.ids import BATCH_ID_PATTERN, content_photo_id, new_batch_id, object_photo_id, safe_photo_id
from fieldlabel.intake.dispatch import Decision, PendingStats, decide, execution_input, execution_name
from fieldlabel.intake.events import folder_of, normalise_sequencer, parse_message_body, stem_of
from fieldlabel.intake.settings import AL_MIN_OBJECTS, DispatchSettings, RegisterSettings
from fieldlabel.intake.sidecar import SIDECAR_SCHEMA, parse_sidecar, validate_sidecar
from fieldlabel.registry.photos import SidecarComponent, merge_field
from intake_helpers import s3_record
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[3]


# --- events ------------------------------------------------------------------------------------------------------


def test_s3_test_event_yields_nothing():
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-26T00:00:00Z",
                       "Bucket": "b", "RequestId": "r", "HostId": "h"})
    assert parse_message_body(body) == []


def test_keys_are_url_decoded_with_unquote_plus():
    raw = {"Records": [s3_record("uploads/a/x.jpg", 1)]}
    raw["Records"][0]["s3"]["object"]["key"] = "uploads/site+12/Fot%C3%B3+%2B1.jpg"
    (event,) = parse_message_body(json.dumps(raw))
    assert event.key == "uploads/site 12/Fotó +1.jpg"


def test_non_json_and_non_s3_bodies_raise():
    with pytest.raises(ValueError):
        parse_message_body("nope")
    with pytest.raises(ValueError):
        parse_message_body(json.dumps({"hello": 1}))


def test_folder_markers_removed_objects_and_foreign_prefixes_are_dropped():
    body = {"Records": [s3_record("uploads/a/", 0), s3_record("uploads/a/x.jpg", 1, event_name="ObjectRemoved:Delete"),
                        s3_record("labeling-copies/x.jpg", 1), s3_record("uploads/a/y.jpg", 1)]}
    assert [e.key for e in parse_message_body(json.dumps(body))] == ["uploads/a/y.jpg"]


def test_sidecar_classification_and_stems():
    body = {"Records": [s3_record(k, 1) for k in ("uploads/a/IMG_1.json", "uploads/a/_folder.json",
                                                  "uploads/a/IMG_1.HEIC")]}
    side, folder, photo = parse_message_body(json.dumps(body))
    assert side.is_sidecar and not side.is_folder_sidecar
    assert folder.is_sidecar and folder.is_folder_sidecar
    assert not photo.is_sidecar
    assert stem_of(side.key) == stem_of(photo.key) == "uploads/a/IMG_1"
    assert stem_of("uploads/a/IMG.1.jpg") == "uploads/a/IMG.1" and stem_of("uploads/a/noext") == "uploads/a/noext"
    assert folder_of(photo.key) == "uploads/a/" and folder_of("uploads/x.jpg") == "uploads/"


def test_sequencers_compare_numerically_after_normalising():
    assert normalise_sequencer("FF") > normalise_sequencer("0E")
    assert normalise_sequencer("100") > normalise_sequencer("FF")  # longer hex is later, not lexically smaller
    assert len(normalise_sequencer("0055AED6DCD90281E5")) == 32


# --- ids and dedupe keys -------------------------------------------------------------------------------------------


def test_content_and_object_dedupe_keys():
    digest = hashlib.sha256(b"abc").hexdigest()
    assert content_photo_id(digest) == f"sha256:{digest}"
    a = object_photo_id("b", "uploads/x.jpg", None)
    assert a.startswith("obj:") and len(a) == 4 + 64
    assert a == object_photo_id("b", "uploads/x.jpg", None)
    assert a != object_photo_id("b", "uploads/x.jpg", "v2") != object_photo_id("b", "uploads/y.jpg", None)
    assert safe_photo_id(f"sha256:{digest}") == f"sha256-{digest}"


def test_batch_ids_match_the_contract_pattern():
    now = datetime(2026, 11, 26, 6, 30, 0, tzinfo=UTC)
    assert new_batch_id(now, "1a2b3c4d") == "b20261126t063000z-1a2b3c4d"
    assert BATCH_ID_PATTERN.match(new_batch_id(now))
    with pytest.raises(ValueError):
        new_batch_id(now, "XYZ")
    assert execution_name("b20261126t063000z-1a2b3c4d") == "batch-b20261126t063000z-1a2b3c4d"
    assert execution_input("b1", 1300, "automated") == {"batch_id": "b1", "photo_count": 1300, "kind": "automated",
                                                        "attempt": 1}


# --- decision ----------------------------------------------------------------------------------------------------

BASE = {"PHOTOS_TABLE": "p", "BATCHES_TABLE": "b", "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:s",
        "BATCH_SIZE": "5000", "MAX_WAIT_SECONDS": "3600"}


def settings(**kw) -> DispatchSettings:
    return DispatchSettings.from_env({**BASE, **{k: str(v) for k, v in kw.items()}})


@pytest.mark.parametrize("count,age,overrides,expected", [
    (0, 99999, {}, Decision(False, "no pending photos")),
    (4999, 3599, {}, None),
    (5000, 0, {}, Decision(True, "count", "automated", 5000)),
    (250_000, 0, {}, Decision(True, "count", "automated", 100_000)),
    (250_000, 0, {"MAX_BATCH_SIZE": 20_000}, Decision(True, "count", "automated", 20_000)),
    (AL_MIN_OBJECTS, 3600, {}, Decision(True, "age", "automated", AL_MIN_OBJECTS)),
    (AL_MIN_OBJECTS - 1, 3600, {}, Decision(True, "age", "human_only", AL_MIN_OBJECTS - 1)),
    (AL_MIN_OBJECTS - 1, 3600, {"SMALL_BATCH_POLICY": "wait"}, None),
    (7000, 0, {"AUTOMATED_LABELING": "false"}, Decision(True, "count", "human_only", 7000)),
    (3, 3600, {"AUTOMATED_LABELING": "false", "SMALL_BATCH_POLICY": "wait"}, Decision(True, "age", "human_only", 3)),
])
def test_decide(count, age, overrides, expected):
    decision = decide(PendingStats(count, "x" if count else None, age), settings(**overrides))
    if expected is None:
        assert not decision.due
    else:
        assert decision == expected


def test_settings_validate_their_environment():
    assert settings().max_batch_size == 100_000 and settings(AUTOMATED_LABELING="false").automated_labeling is False
    with pytest.raises(ValidationError):
        settings(MAX_BATCH_SIZE=100_001)
    with pytest.raises(ValidationError):
        settings(SMALL_BATCH_POLICY="sometimes")
    with pytest.raises(ValidationError):
        RegisterSettings.from_env({"INTAKE_BUCKET": "i", "PHOTOS_TABLE": "p", "BATCHES_TABLE": "b",
                                   "DEDUPE_MODE": "name"})
    assert RegisterSettings.from_env({"INTAKE_BUCKET": "i", "PHOTOS_TABLE": "p", "BATCHES_TABLE": "b"}).dedupe_mode \
        == "content"


# --- sidecar -------------------------------------------------------------------------------------------------------


def test_schema_file_in_docs_is_the_one_the_code_validates_against():
    assert json.loads((ROOT / "docs" / "sidecar.schema.json").read_text()) == SIDECAR_SCHEMA


def test_sidecar_schema_matches_the_contract_fields():
    assert set(SIDECAR_SCHEMA["properties"]) == {"site_id", "collector", "notes", "suspected_species", "captured_at",
                                                 "latitude", "longitude", "habitat", "specimen_part"}


def test_valid_sidecar_keeps_every_field():
    payload = {"site_id": "S12", "collector": "Ana", "notes": "n" * 2000, "suspected_species": "quercus-robur",
               "captured_at": "2026-05-01T10:00:00Z", "latitude": -90, "longitude": 180, "habitat": "riverbank",
               "specimen_part": "leaf"}
    fields, issues = validate_sidecar(payload)
    assert issues == [] and fields == {**payload, "latitude": -90.0, "longitude": 180.0}


@pytest.mark.parametrize("payload,bad_field", [
    ({"site_id": "x" * 65}, "site_id"), ({"site_id": ""}, "site_id"), ({"latitude": 90.5}, "latitude"),
    ({"longitude": "12"}, "longitude"), ({"latitude": True}, "latitude"), ({"captured_at": "May 1st"}, "captured_at"),
    ({"specimen_part": "root"}, "specimen_part"), ({"notes": "n" * 2001}, "notes"), ({"tree_height": 3}, "tree_height"),
])
def test_each_invalid_field_is_dropped_and_reported(payload, bad_field):
    fields, issues = validate_sidecar({**payload, "collector": "Ana"})
    assert fields == {"collector": "Ana"}
    assert len(issues) == 1 and issues[0].startswith(bad_field)


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe\x00", b'{"latitude": NaN}', b"x" * 70_000])
def test_unparseable_sidecars_give_one_issue_and_no_fields(raw):
    fields, issues = parse_sidecar(raw)
    assert fields == {} and len(issues) == 1


def test_merge_precedence_sidecar_over_folder_over_exif():
    exif = {"fields": {"captured_at": "2026-01-01T00:00:00", "latitude": 1.0, "camera_make": "X"}, "issues": ["e"]}
    folder = SidecarComponent("uploads/a/_folder.json", "1", {"site_id": "F", "latitude": 2.0}, ["f"])
    side = SidecarComponent("uploads/a/p.json", "1", {"captured_at": "2026-02-02T00:00:00Z"}, [])
    merged, issues = merge_field(exif, folder, side)
    assert merged == {"captured_at": "2026-02-02T00:00:00Z", "latitude": 2.0, "camera_make": "X", "site_id": "F"}
    assert issues == ["exif: e", "folder sidecar uploads/a/_folder.json: f"]
