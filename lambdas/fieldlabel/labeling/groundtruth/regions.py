"""The one table of Ground Truth's AWS-owned ARNs per region (image classification, single label).

Source: the SageMaker API reference for ``HumanTaskConfig.PreHumanTaskLambdaArn`` and
``AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn`` (botocore ``sagemaker/2017-07-24/service-2.json``),
cross-checked against awslabs/aiops-modules ``constants.py``; see ../shared/reference/groundtruth-facts.md §2.
Regions outside this table are not documented to host the built-in functions, so config validation rejects them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Account that owns PRE-ImageMultiClass and ACS-ImageMultiClass in each region (the same account for both).
_BUILTIN_FUNCTION_ACCOUNTS: dict[str, str] = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}

# The documented account for labeling-job algorithm specifications; only the region varies (facts §2).
_ALGORITHM_ACCOUNT = "027400017018"

SUPPORTED_REGIONS: tuple[str, ...] = tuple(sorted(_BUILTIN_FUNCTION_ACCOUNTS))


@dataclass(frozen=True)
class BuiltinArns:
    """Ground Truth's built-in ARNs for single-label image classification in one region."""

    pre_human_task_lambda: str
    annotation_consolidation_lambda: str
    algorithm_specification: str


class UnsupportedRegionError(ValueError):
    """The region has no documented Ground Truth built-in labeling functions."""


def builtin_arns(region: str, partition: str = "aws") -> BuiltinArns:
    """Return the built-in PRE/ACS Lambda ARNs and the image-classification algorithm ARN for ``region``.

    Raises:
        UnsupportedRegionError: if the region is not one of :data:`SUPPORTED_REGIONS`.
    """
    account = _BUILTIN_FUNCTION_ACCOUNTS.get(region)
    if account is None:
        raise UnsupportedRegionError(
            f"region {region!r} has no documented Ground Truth built-in labeling functions; "
            f"supported: {', '.join(SUPPORTED_REGIONS)}"
        )
    return BuiltinArns(
        pre_human_task_lambda=f"arn:{partition}:lambda:{region}:{account}:function:PRE-ImageMultiClass",
        annotation_consolidation_lambda=f"arn:{partition}:lambda:{region}:{account}:function:ACS-ImageMultiClass",
        algorithm_specification=(
            f"arn:{partition}:sagemaker:{region}:{_ALGORITHM_ACCOUNT}:"
            "labeling-job-algorithm-specification/image-classification"
        ),
    )
