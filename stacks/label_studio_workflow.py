"""The workflow's Label Studio functions (``labeling.backend: label_studio``; docs/label-studio.md, "Workflow").

* ``ls_submit`` (invoked by the state machine): imports a stage's photos into its Label Studio project and keeps the
  waiting task token on the batch (``lambda:invoke.waitForTaskToken``); also the state machine's look-up and stop of
  a stage.
* ``ls_webhook`` (a Lambda Function URL, AuthType NONE, that Label Studio's webhooks call): checks the shared secret,
  then the completion check that finishes a complete stage and resumes the execution (``SendTaskSuccess``).
* ``ls_poll`` (EventBridge Scheduler every ``label_studio.poll_minutes``): the same check for every open stage, so
  a lost webhook only delays a batch.

All three run in the Label Studio deployment's VPC (the API is internal) and read the API token from Secrets Manager.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import grants
from stacks.config import AppConfig
from stacks.label_studio_refs import LabelStudioRefs
from stacks.labeling_assets import LabelingAssets
from stacks.labeling_role import JOB_INPUT_PREFIX, JOB_OUTPUT_PREFIX
from stacks.lambda_code import LambdaKit
from stacks.nag import ack_wildcards, arn_token, checkov_skip
from stacks.storage_refs import StorageRefs

# Where the finished stages' answers go besides the output manifest (the review stage's per-reviewer answers, read
# by apply-review like Ground Truth's worker responses).
REVIEW_ANSWERS_PREFIX = "review-answers/"


# Where the labeling copies are: the projects' S3 storage presigns the tasks' s3:// images from this prefix.
LABELING_COPIES_PREFIX = "labeling-copies/"


def label_studio_environment(config: AppConfig, refs: LabelStudioRefs, storage: StorageRefs) -> dict[str, str]:
    """What every function that calls Label Studio reads (contract: docs/label-studio.md, "Workflow")."""
    ls = config.label_studio
    assert ls is not None
    return {
        "LABEL_STUDIO_URL": refs.api_url,
        "LABEL_STUDIO_TOKEN_SECRET_ARN": refs.token_secret.secret_arn,
        "LABEL_STUDIO_WEBHOOK_SECRET_ARN": refs.webhook_secret.secret_arn,
        # The projects' S3 storage (docs/label-studio.md, "Images"): the intake bucket's labeling copies, presigned
        # by the server for presign_ttl_minutes.
        "LABEL_STUDIO_IMAGES_BUCKET": storage.names.intake_bucket,
        "LABEL_STUDIO_IMAGES_PREFIX": LABELING_COPIES_PREFIX,
        "LABEL_STUDIO_PRESIGN_TTL_MINUTES": str(ls.presign_ttl_minutes),
    }


def grant_label_studio(fn: lambda_.Function, refs: LabelStudioRefs, *, webhook_secret: bool = False) -> None:
    """Read the API token (and the webhook secret), through the deployment's own grant (``kms:Decrypt`` on the data
    key only via Secrets Manager; ``ISecret.grant_read`` would need the storage stack's key policy)."""
    refs.grant_secret_read(fn, *([refs.token_secret, refs.webhook_secret] if webhook_secret else [refs.token_secret]))


class LabelStudioFunctions(Construct):
    """``submit`` (the state machine's), ``webhook`` with ``webhook_url``, ``poll`` with its ``schedule``.

    :meth:`allow_task_responses` (after the state machine exists) lets the webhook and the poll resume executions.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        kit: LambdaKit,
        storage: StorageRefs,
        assets: LabelingAssets,
        refs: LabelStudioRefs,
        environment: dict[str, str],
        async_failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id_)
        ls = config.label_studio
        assert ls is not None, "labeling.backend 'label_studio' needs the label_studio block (config validates it)"
        self._storage = storage
        names = storage.names
        env = {**environment, **label_studio_environment(config, refs, storage),
               "REVIEWERS_TABLE": names.reviewers_table}
        minutes = Duration.minutes

        self.webhook = kit.function(
            self, "Webhook", handler_dir="ls_webhook", timeout=minutes(5), memory_size=1024,
            description="Label Studio webhook: checks the shared secret, finishes a complete stage, resumes the batch",
            environment=env, invoked_by="Label Studio's webhooks (Function URL)", network=refs)
        # AuthType NONE: Label Studio cannot sign requests with SigV4. The handler refuses any request without the
        # shared secret (constant-time comparison) before it reads anything else.
        self.webhook_url = self.webhook.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        checkov_skip(self.webhook_url, "CKV_AWS_258", "Label Studio's webhooks cannot sign with SigV4; the handler "
                     "checks the shared secret from Secrets Manager on every request before doing anything.")

        self.submit = kit.function(
            self, "Submit", handler_dir="ls_submit", timeout=minutes(15), memory_size=1024,
            description="Imports a batch stage into Label Studio and keeps the task token; looks up and stops stages",
            environment={**env, "WEBHOOK_URL": self.webhook_url.url}, invoked_by="Step Functions", network=refs)
        self.poll = kit.function(
            self, "Poll", handler_dir="ls_poll", timeout=minutes(15), memory_size=1024,
            description="Finishes Label Studio stages whose webhook was lost (every label_studio.poll_minutes)",
            environment=env, async_failures=async_failures, network=refs)

        schedule_role = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"))
        self.schedule = scheduler.Schedule(
            self, "PollSchedule",
            description="Finishes Label Studio stages whose completion webhook was lost",
            schedule=scheduler.ScheduleExpression.rate(minutes(ls.poll_minutes)),
            target=targets.LambdaInvoke(
                self.poll, input=scheduler.ScheduleTargetInput.from_object({"trigger": "schedule"}),
                role=schedule_role, retry_attempts=2, max_event_age=minutes(10),
                # The next run polls again; an operator still hears about it (async failures alarm).
                dead_letter_queue=async_failures,
            ),
        )
        ack_wildcards(schedule_role, [f"{arn_token(self.poll)}:*"],
                      "CDK's Scheduler target grants invoke on the poll function and its versions.")

        art, batches = storage.artifacts_bucket, storage.batches_table
        for fn in (self.submit, self.webhook, self.poll):
            grant_label_studio(fn, refs, webhook_secret=fn is not self.poll)
            # The stage bookkeeping on the batch item (token, state, result).
            grants.ddb(fn, batches, write=True, indexes=False)
            grants.kms_use(fn, storage.key)
        # submit: reads the stage's manifest (jobs/), stops a stage; ensures the project's webhook.
        grants.s3_read(self.submit, art, JOB_INPUT_PREFIX)
        # the finishers (and submit's look-up, which finishes a complete stage): write the output manifest and the
        # review answers; read the reviewers' reliability for the consolidation.
        for fn in (self.submit, self.webhook, self.poll):
            grants.s3_write(fn, art, JOB_OUTPUT_PREFIX, REVIEW_ANSWERS_PREFIX)
            grants.ddb(fn, storage.reviewers_table, indexes=False)
            # taxonomy.json: the picker's display names.
            assets.grant_read(fn)
        # The poll and the webhook find the open stages with a Scan of the batches table (one small item per batch,
        # filtered on ls_pending; the table has no index on it).
        for fn in (self.poll, self.webhook):
            fn.add_to_role_policy(iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[batches.table_arn]))
        bucket = f"arn:{Stack.of(self).partition}:s3:::{names.artifacts_bucket}"
        for fn in (self.submit, self.webhook, self.poll):
            assert fn.role is not None
            reads_manifests = [f"{bucket}/{JOB_INPUT_PREFIX}*"] if fn is self.submit else []
            ack_wildcards(fn.role, [*reads_manifests, f"{bucket}/{JOB_OUTPUT_PREFIX}*",
                                    f"{bucket}/{REVIEW_ANSWERS_PREFIX}*"],
                          "Each prefix holds per-batch or per-job objects whose names are made at run time.")

    def allow_task_responses(self, state_machine_arn: str) -> None:
        """The webhook and the poll resume the waiting execution (SendTaskSuccess on this state machine only).

        ``state_machine_arn`` is built from the state machine's name, not its resource: the state machine invokes
        ``submit``, whose environment names the webhook's URL, so a reference to the resource would be circular.
        ``submit`` itself never resumes an execution (a finished stage is looked up by the state machine instead).
        """
        for fn in (self.webhook, self.poll):
            fn.add_to_role_policy(iam.PolicyStatement(actions=["states:SendTaskSuccess"],
                                                      resources=[state_machine_arn]))
