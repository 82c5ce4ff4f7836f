"""Every CreateLabelingJob request the workflow can produce, checked against botocore's SageMaker model and the
reference sheet's rules (groundtruth-facts.md §1-§3, §10)."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from fieldlabel.labeling.groundtruth.backend import (
    GroundTruthBackend,
    GroundTruthSettings,
    ReviewJobSettings,
)
from fieldlabel.labeling.groundtruth.regions import SUPPORTED_REGIONS, builtin_arns

from stacks.config import load_config
from stacks.labeling_assets import render_ui_files
from tests.e2e.harness import cdk_context

MODEL = botocore.session.get_session().get_service_model("sagemaker")
INPUT_SHAPE = MODEL.operation_model("CreateLabelingJob").input_shape
BATCH = "b20261126t063000z-1a2b3c4d"
MODEL_ARN = "arn:aws:sagemaker:{region}:111111111111:model/treelabel-dev-b20261125t063000z-00000000-al-model"


def backend(region: str = "us-east-1", *, project: str = "treelabel-dev", review: bool = True,
            **overrides: Any) -> GroundTruthBackend:
    account = "111111111111"
    settings = dict(
        project=project,
        region=region,
        role_arn=f"arn:aws:iam::{account}:role/treelabel-dev-GroundTruthExecutionRole",
        workteam_arn=f"arn:aws:sagemaker:{region}:{account}:workteam/private-crowd/taxonomists",
        label_categories_uri="s3://cdk-assets/label-categories.json",
        ui_template_uri="s3://cdk-assets/image-classification.liquid.html",
        output_path=f"s3://treelabel-dev-artifacts-{account}-{region}/gt-output/",
        kms_key_arn=f"arn:aws:kms:{region}:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        review=ReviewJobSettings(
            workteam_arn=f"arn:aws:sagemaker:{region}:{account}:workteam/private-crowd/reviewers",
            ui_template_uri="s3://cdk-assets/expert-review.liquid.html",
            pre_annotation_arn=f"arn:aws:lambda:{region}:{account}:function:treelabel-dev-ReviewPreAnnotation",
            post_annotation_arn=f"arn:aws:lambda:{region}:{account}:function:treelabel-dev-ReviewPostAnnotation",
        ) if review else None,
    )
    settings.update(overrides)
    return GroundTruthBackend(GroundTruthSettings(**settings))  # type: ignore[arg-type]


def all_requests(region: str) -> dict[str, dict[str, Any]]:
    b = backend(region)
    manifest = f"s3://treelabel-dev-artifacts-111111111111-{region}/jobs/{BATCH}/input.manifest"
    return {
        "automated-first": b.build_job_request(batch_id=BATCH, kind="automated", manifest_uri=manifest),
        "automated-chained": b.build_job_request(batch_id=BATCH, kind="automated", manifest_uri=manifest,
                                                 initial_model_arn=MODEL_ARN.format(region=region)),
        "human-only": b.build_job_request(batch_id=BATCH, kind="human_only", manifest_uri=manifest),
        "review": b.build_review_request(batch_id=BATCH, manifest_uri=manifest.replace("input", "review")),
        "engine-labeling": b.build_job_request(batch_id=BATCH, kind="model", manifest_uri=manifest),
    }


def pattern_violations(value: Any, shape: Any, path: str = "") -> list[str]:
    """Strings that break their shape's regex pattern (botocore's validator does not check patterns)."""
    out: list[str] = []
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                out += pattern_violations(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            out += pattern_violations(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string" and "pattern" in shape.metadata:
        # Python's re has no \p{..} classes; the model uses them only for tag text (letters, spaces, digits).
        pattern = shape.metadata["pattern"].replace("\\p{L}\\p{Z}\\p{N}", "\\w\\s")
        if not re.fullmatch(pattern, value):
            out.append(f"{path}={value!r} !~ {shape.metadata['pattern']}")
    return out


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
@pytest.mark.parametrize("which", ["automated-first", "automated-chained", "human-only", "review",
                                   "engine-labeling"])
def test_request_is_valid_for_the_sagemaker_api(region: str, which: str) -> None:
    # Given the request the workflow would send
    request = all_requests(region)[which]

    # When validated against botocore's own model (types, required members, ranges, lengths) and patterns
    validate_parameters(request, INPUT_SHAPE)

    # Then nothing is refused
    assert pattern_violations(request, INPUT_SHAPE) == []


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_request_follows_the_reference_sheet(region: str) -> None:
    requests = all_requests(region)
    arns = builtin_arns(region)
    for which, req in requests.items():
        hc = req["HumanTaskConfig"]
        attr = req["LabelAttributeName"]
        # label attribute: not ending -metadata / -ref, not reserved (facts §1)
        assert not attr.endswith(("-metadata", "-ref")) and attr not in ("source", "source-ref"), which
        assert len(req["LabelingJobName"]) <= 63
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", req["LabelingJobName"]), which
        assert 1 <= hc["NumberOfHumanWorkersPerDataObject"] <= 9
        assert 30 <= hc["TaskTimeLimitInSeconds"] <= 28_800
        assert 60 <= hc["TaskAvailabilityLifetimeInSeconds"] <= 30 * 86_400
        assert 1 <= hc["MaxConcurrentTaskCount"] <= 5000
        assert 1 <= len(hc["TaskKeywords"]) <= 5
        assert req["OutputConfig"]["KmsKeyId"].startswith(f"arn:aws:kms:{region}:")
        assert f":{region}:" in hc["WorkteamArn"]
    for which in ("automated-first", "automated-chained", "human-only"):
        hc = requests[which]["HumanTaskConfig"]
        assert requests[which]["LabelAttributeName"] == "species"
        assert hc["PreHumanTaskLambdaArn"] == arns.pre_human_task_lambda
        assert hc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"] == (
            arns.annotation_consolidation_lambda)
        assert hc["PreHumanTaskLambdaArn"].split(":")[3] == region
    for which in ("automated-first", "automated-chained"):
        algo = requests[which]["LabelingJobAlgorithmsConfig"]
        assert algo["LabelingJobAlgorithmSpecificationArn"] == (
            f"arn:aws:sagemaker:{region}:027400017018:labeling-job-algorithm-specification/image-classification")
        assert algo["LabelingJobResourceConfig"]["VolumeKmsKeyId"] == requests[which]["OutputConfig"]["KmsKeyId"]
    assert "InitialActiveLearningModelArn" not in requests["automated-first"]["LabelingJobAlgorithmsConfig"]
    assert requests["automated-chained"]["LabelingJobAlgorithmsConfig"]["InitialActiveLearningModelArn"] == (
        MODEL_ARN.format(region=region))
    assert "LabelingJobAlgorithmsConfig" not in requests["human-only"]


def test_review_request_is_a_custom_job_on_the_reviewers_team() -> None:
    review = all_requests("us-east-1")["review"]
    hc = review["HumanTaskConfig"]
    assert review["LabelAttributeName"] == "species-review"
    assert "LabelingJobAlgorithmsConfig" not in review
    assert hc["WorkteamArn"].endswith("/reviewers")
    assert hc["UiConfig"]["UiTemplateS3Uri"].endswith("expert-review.liquid.html")
    assert hc["PreHumanTaskLambdaArn"].endswith(":function:treelabel-dev-ReviewPreAnnotation")
    assert hc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"].endswith("ReviewPostAnnotation")
    assert hc["NumberOfHumanWorkersPerDataObject"] == 2
    assert review["LabelingJobName"] == f"treelabel-dev-{BATCH}-review"


def test_longest_project_prefix_still_makes_valid_job_names() -> None:
    # The config allows a 20-character project prefix; the review job name is the longest name made.
    b = backend(project="a" * 20)
    name = b.review_job_name(BATCH)
    assert len(name) <= 63
    validate_parameters(b.build_review_request(batch_id=BATCH, manifest_uri="s3://b/k"), INPUT_SHAPE)


def test_a_name_over_63_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="1-63 chars"):
        backend(project="p" * 40).job_name(BATCH)


def test_botocore_would_catch_a_broken_request() -> None:
    # The validation above is not vacuous: a missing work team and a zero worker count are refused by the same call
    # (botocore checks minimums and required members; the maximums are checked against the sheet above).
    request = all_requests("us-east-1")["human-only"]
    del request["HumanTaskConfig"]["WorkteamArn"]
    request["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] = 0
    with pytest.raises(ParamValidationError, match="WorkteamArn.*\n.*NumberOfHumanWorkersPerDataObject|"
                                                   "NumberOfHumanWorkersPerDataObject.*\n.*WorkteamArn"):
        validate_parameters(request, INPUT_SHAPE)
    assert pattern_violations({"LabelingJobName": "bad_name"}, INPUT_SHAPE)


def test_model_arn_on_a_human_only_job_is_refused() -> None:
    with pytest.raises(ValueError, match="automated"):
        backend().build_job_request(batch_id=BATCH, kind="human_only", manifest_uri="s3://b/k",
                                    initial_model_arn=MODEL_ARN.format(region="us-east-1"))


def test_review_request_needs_review_settings() -> None:
    with pytest.raises(ValueError, match="review settings"):
        backend(review=False).build_review_request(batch_id=BATCH, manifest_uri="s3://b/k")


def test_task_availability_is_capped_at_thirty_days() -> None:
    request = backend(task_availability_seconds=90 * 86_400).build_job_request(
        batch_id=BATCH, kind="human_only", manifest_uri="s3://b/k")
    assert request["HumanTaskConfig"]["TaskAvailabilityLifetimeInSeconds"] == 30 * 86_400


@pytest.mark.parametrize("count,enabled,expected", [
    (1249, True, "human_only"), (1250, True, "automated"), (100_000, True, "automated"), (5000, False, "human_only"),
])
def test_job_kind(count: int, enabled: bool, expected: str) -> None:
    assert backend().choose_kind(count, automated_enabled=enabled) == expected


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_deployed_label_category_file_has_ground_truths_format(env: str) -> None:
    # The file the jobs point LabelCategoryConfigS3Uri at, as the stack renders it.
    config = load_config(cdk_context(), env)
    doc = json.loads(render_ui_files(config)["label-categories.json"])
    assert doc["document-version"] == "2018-11-28"
    labels = [x["label"] for x in doc["labels"]]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)
    assert all(0 < len(x) <= 256 for x in labels)
    assert labels[-1] == config.taxonomy.unknown_label
    assert config.region in SUPPORTED_REGIONS


def test_engine_labeling_job_is_a_custom_job_on_the_taxonomists_team() -> None:
    # labeling.engine: model -> our template (suggestion mode) and Lambdas, the taxonomists, no automated labeling
    b = backend()
    request = b.build_job_request(batch_id=BATCH, kind="model", manifest_uri="s3://b/jobs/x/input.manifest")
    htc = request["HumanTaskConfig"]
    assert request["LabelAttributeName"] == "species" and "LabelingJobAlgorithmsConfig" not in request
    assert htc["WorkteamArn"].endswith("/taxonomists")
    assert htc["UiConfig"]["UiTemplateS3Uri"] == "s3://cdk-assets/expert-review.liquid.html"
    assert htc["PreHumanTaskLambdaArn"].endswith("ReviewPreAnnotation")
    assert htc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"].endswith("ReviewPostAnnotation")
    assert htc["NumberOfHumanWorkersPerDataObject"] == 3
    assert {"Key": "job-kind", "Value": "model"} in request["Tags"]
    with pytest.raises(ValueError, match="no active-learning model"):
        b.build_job_request(batch_id=BATCH, kind="model", manifest_uri="s3://b/k", initial_model_arn="arn:x")
    with pytest.raises(ValueError, match="custom-task settings"):
        backend(review=False).build_job_request(batch_id=BATCH, kind="model", manifest_uri="s3://b/k")


def test_custom_output_lines_are_read_from_the_consolidated_annotation() -> None:
    # The engine's labeling job writes our post-annotation Lambda's content under "species" (facts §4)
    b = backend()
    meta = {"job_name": "labeling-job/treelabel-dev-x", "type": "groundTruth/custom", "human-annotated": "yes",
            "creation_date": "2026-11-26T06:30:00.000000"}
    photo = b.parse_output_line({"photo-id": "sha256:a", "source-ref": "s3://i/a.jpg", "species-metadata": meta,
                                 "species": {"label": "quercus-robur", "confidence": 0.93, "answers": 3}})
    assert (photo.label, photo.confidence, photo.human_annotated, photo.job_name) == (
        "quercus-robur", 0.93, True, "treelabel-dev-x")
    failed = b.parse_output_line({"photo-id": "sha256:b", "species-metadata": meta,
                                  "species": {"label": None, "confidence": 0.0, "needs_adjudication": True}})
    assert failed.failed and failed.failure_reason == "no valid answer from the taxonomists"
