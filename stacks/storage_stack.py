"""Stateful resources: the encryption key, buckets, the intake queue and the registry tables.

They live in their own stack so that their retention rules are independent of the compute that uses them, and so
that the S3 notification and its queue are in one stack (a bucket notifying a queue in another stack that itself
reads the bucket would be a cross-stack cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import AppConfig
from stacks.kms_policy import account_key_policy, allow_cloudwatch_logs
from stacks.lambda_code import function_logs
from stacks.nag import ack, checkov_skip, checkov_skip_deploy_time_function

UPLOAD_PREFIX = "uploads/"

# Ground Truth's worker portal loads images straight from S3 in the browser; without this rule tasks fail (facts §5).
GROUND_TRUTH_CORS = s3.CorsRule(
    allowed_methods=[s3.HttpMethods.GET],
    allowed_origins=["*"],
    allowed_headers=[],
    exposed_headers=["Access-Control-Allow-Origin"],
)

# checkov's SQS encryption check accepts only a KMS key; SSE-SQS encrypts at rest too (docs/decisions.md).
SQS_MANAGED_ENCRYPTION_REASON = (
    "Encrypted at rest with SQS-managed keys (SSE-SQS), so AWS services deliver without a key-policy grant; the "
    "messages hold object keys and event metadata, never photo data (docs/decisions.md)."
)

# Register Lambda timeout; the queue's visibility timeout is 6x this so an in-flight batch is not redelivered.
REGISTER_TIMEOUT_SECONDS = 180


# CDK's singleton that writes the bucket notification configuration (a fixed id inside aws-cdk-lib).
_NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


@dataclass(frozen=True)
class StorageNames:
    """Physical names of the stateful resources.

    Named explicitly because people and tools use them (scientists upload to the intake bucket by name), and so the
    pipeline stack can refer to them by name instead of through CloudFormation exports, which would pin the storage
    stack whenever the pipeline changes.
    """

    intake_bucket: str
    artifacts_bucket: str
    photos_table: str
    batches_table: str
    reviewers_table: str
    intake_queue: str
    intake_dlq: str

    @classmethod
    def for_config(cls, config: AppConfig) -> StorageNames:
        suffix = f"{config.account}-{config.region}"
        return cls(
            intake_bucket=f"{config.project}-intake-{suffix}",
            artifacts_bucket=f"{config.project}-artifacts-{suffix}",
            photos_table=f"{config.project}-photos",
            batches_table=f"{config.project}-batches",
            reviewers_table=f"{config.project}-reviewers",
            intake_queue=f"{config.project}-intake-events",
            intake_dlq=f"{config.project}-intake-dead-letters",
        )


class StorageStack(Stack):
    """Key, access-log bucket, intake bucket (+ queue and DLQ), artifacts bucket, registry tables.

    Exposes ``key``, ``intake_bucket``, ``artifacts_bucket``, ``intake_queue``, ``intake_dlq``, ``photos_table``,
    ``batches_table``, ``reviewers_table``.
    """

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig, **kwargs: object) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
        retain = config.removal_retain
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY

        self.key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{config.project}-data",
            description=f"{config.project}: photos, datasets, registry, queues and labeling-job output",
            enable_key_rotation=True,
            policy=account_key_policy(),
            removal_policy=removal,
        )
        allow_cloudwatch_logs(self.key)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access log delivery supports only SSE-S3 on the target bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(config.retention.access_log_days))
            ],
            removal_policy=removal,
        )
        # cdk-nag's S1 recognises a server-access-log target; checkov does not.
        checkov_skip(self.access_logs, "CKV_AWS_18",
                     "This is the server-access-log target bucket; logging it to itself would loop.")
        checkov_skip(self.access_logs, "CKV_AWS_21",
                     "S3 only ever adds new access-log objects here and the lifecycle rule expires them; versions "
                     "would keep nothing more.")

        self.names = StorageNames.for_config(config)
        self.intake_bucket = self._data_bucket("Intake", self.names.intake_bucket, config, "intake/", cors=True)
        self.artifacts_bucket = self._data_bucket(
            "Artifacts", self.names.artifacts_bucket, config, "artifacts/", cors=False
        )

        # Upload events -> queue. The DLQ keeps poison messages for 14 days; the operations alarm watches it.
        self.intake_dlq = sqs.Queue(
            self,
            "IntakeDeadLetters",
            queue_name=self.names.intake_dlq,
            # SQS-managed keys: S3 can deliver to them without a key-policy grant (which would also close a
            # key -> bucket -> key dependency cycle); messages hold only object keys, no photo data.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        ack(self.intake_dlq, "Serverless-SQSRedrivePolicy",
            "This is the intake queue's dead-letter queue; the monitoring stack alarms on its first message.")
        checkov_skip(self.intake_dlq, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION_REASON)
        self.intake_queue = sqs.Queue(
            self,
            "IntakeEvents",
            queue_name=self.names.intake_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * REGISTER_TIMEOUT_SECONDS),
            retention_period=Duration.days(14),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.intake_dlq, max_receive_count=5),
        )
        checkov_skip(self.intake_queue, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION_REASON)
        self.intake_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(self.intake_queue),
            s3.NotificationKeyFilter(prefix=UPLOAD_PREFIX),
        )
        self._scope_notifications_handler_logs(config)

        table_common = {
            "billing": dynamodb.Billing.on_demand(),
            "encryption": dynamodb.TableEncryptionV2.customer_managed_key(self.key),
            "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            "deletion_protection": retain,
            "removal_policy": removal,
        }
        self.photos_table = dynamodb.TableV2(
            self,
            "Photos",
            table_name=self.names.photos_table,
            partition_key=dynamodb.Attribute(name="photo_id", type=dynamodb.AttributeType.STRING),
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name="by_status",
                    partition_key=dynamodb.Attribute(name="status", type=dynamodb.AttributeType.STRING),
                    sort_key=dynamodb.Attribute(name="registered_at", type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.KEYS_ONLY,
                ),
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name="by_batch",
                    partition_key=dynamodb.Attribute(name="batch_id", type=dynamodb.AttributeType.STRING),
                    sort_key=dynamodb.Attribute(name="photo_id", type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.ALL,
                ),
                # Sparse: only photos backing off after a failed attempt carry due_at (docs/intake.md, "Back-off").
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name="by_due",
                    partition_key=dynamodb.Attribute(name="status", type=dynamodb.AttributeType.STRING),
                    sort_key=dynamodb.Attribute(name="due_at", type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.KEYS_ONLY,
                ),
            ],
            **table_common,  # type: ignore[arg-type]
        )
        self.batches_table = dynamodb.TableV2(
            self,
            "Batches",
            table_name=self.names.batches_table,
            partition_key=dynamodb.Attribute(name="batch_id", type=dynamodb.AttributeType.STRING),
            **table_common,  # type: ignore[arg-type]
        )
        self.reviewers_table = dynamodb.TableV2(
            self,
            "Reviewers",
            table_name=self.names.reviewers_table,
            partition_key=dynamodb.Attribute(name="worker_id", type=dynamodb.AttributeType.STRING),
            **table_common,  # type: ignore[arg-type]
        )

        for oid, value, desc in (
            ("IntakeBucketName", self.intake_bucket.bucket_name, "Drop field photos under uploads/ in this bucket"),
            ("ArtifactsBucketName", self.artifacts_bucket.bucket_name, "Labeling jobs, templates and datasets"),
            ("PhotosTableName", self.photos_table.table_name, "Photo registry"),
            ("BatchesTableName", self.batches_table.table_name, "Labeling batches"),
            ("IntakeQueueUrl", self.intake_queue.queue_url, "Upload events"),
            ("DataKeyArn", self.key.key_arn, "KMS key for all data at rest"),
        ):
            CfnOutput(self, oid, value=value, description=desc)

    def _scope_notifications_handler_logs(self, config: AppConfig) -> None:
        """Give CDK's S3 notification handler (a deploy-time singleton) a log group of its own instead of the managed
        basic execution policy, like every function of the app (:func:`stacks.lambda_code.function_logs`)."""
        handler = self.node.try_find_child(_NOTIFICATIONS_HANDLER_ID)
        if handler is None:
            return
        role = handler.node.find_child("Role")
        function = handler.node.find_child("Resource")
        assert isinstance(role, iam.Role) and isinstance(function, CfnResource)
        log_group = function_logs(self, "BucketNotificationsHandler", config=config, key=self.key, role=role)
        checkov_skip_deploy_time_function(function)
        # The singleton adds the managed policy itself and has no option to leave it out; its L1 property is replaced.
        role_resource = role.node.default_child
        assert isinstance(role_resource, iam.CfnRole)
        role_resource.managed_policy_arns = None
        function.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})

    def _data_bucket(self, id_: str, name: str, config: AppConfig, log_prefix: str, *, cors: bool) -> s3.Bucket:
        retain = config.removal_retain
        return s3.Bucket(
            self,
            id_,
            bucket_name=name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            cors=[GROUND_TRUTH_CORS] if cors else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(config.retention.noncurrent_version_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(
                        config.retention.abort_incomplete_upload_days
                    ),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
