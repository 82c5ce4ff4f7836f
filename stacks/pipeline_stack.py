"""The labeling pipeline: intake, the labeling workflow and expert review, and the role Ground Truth runs as.

Reads like the architecture diagram: labeling assets -> Ground Truth execution role -> (intake -> workflow -> review).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.config import AppConfig
from stacks.intake import Intake
from stacks.labeling_assets import LabelingAssets
from stacks.labeling_role import GroundTruthExecutionRole
from stacks.labeling_workflow import LabelingWorkflow
from stacks.lambda_code import LambdaKit
from stacks.storage_refs import StorageRefs
from stacks.storage_stack import StorageStack
from stacks.workforce_stack import WorkforceStack


class PipelineStack(Stack):
    """Compute of the pipeline. Exposes ``assets``, ``gt_role``, ``functions`` (the one LambdaKit), ``workflow``,
    ``intake``."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        storage: StorageStack,
        workforce: WorkforceStack,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
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

        # The one LambdaKit of this stack: every construct here makes its functions with it.
        self.functions = LambdaKit(self, "Functions", config=config)

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
        )
        CfnOutput(self, "DispatchFunctionName", value=self.intake.dispatch_fn.function_name,
                  description="Dispatcher (the CLI's flush command invokes it)")
