"""The workflow functions' environment, parsed into a configured Ground Truth backend."""

from __future__ import annotations

import json

import pytest
from fieldlabel.labeling.settings import WorkflowEnv

ENV = {
    "PHOTOS_TABLE": "p", "BATCHES_TABLE": "b", "ARTIFACTS_BUCKET": "art", "PROJECT_PREFIX": "treelabel",
    "AWS_REGION": "eu-west-1", "GT_ROLE_ARN": "arn:aws:iam::222222222222:role/gt",
    "WORKTEAM_ARN": "arn:aws:sagemaker:eu-west-1:222222222222:workteam/private-crowd/t",
    "REVIEW_WORKTEAM_ARN": "arn:aws:sagemaker:eu-west-1:222222222222:workteam/private-crowd/r",
    "LABEL_CATEGORIES_URI": "s3://a/l.json", "UI_TEMPLATE_URI": "s3://a/u.html", "REVIEW_TEMPLATE_URI": "s3://a/r.html",
    "PRE_ANNOTATION_ARN": "arn:aws:lambda:eu-west-1:222222222222:function:pre",
    "POST_ANNOTATION_ARN": "arn:aws:lambda:eu-west-1:222222222222:function:post",
    "KMS_KEY_ARN": "arn:aws:kms:eu-west-1:222222222222:key/k",
    "CONFIG_JSON": json.dumps({"labels": ["a", "b"], "automated": True}),
    "JOB_SETTINGS_JSON": json.dumps({"workers_per_photo": 5, "task_time_limit_seconds": 900,
                                     "reviewers_per_photo": 3, "review_enabled": True}),
    "POLL_SECONDS": "60",
}


def test_environment_configures_the_backend() -> None:
    env = WorkflowEnv.from_env(ENV)
    gt = env.backend()
    s = gt.settings
    assert (env.labels, env.automated_enabled, env.review_enabled, env.poll_seconds) == (["a", "b"], True, True, 60)
    assert (s.region, s.partition, s.workers_per_photo, s.task_time_limit_seconds) == ("eu-west-1", "aws", 5, 900)
    assert s.output_path == "s3://art/gt-output/"
    assert s.review is not None and s.review.reviewers_per_photo == 3
    assert gt.job_name("b20261126t063000z-1a2b3c4d") == "treelabel-b20261126t063000z-1a2b3c4d"


def test_review_settings_need_all_four_review_variables() -> None:
    env = WorkflowEnv.from_env({**ENV, "POST_ANNOTATION_ARN": ""})
    assert env.backend().settings.review is None


def test_missing_variables_are_named() -> None:
    env = WorkflowEnv.from_env({k: v for k, v in ENV.items() if k not in ("GT_ROLE_ARN", "KMS_KEY_ARN")})
    with pytest.raises(ValueError, match="GT_ROLE_ARN, KMS_KEY_ARN"):
        env.backend()


def test_configured_cost_tags_reach_every_labeling_job_and_stay_valid() -> None:
    """The budget filters on the configured tags, so the labeling jobs (the main cost) must carry them."""
    import botocore.session
    from botocore.validate import validate_parameters

    config = {"labels": ["a", "b"], "automated": True, "tags": {"project": "treelabel", "cost-center": "field"}}
    gt = WorkflowEnv.from_env({**ENV, "CONFIG_JSON": json.dumps(config)}).backend()
    batch = "b20261126t063000z-1a2b3c4d"
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateLabelingJob")
    for request in (gt.build_job_request(batch_id=batch, kind="automated", manifest_uri="s3://art/jobs/m"),
                    gt.build_review_request(batch_id=batch, manifest_uri="s3://art/jobs/r")):
        tags = {t["Key"]: t["Value"] for t in request["Tags"]}
        assert tags["cost-center"] == "field" and tags["project"] == "treelabel"
        assert tags["batch-id"] == batch
        validate_parameters(request, shape.input_shape)
