"""The labeling pipeline: intake, the labeling workflow and expert review, and the role Ground Truth runs as.

Reads like the architecture diagram: labeling assets -> Ground Truth execution role -> (intake -> workflow -> review).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import AppConfig
from stacks.intake import Intake
from stacks.label_studio_accounts import LabelStudioAccounts
from stacks.label_studio_refs import LabelStudioRefs
from stacks.labeling_assets import LabelingAssets
from stacks.labeling_role import GroundTruthExecutionRole
from stacks.labeling_workflow import LabelingWorkflow
from stacks.lambda_code import LambdaKit
from stacks.nag import ack, checkov_skip
from stacks.storage_refs import StorageRefs
from stacks.storage_stack import SQS_MANAGED_ENCRYPTION_REASON, StorageStack
from stacks.workforce_stack import WorkforceStack


class PipelineStack(Stack):
    """Compute of the pipeline. Exposes ``assets``, ``gt_role``, ``functions`` (the one LambdaKit), ``workflow``,
    ``intake``, ``async_failures`` (the queue of failed asynchronous invocations) and ``label_studio`` (the Label
    Studio deployment's :class:`LabelStudioRefs` when ``labeling.backend`` is ``label_studio``, else None)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        storage: StorageStack,
        workforce: WorkforceStack,
        label_studio: LabelStudioRefs | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
        if (config.labeling.backend == "label_studio") != (label_studio is not None):
            raise ValueError("PipelineStack: label_studio refs are given exactly when labeling.backend is "
                             f"'label_studio' (backend {config.labeling.backend!r})")
        self.label_studio = label_studio
        self.storage = StorageRefs(self, "Storage", storage=storage)
        self.assets = LabelingAssets(self, "LabelingAssets", config=config)
        self.gt_role = GroundTruthExecutionRole(
            self,
            "GroundTruthExecution",
            intake_bucket=self.storage.intake_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            key=self.storage.key,
            asset_object_arns=self.assets.object_arns,
            asset_bucket_arns=self.assets.bucket_arns,
            asset_keys=self.assets.object_keys,
        )
        CfnOutput(
            self,
            "GroundTruthRoleArn",
            value=self.gt_role.role.role_arn,
            description="Execution role of the labeling jobs",
        )
        CfnOutput(
            self,
            "LabelCategoriesUri",
            value=self.assets.uris["label-categories.json"],
            description="Label-category file of the labeling jobs",
        )

        # The one LambdaKit of this stack: every construct here makes its functions with it; their log groups are
        # encrypted with the data key.
        self.functions = LambdaKit(self, "Functions", config=config, log_key=self.storage.key)
        self.async_failures = self._async_failures_queue(config.project)

        # --- labeling workflow (issue 4) and its review stage (issue 5) -----------------------------------------
        self.workflow = LabelingWorkflow(
            self,
            "LabelingWorkflow",
            config=config,
            kit=self.functions,
            storage=self.storage,
            assets=self.assets,
            gt_role=self.gt_role,
            taxonomists_workteam_arn=workforce.taxonomists_team.attr_workteam_arn,
            reviewers_workteam_arn=workforce.reviewers_team.attr_workteam_arn,
            async_failures=self.async_failures,
            label_studio=label_studio,
        )
        CfnOutput(self, "StateMachineArn", value=self.workflow.state_machine.state_machine_arn,
                  description="Labeling workflow (start executions named batch-<batch_id>)")
        CfnOutput(self, "BatchSummaryTopicArn", value=self.workflow.topic.topic_arn,
                  description="Batch summaries: published datasets and failed batches")
        # --- end of labeling workflow ---------------------------------------------------------------------------

        # --- intake (issue 3): upload events -> register -> registry; the dispatcher starts the workflow --------
        self.intake = Intake(
            self,
            "Intake",
            config=config,
            kit=self.functions,
            storage=self.storage,
            state_machine=self.workflow.state_machine,
            async_failures=self.async_failures,
        )
        CfnOutput(self, "DispatchFunctionName", value=self.intake.dispatch_fn.function_name,
                  description="Dispatcher (the CLI's flush command invokes it)")

        # --- Label Studio accounts (issue 13): its API answers only inside the VPC, so the CLI invokes this ------
        self.label_studio_accounts: LabelStudioAccounts | None = None
        if label_studio is not None:
            self.label_studio_accounts = LabelStudioAccounts(self, "LabelStudioAccounts", kit=self.functions,
                                                             refs=label_studio)
            CfnOutput(self, "LabelStudioAccountsFunctionName",
                      value=self.label_studio_accounts.function.function_name,
                      description="Makes Label Studio accounts with a one-time password (fieldlabel taxonomists add)")

    def _async_failures_queue(self, project: str) -> sqs.Queue:
        """Where asynchronous invocations end when they fail for good: Lambda on-failure destinations (dispatch,
        fail-batch) and the dead letters of the dispatch schedule and the stopped-execution rule.

        SQS-managed encryption, as for the intake queues: EventBridge and Scheduler deliver to it without a key-policy
        grant, and the messages hold event metadata (batch and execution names), never photo data.
        """
        queue = sqs.Queue(
            self,
            "AsyncFailures",
            queue_name=f"{project}-async-failures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        reason = ("This queue is itself the dead-letter destination of the asynchronous invocations; the "
                  "monitoring stack alarms on its first message.")
        ack(queue, "AwsSolutions-SQS3", reason)
        ack(queue, "Serverless-SQSRedrivePolicy", reason)
        checkov_skip(queue, "CKV_AWS_27", SQS_MANAGED_ENCRYPTION_REASON)
        CfnOutput(self, "AsyncFailuresQueueUrl", value=queue.queue_url,
                  description="Failed asynchronous invocations (dispatcher, fail-batch) and undelivered events")
        return queue
