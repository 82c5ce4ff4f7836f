"""Intake: upload events -> register Lambda -> registry; a scheduled dispatcher claims batches and starts the workflow.

See docs/intake.md for the flow, the dedupe rule and the claim algorithm.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import grants
from stacks.config import AppConfig
from stacks.lambda_code import LambdaKit
from stacks.nag import ack, ack_wildcards, arn_token
from stacks.storage_refs import StorageRefs
from stacks.storage_stack import REGISTER_TIMEOUT_SECONDS

# Large enough to decode a 48-megapixel HEIC and write its labeling copy; memory also buys CPU on Lambda.
REGISTER_MEMORY_MB = 2048
# One SQS batch updates the pending counter once; bigger batches mean fewer requests per photo.
REGISTER_BATCH_SIZE = 20


class Intake(Construct):
    """The register and dispatch functions and the dispatcher's schedule.

    Exposes ``register_fn``, ``dispatch_fn`` and ``schedule``. The dispatcher is invoked asynchronously (by the
    schedule and by the register function); what fails to reach it, or fails in it after retries, lands in
    ``async_failures``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        kit: LambdaKit,
        storage: StorageRefs,
        state_machine: sfn.IStateMachine,
        async_failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id_)
        b = config.batching
        common = {"PHOTOS_TABLE": storage.names.photos_table, "BATCHES_TABLE": storage.names.batches_table,
                  "BATCH_SIZE": str(b.batch_size)}

        self.dispatch_fn = kit.function(
            self,
            "Dispatch",
            handler_dir="dispatch",
            description="Decides when a batch is due, claims its photos and starts the labeling workflow",
            timeout=Duration.minutes(15),
            memory_size=1024,
            async_failures=async_failures,
            environment={
                **common,
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                "MAX_WAIT_SECONDS": str(int(b.max_wait_hours * 3600)),
                "MAX_BATCH_SIZE": str(b.max_batch_size),
                "SMALL_BATCH_POLICY": b.small_batch_policy,
                "AUTOMATED_LABELING": str(config.labeling.automated).lower(),
                "MAX_ATTEMPTS": str(config.labeling.max_attempts),
                "RETRY_BACKOFF_SECONDS": str(config.labeling.retry_backoff_minutes * 60),
                "RETRY_BACKOFF_MAX_SECONDS": str(config.labeling.retry_backoff_max_hours * 3600),
            },
        )
        grants.ddb(self.dispatch_fn, storage.photos_table, write=True)
        # Recovery scans the small batches table for claims that never started.
        grants.ddb(self.dispatch_fn, storage.batches_table, write=True, scan=True)
        self.dispatch_fn.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine.state_machine_arn])
        )

        self.register_fn = kit.function(
            self,
            "Register",
            handler_dir="register",
            invoked_by="its SQS event source (failed messages go to the intake DLQ)",
            description="Validates each upload, writes its labeling copy or quarantines it, registers it once",
            timeout=Duration.seconds(REGISTER_TIMEOUT_SECONDS),
            memory_size=REGISTER_MEMORY_MB,
            embedding_models=True,
            environment={
                **common,
                "INTAKE_BUCKET": storage.names.intake_bucket,
                "DISPATCH_FUNCTION_NAME": self.dispatch_fn.function_name,
                "DEDUPE_MODE": config.intake.dedupe,
                "MAX_PHOTO_BYTES": str(config.intake.max_photo_megabytes * 1024 * 1024),
            },
        )
        # Listing finds a folder's _folder.json sidecar (docs/intake.md, "Sidecars").
        grants.s3_read(self.register_fn, storage.intake_bucket, "uploads/", list_bucket=True)
        grants.s3_write(self.register_fn, storage.intake_bucket, "labeling-copies/")
        grants.s3_tag(self.register_fn, storage.intake_bucket, "uploads/")
        grants.kms_use(self.register_fn, storage.key)
        grants.ddb(self.register_fn, storage.photos_table, write=True)
        grants.ddb(self.register_fn, storage.batches_table, write=True)
        self.register_fn.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.dispatch_fn.function_arn])
        )
        intake_events = sources.SqsEventSource(
            storage.intake_queue,
            batch_size=REGISTER_BATCH_SIZE,
            max_batching_window=Duration.seconds(10),
            report_batch_item_failures=True,
            # A burst of uploads is worked off at this pace instead of taking the account's concurrency.
            max_concurrency=config.concurrency.register_max_concurrency,
        )
        self.register_fn.add_event_source(intake_events)
        mapping = next(c for c in self.register_fn.node.children if isinstance(c, lambda_.EventSourceMapping))
        ack(mapping, "Serverless-LambdaEventSourceMappingDestination",
            "SQS event sources take no on-failure destination: the intake queue's redrive policy moves a message "
            "that failed 5 times to the intake DLQ, which is alarmed.")

        # Our own role (not the stack-wide singleton CDK would make), so its finding is acknowledged right here.
        schedule_role = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"))
        self.schedule = scheduler.Schedule(
            self,
            "DispatchSchedule",
            description="Checks whether a labeling batch is due (count or age threshold)",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(b.dispatch_every_minutes)),
            target=targets.LambdaInvoke(
                self.dispatch_fn,
                input=scheduler.ScheduleTargetInput.from_object({"trigger": "schedule"}),
                role=schedule_role,
                retry_attempts=2,
                max_event_age=Duration.minutes(10),
                # An invocation the scheduler could not deliver; the next run picks the batch up, but an operator
                # hears about it (monitoring: async failures alarm).
                dead_letter_queue=async_failures,
            ),
        )

        ack_wildcards(schedule_role, [f"{arn_token(self.dispatch_fn)}:*"],
                      "CDK's Scheduler target grants invoke on the dispatcher and its versions.")
        bucket = f"arn:{_partition(self)}:s3:::{storage.names.intake_bucket}"
        assert self.register_fn.role is not None and self.dispatch_fn.role is not None
        ack_wildcards(self.register_fn.role, [f"{bucket}/uploads/*", f"{bucket}/labeling-copies/*"],
                      "Any photo may be uploaded under uploads/; copies are named by content hash.")
        for fn in (self.register_fn, self.dispatch_fn):
            assert fn.role is not None
            ack_wildcards(fn.role, [f"{_table_arn(self, storage.names.photos_table)}/index/*",
                                    f"{_table_arn(self, storage.names.batches_table)}/index/*"],
                          "Claiming and counting query the registry's status and batch indexes.")


def _partition(scope: Construct) -> str:
    return Stack.of(scope).partition


def _table_arn(scope: Construct, name: str) -> str:
    st = Stack.of(scope)
    return f"arn:{st.partition}:dynamodb:{st.region}:{st.account}:table/{name}"
