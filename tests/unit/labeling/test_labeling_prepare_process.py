"""Preparing a job (manifest, kind, model chaining, adoption) and processing its output, against moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend
from fieldlabel.labeling.modelstore import taxonomy_hash
from fieldlabel.labeling.prepare import EmptyBatchError, prepare_labeling_job, prepare_review_job
from fieldlabel.labeling.process import JobNotCompletedError, process_output
from fieldlabel.labeling.registry_io import read_model, record_model

from tests.unit.labeling.conftest import LABELS, NOW, World

BATCH = "b20261126t063000z-1a2b3c4d"
TAX = taxonomy_hash(LABELS, LABELS[-1])


class FakeSageMaker:
    """DescribeLabelingJob only: a job exists or not."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing or {}
        self.calls: list[str] = []
        self.exceptions = boto3.client("sagemaker", region_name="us-east-1").exceptions

    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803 - boto3 keyword
        from botocore.exceptions import ClientError

        self.calls.append(LabelingJobName)
        if LabelingJobName not in self.existing:
            raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "no"}}, "DescribeLabelingJob")
        return dict(self.existing[LabelingJobName])


def _prepare(world: World, gt: GroundTruthBackend, sm: FakeSageMaker, *, automated: bool = True) -> dict[str, Any]:
    return prepare_labeling_job(dynamodb=world.ddb, s3=world.s3, sagemaker=sm, backend=gt, tables=world.tables,
                                batch_id=BATCH, automated_enabled=automated, now_iso=NOW,
                                taxonomy_hash=TAX)


def test_prepare_writes_one_manifest_line_per_photo_and_a_human_only_request(world: World,
                                                                              gt: GroundTruthBackend) -> None:
    # Given 12 batched photos, one without a labeling copy, and a photo of another batch
    ids = world.seed(BATCH, 11)
    world.seed(BATCH, 1, start=11, labeling_ref=False)
    world.seed("b20261126t063000z-ffffffff", 1)

    # When the job is prepared
    prepared = _prepare(world, gt, FakeSageMaker())

    # Then the manifest has the 11 usable photos with their metadata, and the batch is LABELING
    assert (prepared["exists"], prepared["kind"], prepared["photo_count"], prepared["skipped"]) == (
        False, "human_only", 11, 1)
    body = world.s3.get_object(Bucket="artifacts-bucket", Key=f"jobs/{BATCH}/input.manifest")["Body"].read()
    lines = [json.loads(x) for x in body.splitlines()]
    assert sorted(x["photo-id"] for x in lines) == sorted(ids)
    first = next(x for x in lines if x["photo-id"] == ids[0])
    assert first["source-ref"] == world.photo(ids[0])["labeling_ref"]
    assert first["original-ref"] == "s3://intake-bucket/uploads/IMG_0.jpg"
    assert first["field"] == {"site_id": "S0", "latitude": 52.5}
    assert prepared["manifest_uri"] == f"s3://artifacts-bucket/jobs/{BATCH}/input.manifest"
    assert prepared["request"]["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == (
        prepared["manifest_uri"])
    assert "LabelingJobAlgorithmsConfig" not in prepared["request"]
    batch = world.batch(BATCH)
    assert (batch["status"], batch["kind"], batch["labeling_photo_count"]) == ("LABELING", "human_only", 11)


class SmallBatchesAutomated(GroundTruthBackend):
    """Ground Truth's 1,250-photo rule is tested in test_labeling_requests; here small batches stand in for big."""

    def choose_kind(self, photo_count: int, *, automated_enabled: bool) -> str:
        return "automated" if automated_enabled else "human_only"


def test_prepare_chains_the_last_model_into_an_automated_job(world: World, gt: GroundTruthBackend) -> None:
    # Given an automated-size batch and a model kept by an earlier job
    world.seed(BATCH, 5)
    model = "arn:aws:sagemaker:us-east-1:111111111111:model/earlier-job-model"
    record_model(world.ddb, "t-batches", model_arn=model, job_name="earlier", batch_id="b0", completed_at=NOW,
                 taxonomy_hash=TAX)

    prepared = _prepare(world, SmallBatchesAutomated(gt.settings), FakeSageMaker())

    assert prepared["kind"] == "automated"
    assert prepared["request"]["LabelingJobAlgorithmsConfig"]["InitialActiveLearningModelArn"] == model
    assert world.batch(BATCH)["initial_model_arn"] == model


def test_a_model_trained_on_another_label_set_is_never_chained(world: World, gt: GroundTruthBackend) -> None:
    # Given a model kept by a job that used another taxonomy (one species more)
    world.seed(BATCH, 5)
    other = taxonomy_hash([*LABELS[:-1], "ulmus-glabra", LABELS[-1]], LABELS[-1])
    record_model(world.ddb, "t-batches", model_arn="arn:aws:sagemaker:us-east-1:1:model/other-taxonomy",
                 job_name="earlier", batch_id="b0", completed_at=NOW, taxonomy_hash=other)

    # When an automated job is prepared on the current taxonomy
    prepared = _prepare(world, SmallBatchesAutomated(gt.settings), FakeSageMaker())

    # Then it starts without a model, and the batch records which label set it ran on
    assert "InitialActiveLearningModelArn" not in prepared["request"]["LabelingJobAlgorithmsConfig"]
    assert prepared["initial_model_arn"] is None
    assert world.batch(BATCH)["taxonomy_hash"] == TAX
    # and each label set keeps its own model
    assert read_model(world.ddb, "t-batches", TAX) is None
    assert read_model(world.ddb, "t-batches", other)["model_arn"].endswith("/other-taxonomy")
    assert TAX != other and TAX == taxonomy_hash(list(LABELS), LABELS[-1])


def test_prepare_without_automation_never_chains(world: World, gt: GroundTruthBackend) -> None:
    world.seed(BATCH, 5)
    record_model(world.ddb, "t-batches", model_arn="arn:aws:sagemaker:us-east-1:1:model/m", job_name="j",
                 batch_id="b0", completed_at=NOW, taxonomy_hash=TAX)
    prepared = _prepare(world, SmallBatchesAutomated(gt.settings), FakeSageMaker(), automated=False)
    assert prepared["kind"] == "human_only"
    assert "LabelingJobAlgorithmsConfig" not in prepared["request"]


def test_prepare_adopts_an_existing_job_instead_of_creating_one(world: World, gt: GroundTruthBackend) -> None:
    # Given the batch's job already exists
    world.seed(BATCH, 3)
    name = gt.job_name(BATCH)
    sm = FakeSageMaker({name: {"LabelingJobName": name, "LabelingJobArn": f"arn:aws:sagemaker:::labeling-job/{name}",
                               "LabelingJobStatus": "InProgress", "LabelingJobAlgorithmsConfig": {}}})

    prepared = _prepare(world, gt, sm)

    # Then no request is built and no manifest is written
    assert prepared["exists"] is True and "request" not in prepared
    assert prepared["job_status"] == "InProgress"
    assert "Contents" not in world.s3.list_objects_v2(Bucket="artifacts-bucket", Prefix="jobs/")
    assert world.batch(BATCH)["job_arn"].endswith(name)


def test_prepare_refuses_an_empty_batch(world: World, gt: GroundTruthBackend) -> None:
    world.seed(BATCH, 2, labeling_ref=False)
    with pytest.raises(EmptyBatchError, match="2 skipped"):
        _prepare(world, gt, FakeSageMaker())


def test_review_request_is_recorded_on_the_batch(world: World) -> None:
    from tests.unit.labeling.test_labeling_requests import backend

    world.seed(BATCH, 1)
    prepared = prepare_review_job(dynamodb=world.ddb, backend=backend(), tables=world.tables, batch_id=BATCH,
                                  manifest_uri="s3://artifacts-bucket/jobs/x/review.manifest", now_iso=NOW)
    assert prepared["request"]["LabelAttributeName"] == "species-review"
    assert world.batch(BATCH)["review_job_name"] == prepared["job_name"]


# ------------------------------------------------------------------------------------------------ process output


def _output(world: World, lines: list[dict[str, Any] | str]) -> str:
    body = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    world.s3.put_object(Bucket="artifacts-bucket", Key="gt-output/job/manifests/output/output.manifest",
                        Body=body.encode())
    return "s3://artifacts-bucket/gt-output/job/manifests/output/output.manifest"


def _line(pid: str, label: str | None, *, human: str = "no", conf: float = 0.97, failure: str | None = None,
          ) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": "groundtruth/image-classification", "job-name": "labeling-job/treelabel-dev-x",
                            "creation-date": "2026-11-26T07:00:00.000000"}
    line: dict[str, Any] = {"source-ref": f"s3://intake/{pid}.jpg", "photo-id": pid}
    if failure:
        meta["failure-reason"] = failure
    if label is not None:
        line["species"] = str(LABELS.index(label))
        meta.update({"class-name": label, "confidence": conf, "human-annotated": human})
    line["species-metadata"] = meta
    return line


def _job(uri: str | None, status: str = "Completed", model: str | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {"LabelingJobName": "treelabel-dev-x", "LabelingJobArn": "arn:aws:sagemaker:::x",
                           "LabelingJobStatus": status,
                           "LabelCounters": {"TotalLabeled": 3, "HumanLabeled": 1, "MachineLabeled": 2,
                                             "FailedNonRetryableError": 1, "Unlabeled": 0}}
    if uri:
        job["LabelingJobOutput"] = {"OutputDatasetS3Uri": uri, **({"FinalActiveLearningModelArn": model}
                                                                   if model else {})}
    return job


def test_output_labels_are_recorded_and_unlabeled_photos_released(world: World, gt: GroundTruthBackend) -> None:
    # Given six photos: a machine label, a human label, a failure with a reason, one whose label is missing, one
    # missing from the output entirely, and one that is no longer in the batch; plus a garbage line
    ids = world.seed(BATCH, 6)
    world.ddb.update_item(TableName="t-photos", Key={"photo_id": {"S": ids[5]}},
                          UpdateExpression="SET batch_id = :o", ExpressionAttributeValues={":o": {"S": "other"}})
    uri = _output(world, [
        _line(ids[0], "fagus-sylvatica"),
        _line(ids[1], "betula-pendula", human="yes", conf=0.0),
        _line(ids[2], None, failure="ClientError: task expired"),
        {"source-ref": "s3://x", "photo-id": ids[3], "species-metadata": {"job-name": "x"}},
        _line(ids[5], "quercus-robur"),
        "not json",
    ])
    released: list[str] = []

    def release(reason: str) -> tuple[int, int, int]:
        released.append(reason)
        return 3, 0, 0

    # When the output is processed
    stats = process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                           kind="automated", job=_job(uri, model="arn:aws:sagemaker:us-east-1:1:model/m2"),
                           now_iso=NOW, release_unlabeled=release, expected_count=6,
                           taxonomy_hash=TAX)

    # Then the labels are in the registry, everything else is left BATCHED for the release
    p0, p1 = world.photo(ids[0]), world.photo(ids[1])
    assert (p0["status"], p0["label"], p0["label_confidence"], p0["human_annotated"], p0["job_name"]) == (
        "LABELED", "fagus-sylvatica", 0.97, False, "treelabel-dev-x")
    assert (p1["label"], p1["human_annotated"], p1["label_source"]) == ("betula-pendula", True, "human")
    assert {world.photo(i)["status"] for i in ids[2:5]} == {"BATCHED"}
    assert "label" not in world.photo(ids[5])
    assert stats["labeled"] == 3 and stats["not_in_batch"] == 1
    assert (stats["human_labeled"], stats["machine_labeled"], stats["failed"], stats["bad_lines"]) == (1, 2, 2, 1)
    assert stats["failure_reasons"] == {"ClientError: task expired": 1, "no label in the output manifest": 1}
    assert stats["label_counters"]["failed_non_retryable"] == 1
    assert released and "ClientError: task expired" in released[0]
    assert (stats["released"], stats["parked"]) == (3, 0)
    # and the job's final model is kept for the next job
    assert read_model(world.ddb, "t-batches", TAX)["model_arn"] == "arn:aws:sagemaker:us-east-1:1:model/m2"
    assert world.batch(BATCH)["labeling_stats"]["labeled"] == 3


def test_output_of_a_complete_job_releases_nothing(world: World, gt: GroundTruthBackend) -> None:
    ids = world.seed(BATCH, 2)
    uri = _output(world, [_line(ids[0], "quercus-robur", human="yes"), _line(ids[1], "quercus-robur")])
    stats = process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                           kind="human_only", job=_job(uri), now_iso=NOW,
                           release_unlabeled=lambda r: pytest.fail("nothing to release"), expected_count=2)
    assert stats["by_species"] == {"quercus-robur": 2}
    assert read_model(world.ddb, "t-batches", TAX) is None


def test_processing_twice_gives_the_same_registry(world: World, gt: GroundTruthBackend) -> None:
    # A retried step (after a crash half-way) must not fail on photos it already labeled.
    ids = world.seed(BATCH, 3)
    uri = _output(world, [_line(i, "betula-pendula") for i in ids])
    for _ in range(2):
        stats = process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                               kind="human_only", job=_job(uri), now_iso=NOW, release_unlabeled=lambda r: (0, 0, 0),
                               expected_count=3)
        assert (stats["labeled"], stats["not_in_batch"]) == (3, 0)
    assert {world.photo(i)["label"] for i in ids} == {"betula-pendula"}


def test_a_job_that_did_not_complete_has_no_output_to_process(world: World, gt: GroundTruthBackend) -> None:
    with pytest.raises(JobNotCompletedError, match="Failed"):
        process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                       kind="human_only", job=_job(None, status="Failed"), now_iso=NOW,
                       release_unlabeled=lambda r: (0, 0, 0))


def test_an_older_model_never_replaces_a_newer_one(world: World) -> None:
    assert record_model(world.ddb, "t-batches", model_arn="new", job_name="j2", batch_id="b2",
                        completed_at="2026-11-27T00:00:00Z", taxonomy_hash=TAX)
    assert not record_model(world.ddb, "t-batches", model_arn="old", job_name="j1", batch_id="b1",
                            completed_at="2026-11-26T00:00:00Z", taxonomy_hash=TAX)
    assert read_model(world.ddb, "t-batches", TAX)["model_arn"] == "new"


@pytest.mark.parametrize("line,expected", [
    ({"photo-id": "p", "species": "1", "species-metadata": {"class-name": "fagus", "confidence": 0.5,
                                                            "human-annotated": "yes", "job-name": "labeling-job/j"}},
     ("fagus", 0.5, True, "j", None)),
    ({"photo-id": "p", "species": "1", "species-metadata": {"class-name": "fagus", "confidence": 0.99,
                                                            "human-annotated": "no", "job-name": "j"}},
     ("fagus", 0.99, False, "j", None)),
    ({"photo-id": "p", "species-metadata": {"failure-reason": "boom", "job-name": "j"}},
     (None, None, None, "j", "boom")),
    ({"photo-id": "p", "species": "1", "species-metadata": {"class-name": "fagus", "failure-reason": "x"}},
     (None, None, None, None, "x")),
    ({"photo-id": "p"}, (None, None, None, None, "no label in the output manifest")),
])
def test_parse_output_line(gt: GroundTruthBackend, line: dict[str, Any], expected: tuple[Any, ...]) -> None:
    photo = gt.parse_output_line(line)
    assert (photo.label, photo.confidence, photo.human_annotated, photo.job_name, photo.failure_reason) == expected


def test_label_counters_and_job_result(gt: GroundTruthBackend) -> None:
    result = gt.job_result(_job("s3://b/k", model="arn:m"))
    assert result.completed and result.output_manifest_uri == "s3://b/k" and result.final_model_arn == "arn:m"
    assert result.counters.as_dict() == {"total_labeled": 3, "human_labeled": 1, "machine_labeled": 2,
                                         "failed_non_retryable": 1, "unlabeled": 0}
    assert gt.label_counters({}).as_dict()["total_labeled"] == 0


def test_a_stopped_job_s_output_is_found_where_ground_truth_writes_it(gt: GroundTruthBackend) -> None:
    # StopLabelingJob: results obtained before the stop are placed in the output location; LabelingJobOutput is
    # not promised for a stopped job, so the manifest path is derived from OutputConfig and the job name.
    job = {**_job(None, status="Stopped"), "OutputConfig": {"S3OutputPath": "s3://artifacts-bucket/gt-output/"}}
    result = gt.job_result(job)
    assert result.output_manifest_uri == (
        "s3://artifacts-bucket/gt-output/treelabel-dev-x/manifests/output/output.manifest")
    assert result.stopped_with_labels and not result.completed
    # nothing labeled before the stop, or a failed job: nothing to record
    none = {**job, "LabelCounters": {**job["LabelCounters"], "TotalLabeled": 0}}
    assert not gt.job_result(none).stopped_with_labels
    assert not gt.job_result({**job, "LabelingJobStatus": "Failed"}).stopped_with_labels


def test_a_stopped_job_s_labels_are_recorded_and_the_rest_released(world: World, gt: GroundTruthBackend) -> None:
    # Given a job stopped after two of its four photos
    ids = world.seed(BATCH, 4)
    _output(world, [_line(ids[0], "quercus-robur", human="yes"), _line(ids[1], "betula-pendula", human="yes")])
    job = {**_job(None, status="Stopped"), "OutputConfig": {"S3OutputPath": "s3://artifacts-bucket/gt-output"}}
    job["LabelingJobName"] = "job"  # where _output wrote the manifest
    released: list[str] = []

    def release(reason: str) -> tuple[int, int, int]:
        released.append(reason)
        return 2, 0, 0

    stats = process_output(dynamodb=world.ddb, s3=world.s3, backend=gt, tables=world.tables, batch_id=BATCH,
                           kind="human_only", job=job, now_iso=NOW, release_unlabeled=release, expected_count=4)
    # Then its two labels are recorded, the other two left for the release, whose reason says the job was stopped
    assert [world.photo(i)["status"] for i in ids] == ["LABELED", "LABELED", "BATCHED", "BATCHED"]
    assert (stats["labeled"], stats["released"], stats["stopped_early"]) == (2, 2, True)
    assert released == ["not labeled by job (the job was stopped)"]
