"""Publishing a dataset version (immutable, versioned, LATEST only moves forward) and the failure path, in moto."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fieldlabel.labeling.failure import failure_reason
from fieldlabel.labeling.publish import (
    LATEST_KEY,
    PublishInputs,
    VersionConflictError,
    allocate_version,
    dataset_line,
    publish_dataset,
)
from fieldlabel.labeling.summary import failed_summary, parked_summary, published_summary
from fieldlabel.registry.model import to_item

from tests.unit.labeling.conftest import LABELS, NOW, World

BATCH = "b20261126t063000z-1a2b3c4d"
OTHER = "b20261127t063000z-00000001"
CATEGORIES = json.dumps({"document-version": "2018-11-28", "labels": [{"label": x} for x in LABELS]}).encode()


def _label(world: World, pid: str, label: str, *, human: bool, conf: float = 0.9) -> None:
    world.ddb.update_item(
        TableName="t-photos", Key={"photo_id": {"S": pid}},
        UpdateExpression="SET #s = :l, #lab = :label, human_annotated = :h, label_confidence = :c, job_name = :j",
        ExpressionAttributeNames={"#s": "status", "#lab": "label"},
        ExpressionAttributeValues=to_item({":l": "LABELED", ":label": label, ":h": human, ":c": conf, ":j": "job"}),
    )


def _inputs(world: World) -> PublishInputs:
    world.s3.create_bucket(Bucket="assets")
    world.s3.put_object(Bucket="assets", Key="label-categories.json", Body=CATEGORIES)
    world.s3.put_object(Bucket="assets", Key="ui.html", Body=b"<crowd-form></crowd-form>")
    return PublishInputs(labels=LABELS, label_attribute="species", label_categories_uri="s3://assets/label-categories.json",
                         ui_template_uri="s3://assets/ui.html", review_template_uri=None,
                         configuration={"automated": True})


def _publish(world: World, batch_id: str, inputs: PublishInputs, review: dict[str, Any] | None = None,
             ) -> dict[str, Any]:
    return publish_dataset(dynamodb=world.ddb, s3=world.s3, tables=world.tables, batch_id=batch_id, inputs=inputs,
                           labeling={"labeled": 3, "job_name": "job", "kind": "automated"}, review=review,
                           now_iso=NOW)


def _get(world: World, key: str) -> bytes:
    return world.s3.get_object(Bucket="artifacts-bucket", Key=key)["Body"].read()


def test_a_version_holds_the_labeled_photos_with_lineage(world: World) -> None:
    # Given a batch with two labeled photos, one photo that was not labeled and one with a retired label
    ids = world.seed(BATCH, 4)
    _label(world, ids[0], "fagus-sylvatica", human=True)
    _label(world, ids[1], "not-a-tree-or-cannot-tell", human=False, conf=0.99)
    _label(world, ids[3], "ulmus-retired", human=True)
    world.ddb.update_item(TableName="t-batches", Key={"batch_id": {"S": BATCH}},
                          UpdateExpression="SET job_arn = :a, model_arn = :m",
                          ExpressionAttributeValues={":a": {"S": "arn:job"}, ":m": {"S": "arn:model"}})
    inputs = _inputs(world)

    # When the batch is published
    out = _publish(world, BATCH, inputs, review={"reviewed": 1, "corrections": 0})

    # Then version 1 holds the two photos as an augmented manifest with class indexes
    prefix = f"datasets/v000001-{BATCH}/"
    assert out["version"] == f"v000001-{BATCH}" and out["photos"] == 2
    lines = {x["photo-id"]: x for x in map(json.loads, _get(world, prefix + "dataset.manifest").splitlines())}
    assert set(lines) == {ids[0], ids[1]}
    assert lines[ids[0]]["species"] == LABELS.index("fagus-sylvatica")
    assert lines[ids[1]]["species"] == LABELS.index("not-a-tree-or-cannot-tell")
    assert lines[ids[0]]["species-metadata"]["human-annotated"] == "yes"
    assert lines[ids[1]]["species-metadata"]["confidence"] == 0.99
    assert lines[ids[0]]["original-ref"] == "s3://intake-bucket/uploads/IMG_0.jpg"
    assert lines[ids[0]]["source-ref"] == world.photo(ids[0])["labeling_ref"]
    stats = json.loads(_get(world, prefix + "statistics.json"))
    assert (stats["photos"], stats["skipped_unknown_label"], stats["human_labeled"]) == (2, 1, 1)
    assert stats["review"] == {"reviewed": 1, "corrections": 0}
    lineage = json.loads(_get(world, prefix + "lineage.json"))
    assert (lineage["batch_id"], lineage["job_arn"], lineage["model_arn"]) == (BATCH, "arn:job", "arn:model")
    assert lineage["label_categories"]["hash"] == "sha256:" + hashlib.sha256(CATEGORIES).hexdigest()
    assert lineage["ui_template"]["hash"] == "sha256:" + hashlib.sha256(b"<crowd-form></crowd-form>").hexdigest()
    assert json.loads(_get(world, LATEST_KEY))["version"] == out["version"]
    assert world.batch(BATCH)["status"] == "PUBLISHED"


def test_publishing_again_changes_nothing(world: World) -> None:
    # A retried publish step finds its own files (conditional puts refuse to overwrite) and the same version.
    ids = world.seed(BATCH, 2)
    _label(world, ids[0], "quercus-robur", human=True)
    inputs = _inputs(world)
    first = _publish(world, BATCH, inputs)
    before = {o["Key"]: o["ETag"] for o in world.s3.list_objects_v2(Bucket="artifacts-bucket")["Contents"]}
    again = _publish(world, BATCH, inputs)
    after = {o["Key"]: o["ETag"] for o in world.s3.list_objects_v2(Bucket="artifacts-bucket")["Contents"]}
    assert again["version"] == first["version"]
    assert before == after
    assert again["latest_moved"] is False


def test_a_version_is_never_overwritten_by_another_batch(world: World) -> None:
    # Given version 1's files were written by another batch (e.g. restored by hand) and our batch holds number 1
    ids = world.seed(BATCH, 1)
    _label(world, ids[0], "quercus-robur", human=True)
    inputs = _inputs(world)
    world.s3.put_object(Bucket="artifacts-bucket", Key=f"datasets/v000001-{BATCH}/dataset.manifest",
                        Body=b'{"photo-id": "someone-else"}\n')
    # When publishing, the conditional put is refused and the existing file is kept
    with pytest.raises(VersionConflictError):
        _publish(world, BATCH, inputs)
    assert _get(world, f"datasets/v000001-{BATCH}/dataset.manifest") == b'{"photo-id": "someone-else"}\n'


def test_versions_are_numbered_once_per_batch_and_latest_moves_forward_only(world: World) -> None:
    for batch in (BATCH, OTHER):
        ids = world.seed(batch, 1, start=0 if batch == BATCH else 1)
        _label(world, ids[0], "quercus-robur", human=True)
    inputs = _inputs(world)
    assert allocate_version(world.ddb, "t-batches", BATCH) == 1
    assert allocate_version(world.ddb, "t-batches", OTHER) == 2
    assert allocate_version(world.ddb, "t-batches", BATCH) == 1
    # The later batch publishes first; the earlier one must not move LATEST back.
    assert _publish(world, OTHER, inputs)["latest_moved"] is True
    assert _publish(world, BATCH, inputs)["latest_moved"] is False
    assert json.loads(_get(world, LATEST_KEY))["version"] == f"v000002-{OTHER}"


def test_dataset_line_skips_labels_outside_the_categories() -> None:
    item = {"photo_id": "p", "labeling_ref": "s3://b/k", "label": "nope"}
    assert dataset_line(item, labels=LABELS, label_attribute="species") is None


# ------------------------------------------------------------------------------------------------------- failure
# The failure path itself (stop, release or park) is in test_labeling_lifecycle.py.


@pytest.mark.parametrize("error,expected", [
    (None, "unknown error"),
    ({"Error": "States.Timeout"}, "States.Timeout"),
    ({"Error": "ValueError", "Cause": "plain text cause"}, "ValueError: plain text cause"),
    ({"Error": "X", "Cause": json.dumps({"errorMessage": "bad\n  input"})}, "X: bad input"),
])
def test_failure_reason(error: dict[str, Any] | None, expected: str) -> None:
    assert failure_reason(error) == expected


def test_summaries_name_the_batch_and_the_figures() -> None:
    pub = published_summary(project="p", batch_id=BATCH, labeling={"labeled": 10, "machine_labeled": 8,
                                                                   "human_labeled": 2, "automation_share": 0.8},
                            review={"reviewed": 3, "corrections": 1, "needs_adjudication": 0,
                                    "machine_accuracy": {"overall": {"accuracy": 0.5}}},
                            dataset={"version": "v000003-x", "prefix": "s3://a/datasets/v000003-x/"})
    assert pub["subject"] == f"[p] batch {BATCH} published"
    assert "automation 80.0 %" in pub["message"] and "accuracy 50.0 %" in pub["message"]
    assert pub["figures"]["review"]["machine_accuracy"] == 0.5
    failed = failed_summary(project="p", batch_id=BATCH, reason="r", released=1, parked=2, quarantined=3,
                            jobs={"j": "stopped"})
    assert failed["subject"].endswith("FAILED") and failed["figures"]["parked"] == 2
    assert "quarantined without a labeling copy: 3" in failed["message"] and "j stopped" in failed["message"]
    parked = parked_summary(project="p", batch_id=BATCH, step="publish", reason="boom", status="PARKED")
    assert parked["subject"] == f"[p] batch {BATCH} PARKED at publish"
    assert f"fieldlabel resume {BATCH}" in parked["message"]
