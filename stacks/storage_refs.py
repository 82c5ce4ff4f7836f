"""References to the storage stack's resources by physical name, for use inside another stack.

Referring by name (not by exported attribute) keeps the pipeline from pinning the stateful stack with
CloudFormation exports, and gives IAM policies literal ARNs that read well in reviews and in cdk-nag.
Only the data key is referenced by its exported ARN: a key ARN contains a generated id.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.storage_stack import StorageStack


class StorageRefs(Construct):
    """Exposes ``key``, ``intake_bucket``, ``artifacts_bucket``, ``intake_queue``, ``intake_dlq``, ``photos_table``,
    ``batches_table``, ``reviewers_table``, ``names``."""

    def __init__(self, scope: Construct, id_: str, *, storage: StorageStack) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.names = names = storage.names
        self.key = storage.key
        self.intake_bucket = s3.Bucket.from_bucket_attributes(
            self, "Intake", bucket_name=names.intake_bucket, encryption_key=storage.key
        )
        self.artifacts_bucket = s3.Bucket.from_bucket_attributes(
            self, "Artifacts", bucket_name=names.artifacts_bucket, encryption_key=storage.key
        )

        def queue_arn(name: str) -> str:
            return stack.format_arn(
                service="sqs", resource=name, resource_name=None, arn_format=ArnFormat.NO_RESOURCE_NAME
            )

        self.intake_queue = sqs.Queue.from_queue_attributes(
            self, "IntakeEvents", queue_arn=queue_arn(names.intake_queue)
        )
        self.intake_dlq = sqs.Queue.from_queue_attributes(
            self, "IntakeDeadLetters", queue_arn=queue_arn(names.intake_dlq)
        )

        def table(cid: str, name: str) -> dynamodb.ITableV2:
            return dynamodb.TableV2.from_table_attributes(self, cid, table_name=name, encryption_key=storage.key)

        self.photos_table = table("Photos", names.photos_table)
        self.batches_table = table("Batches", names.batches_table)
        self.reviewers_table = table("Reviewers", names.reviewers_table)
