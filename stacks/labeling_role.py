"""The IAM role Ground Truth assumes to run our labeling jobs, with least privilege.

Instead of ``AmazonSageMakerGroundTruthExecution`` (which matches buckets and functions by name patterns) or
``AmazonSageMakerFullAccess``, the role gets exactly: read on the intake bucket's photos and on the labeling assets,
read/write on the artifacts bucket's job and output prefixes, use of the data key, invoke on our own annotation
Lambdas, ``iam:PassRole`` on itself for automated labeling, and log/metric writes for the active-learning jobs.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import grants
from stacks.nag import ack_wildcards

# Where Ground Truth reads and writes in the artifacts bucket (docs/contracts.md).
JOB_INPUT_PREFIX = "jobs/"
JOB_OUTPUT_PREFIX = "gt-output/"


class GroundTruthExecutionRole(Construct):
    """The execution role of every labeling job. Exposes ``role``; call :meth:`allow_invoke` for annotation Lambdas."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        intake_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        key: kms.IKey,
        asset_object_arns: list[str],
        asset_bucket_arns: list[str] | None = None,
        asset_keys: list[str] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com").with_conditions(
                # Confused-deputy guard where SageMaker sends the key (training and transform jobs of automated
                # labeling). IfExists: Ground Truth is not documented to send aws:SourceAccount, and a plain
                # StringEquals would then refuse every labeling job (docs/decisions.md, "Executed IAM").
                {"StringEqualsIfExists": {"aws:SourceAccount": stack.account}}
            ),
            description="Ground Truth labeling-job execution role (least privilege)",
        )
        # ListBucket and GetBucketLocation on the input and output buckets, as AWS's execution-role policy for
        # built-in task types gives them (SageMaker DG, sms-security-permission-execution-role).
        grants.s3_read(self.role, intake_bucket, "uploads/", "labeling-copies/", list_whole_bucket=True)
        grants.s3_read(self.role, artifacts_bucket, JOB_INPUT_PREFIX, JOB_OUTPUT_PREFIX, list_whole_bucket=True)
        grants.s3_write(self.role, artifacts_bucket, JOB_OUTPUT_PREFIX)
        if asset_object_arns:
            # The UI templates and the label-category file are CDK file assets: exactly those objects, plus the
            # bucket-level reads AWS documents for a job's input buckets, limited to those keys.
            self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=asset_object_arns))
        if asset_bucket_arns and asset_keys:
            self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketLocation"],
                                                        resources=asset_bucket_arns))
            self.role.add_to_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=asset_bucket_arns,
                conditions={"StringLikeIfExists": {"s3:prefix": asset_keys}},
            ))
        grants.kms_use(self.role, key)
        # Active-learning training and inference volumes are encrypted with the data key; SageMaker attaches them
        # through a KMS grant made on the role's behalf.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        # Automated labeling starts training/transform jobs that run as this same role (facts §4).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_group_arn, f"{log_group_arn}:log-stream:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        partition = stack.partition  # a literal once the region is known (enablePartitionLiterals)
        wildcard_objects = [
            f"arn:{partition}:s3:::{intake_bucket.bucket_name}/{p}*" for p in ("uploads/", "labeling-copies/")
        ] + [
            f"arn:{partition}:s3:::{artifacts_bucket.bucket_name}/{p}*"
            for p in (JOB_INPUT_PREFIX, JOB_OUTPUT_PREFIX)
        ]
        ack_wildcards(
            self.role,
            wildcard_objects,
            "Ground Truth reads every photo of a job and writes its own output files under this prefix.",
        )
        ack_wildcards(
            self.role,
            [
                f"arn:{partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*",
                f"arn:{partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*:log-stream:*",
            ],
            "Active-learning training and transform jobs log to /aws/sagemaker/ groups whose names SageMaker picks.",
        )
        ack_wildcards(
            self.role, ["*"], "cloudwatch:PutMetricData has no resource ARN; a namespace condition limits it."
        )

    def allow_invoke(self, *functions: lambda_.IFunction) -> None:
        """Let Ground Truth call our own pre-/post-annotation Lambdas, and nothing else."""
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[f.function_arn for f in functions])
        )
