"""The labeling workflow: a Standard state machine that runs each batch through Ground Truth and publishes a dataset.

Prepare the job -> run it (``createLabelingJob.sync``, or adopt a job that already exists) -> record the labels ->
expert review (select, run a custom review job, apply) -> publish an immutable dataset version -> notify.
A failure before the job completed ends in "Release the batch's photos" (photos back to the pool, batch FAILED); a
failure after it (recording, review, publishing: the labels are paid for) is retried, then parks the batch for an
operator, whose ``fieldlabel resume`` starts a new execution at the failed step ("Is this a resumption?").
See docs/workflow.md for the states and contracts, docs/decisions.md for the IAM of the ``.sync`` integration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import grants
from stacks.config import AppConfig
from stacks.label_studio_refs import LabelStudioRefs
from stacks.label_studio_workflow import LabelStudioFunctions, grant_label_studio, label_studio_environment
from stacks.labeling_assets import LabelingAssets
from stacks.labeling_role import JOB_INPUT_PREFIX, JOB_OUTPUT_PREFIX, GroundTruthExecutionRole
from stacks.lambda_code import LambdaKit, retention_days
from stacks.nag import ack_wildcards, arn_token
from stacks.storage_refs import StorageRefs

# Ground Truth fails a job after 30 days (facts §7); a state that outlives that by a day means something is wrong,
# and a state timeout (unlike the execution timeout) can still be caught to stop the job and release the batch.
JOB_STATE_TIMEOUT = Duration.days(31)
# Labeling job + review job + the Lambda steps, with room to spare; Standard workflows allow a year.
EXECUTION_TIMEOUT = Duration.days(65)
DEFAULT_POLL_SECONDS = 300
# ``$.job`` when the engine labeled the whole batch (the process-output handler knows it).
NO_JOB_STATUS = "NotNeeded"
# The own engine (labeling.engine: model): training holds every expert label's embedding (100,000 x 1,280 float32
# is 0.5 GB) plus the folds' working copies; prepare holds a batch's embeddings and the embedding model.
TRAIN_MEMORY_MB = 4096
ENGINE_PREPARE_MEMORY_MB = 3008
MODELS_PREFIX = "models/"
# The synchronous caller of the workflow's own functions (LambdaKit.function's invoked_by).
STEP_FUNCTIONS = "Step Functions"

CREATE_LABELING_JOB_SYNC = "arn:aws:states:::sagemaker:createLabelingJob.sync"
# Top-level CreateLabelingJob fields the prepare Lambda returns. JSONPath optimized integrations take no
# "Parameters.$", so each field is passed on by its own path; automated jobs add LabelingJobAlgorithmsConfig.
_COMMON_REQUEST_FIELDS = ("LabelingJobName", "LabelAttributeName", "InputConfig", "OutputConfig", "RoleArn",
                          "LabelCategoryConfigS3Uri", "StoppingConditions", "HumanTaskConfig", "Tags")
_AUTOMATED_REQUEST_FIELDS = (*_COMMON_REQUEST_FIELDS, "LabelingJobAlgorithmsConfig")

# Lambda and service errors worth retrying: throttling and transient faults. Everything else goes to a Catch.
_LAMBDA_TRANSIENT = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                     "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException"]
_DOMAIN_TRANSIENT = ["ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                     "TransactionConflictException", "InternalServerError", "SlowDown"]
# The optimized SageMaker integration reports service errors as SageMaker.AmazonSageMakerException; the named
# ones are what the SDK integration reports. A job that ran and failed is States.TaskFailed and is not retried.
_SAGEMAKER_TRANSIENT = ["SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException",
                        "SageMaker.ResourceLimitExceeded", "SageMaker.ResourceLimitExceededException"]
# What the Label Studio client raises once its own retries with backoff are spent (the Lambda's error type).
_LS_UNAVAILABLE = "LabelStudioUnavailableError"
# Steps after the labeling job completed are retried on any error before the batch is parked: the job's labels are
# paid for, so a transient fault must cost a retry of that one step, not the batch.
_AFTER_JOB_RETRY_INTERVAL = Duration.seconds(20)
_AFTER_JOB_RETRY_ATTEMPTS = 2


@dataclass(frozen=True)
class WorkflowFunctions:
    """The workflow's own Lambdas and the review stage's."""

    prepare: lambda_.Function
    process: lambda_.Function
    publish: lambda_.Function
    fail: lambda_.Function
    select_review: lambda_.Function
    apply_review: lambda_.Function
    pre_annotation: lambda_.Function
    post_annotation: lambda_.Function
    # ``labeling.engine: model`` only: trains the chain's next model after each batch.
    train: lambda_.Function | None = None


class LabelingWorkflow(Construct):
    """The state machine, its Lambdas (workflow and review stage) and the notification topic.

    Exposes ``state_machine``, ``topic`` (batch summaries, for the monitoring stack), ``functions`` and
    ``log_group``.
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
        gt_role: GroundTruthExecutionRole,
        taxonomists_workteam_arn: str,
        reviewers_workteam_arn: str,
        async_failures: sqs.IQueue,
        label_studio: LabelStudioRefs | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self._config = config
        self._async_failures = async_failures
        self._ls_refs = label_studio
        removal = RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY
        project = config.project

        self.topic = sns.Topic(
            self, "BatchSummaries", display_name=f"{project} labeling batches", master_key=storage.key,
            enforce_ssl=True,
        )

        labeling_job_arn = stack.format_arn(service="sagemaker", resource="labeling-job", resource_name=f"{project}-*")
        self.functions = self._functions(kit, storage, assets, gt_role, taxonomists_workteam_arn,
                                         reviewers_workteam_arn, labeling_job_arn)
        gt_role.allow_invoke(self.functions.pre_annotation, self.functions.post_annotation)
        self._gt_role_arn = gt_role.role.role_arn
        # labeling.backend 'label_studio': the run states wait for a task token instead of a Ground Truth job.
        self.label_studio: LabelStudioFunctions | None = None
        if label_studio is not None:
            self.label_studio = LabelStudioFunctions(
                self, "LabelStudio", config=config, kit=kit, storage=storage, assets=assets, refs=label_studio,
                environment=self._ls_environment, async_failures=async_failures)

        # Encrypted with the data key: with monitoring.log_execution_data on, the log holds photo keys and labels.
        self.log_group = logs.LogGroup(
            self, "ExecutionLogs", retention=retention_days(config.retention.log_retention_days),
            encryption_key=storage.key, removal_policy=removal,
        )

        # On the Label Studio backend the state machine has a fixed name: the webhook and poll functions resume its
        # executions (SendTaskSuccess on its ARN), while it invokes the submit function, whose environment names the
        # webhook's URL; an ARN made from the name keeps that circle out of CloudFormation's dependencies.
        sm_name = f"{project}-labeling" if self.label_studio is not None else None
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=sm_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment=f"{project}: label a batch with Ground Truth, review it, publish a dataset version",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            # Every event is logged; the states' input and output only when configured (they name photos and labels).
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL,
                                include_execution_data=config.monitoring.log_execution_data),
        )
        if self.label_studio is not None and sm_name is not None:
            self.label_studio.allow_task_responses(stack.format_arn(
                service="states", resource="stateMachine", resource_name=sm_name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME))
        self._state_machine_permissions(stack, storage, gt_role, labeling_job_arn)
        self._acknowledge(stack, storage, labeling_job_arn)
        self._release_stopped_executions()

    def _release_stopped_executions(self) -> None:
        """An execution stopped by hand or timed out never reaches the failure chain; this rule releases its batch.

        The rule sends the execution's name (``batch-<batch_id>``) to the fail-batch function, which skips batches
        that already finished and publishes the summary itself.
        """
        fail = self.functions.fail
        fail.add_environment("SUMMARY_TOPIC_ARN", self.topic.topic_arn)
        fail.add_to_role_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]))
        self.stopped_rule = events.Rule(
            self,
            "ExecutionStoppedOrTimedOut",
            description="Releases the photos of a labeling execution that was stopped or timed out",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": [self.state_machine.state_machine_arn], "status": ["ABORTED", "TIMED_OUT"]},
            ),
            targets=[
                events_targets.LambdaFunction(
                    fail,
                    event=events.RuleTargetInput.from_object({
                        "execution_name": events.EventField.from_path("$.detail.name"),
                        "error": {"Error": events.EventField.from_path("$.detail.status"),
                                  "Cause": "the execution was stopped or timed out before the workflow could finish"},
                    }),
                    retry_attempts=4,
                    # An event EventBridge could not deliver; the monitoring stack alarms on this queue.
                    dead_letter_queue=self._async_failures,
                )
            ],
        )

    # ------------------------------------------------------------------------------------------------- functions

    def _functions(
        self, kit: LambdaKit, storage: StorageRefs, assets: LabelingAssets, gt_role: GroundTruthExecutionRole,
        taxonomists_workteam_arn: str, reviewers_workteam_arn: str, labeling_job_arn: str,
    ) -> WorkflowFunctions:
        config = self._config
        names = storage.names
        tables = {"PHOTOS_TABLE": names.photos_table, "BATCHES_TABLE": names.batches_table,
                  "ARTIFACTS_BUCKET": names.artifacts_bucket}
        job_settings = {
            "workers_per_photo": config.labeling.workers_per_photo,
            "task_time_limit_seconds": config.labeling.task_time_limit_seconds,
            "task_availability_seconds": config.labeling.task_availability_days * 86_400,
            "max_concurrent_tasks": config.labeling.max_concurrent_tasks,
            "task_title": config.labeling.task_title,
            "task_description": config.labeling.task_description,
            "review_enabled": config.review.enabled,
            "reviewers_per_photo": config.review.reviewers_per_photo,
            "review_task_time_limit_seconds": config.review.task_time_limit_seconds,
        }
        uris = assets.uris
        common = {
            **tables,
            "CONFIG_JSON": config.runtime_json(),
            "JOB_SETTINGS_JSON": json.dumps(job_settings, separators=(",", ":")),
            "MAX_ATTEMPTS": str(config.labeling.max_attempts),
            "RETRY_BACKOFF_SECONDS": str(config.labeling.retry_backoff_minutes * 60),
            "RETRY_BACKOFF_MAX_SECONDS": str(config.labeling.retry_backoff_max_hours * 3600),
        }
        job_env = {
            **common,
            "GT_ROLE_ARN": gt_role.role.role_arn,
            "WORKTEAM_ARN": taxonomists_workteam_arn,
            "REVIEW_WORKTEAM_ARN": reviewers_workteam_arn,
            "LABEL_CATEGORIES_URI": uris["label-categories.json"],
            "UI_TEMPLATE_URI": uris.get("image-classification.liquid.html", ""),
            "REVIEW_TEMPLATE_URI": uris.get("expert-review.liquid.html", ""),
            "KMS_KEY_ARN": storage.key.key_arn,
            "POLL_SECONDS": str(DEFAULT_POLL_SECONDS),
        }
        review_env = {
            "UNKNOWN_LABEL": config.taxonomy.unknown_label,
            "AUDIT_SAMPLE_RATE": str(config.review.audit_sample_rate),
            "LOW_CONFIDENCE_THRESHOLD": str(config.review.low_confidence_threshold),
            "ADJUDICATION_THRESHOLD": str(config.review.adjudication_threshold),
        }
        minutes = Duration.minutes

        pre_annotation = kit.function(
            self, "ReviewPreAnnotation", handler_dir="pre_annotation", timeout=Duration.seconds(60), memory_size=512,
            description="Ground Truth pre-annotation of the expert-review job", invoked_by="Ground Truth",
            environment={"TAXONOMY_S3_URI": uris["taxonomy.json"], "PHOTOS_TABLE": names.photos_table})
        post_annotation = kit.function(
            self, "ReviewPostAnnotation", handler_dir="post_annotation", timeout=minutes(5), memory_size=1024,
            description="Ground Truth consolidation of the expert-review job", invoked_by="Ground Truth",
            environment={"REVIEWERS_TABLE": names.reviewers_table, "ARTIFACTS_BUCKET": names.artifacts_bucket,
                         **review_env})

        # The review job's request names our own annotation functions.
        job_env["PRE_ANNOTATION_ARN"] = pre_annotation.function_arn
        job_env["POST_ANNOTATION_ARN"] = post_annotation.function_arn
        engine = config.labeling.engine == "model"
        # With the own engine, prepare also embeds photos intake left without an embedding and scores the batch.
        prepare = kit.function(self, "PrepareJob", handler_dir="prepare_job", timeout=minutes(15),
                               memory_size=ENGINE_PREPARE_MEMORY_MB if engine else 1024,
                               description="Writes a batch's input manifest and builds its labeling-job request",
                               environment=job_env, embedding_models=engine, invoked_by=STEP_FUNCTIONS)
        process = kit.function(self, "ProcessOutput", handler_dir="process_output", timeout=minutes(15),
                               memory_size=1024, description="Records a finished labeling job's labels",
                               environment=job_env, invoked_by=STEP_FUNCTIONS)
        publish = kit.function(self, "PublishDataset", handler_dir="publish_dataset", timeout=minutes(15),
                               memory_size=1024, description="Writes a batch's immutable dataset version",
                               environment=job_env, invoked_by=STEP_FUNCTIONS)
        # What the Label Studio functions read (LabelStudioFunctions adds the server's URL and secrets).
        self._ls_environment = {**common, **review_env, "TAXONOMY_S3_URI": uris["taxonomy.json"],
                                "KMS_KEY_ARN": storage.key.key_arn}
        ls = self._ls_refs
        # Also invoked asynchronously by the stopped-execution rule, so it has an on-failure destination. On the
        # Label Studio backend it stops the batch's stages there (deletes unanswered tasks), so it joins the VPC.
        fail = kit.function(self, "FailBatch", handler_dir="fail_batch", timeout=minutes(15), memory_size=512,
                            description="Stops a batch's jobs, then releases its photos or parks it for an operator",
                            environment={**job_env, **(label_studio_environment(config, ls, storage) if ls else {})},
                            async_failures=self._async_failures, network=ls)
        if ls is not None:
            grant_label_studio(fail, ls)
        select_review = kit.function(
            self, "SelectReview", handler_dir="select_review", timeout=minutes(15), memory_size=1024,
            description="Picks a labeled batch's photos for expert review", invoked_by=STEP_FUNCTIONS,
            environment={"PHOTOS_TABLE": names.photos_table, "ARTIFACTS_BUCKET": names.artifacts_bucket, **review_env})
        apply_review = kit.function(
            self, "ApplyReview", handler_dir="apply_review", timeout=minutes(15), memory_size=1024,
            description="Applies a finished review job to the registry", invoked_by=STEP_FUNCTIONS,
            environment={"PHOTOS_TABLE": names.photos_table, "REVIEWERS_TABLE": names.reviewers_table,
                         "ARTIFACTS_BUCKET": names.artifacts_bucket,
                         "LABEL_CATEGORIES_URI": uris["label-categories.json"], **review_env})
        art, photos, batches, reviewers = (storage.artifacts_bucket, storage.photos_table, storage.batches_table,
                                           storage.reviewers_table)
        describe_job = iam.PolicyStatement(actions=["sagemaker:DescribeLabelingJob"], resources=[labeling_job_arn])
        # prepare: reads the batch, writes its manifest, looks up an existing job.
        grants.ddb(prepare, photos, write=engine)
        grants.ddb(prepare, batches, write=True, indexes=False)
        grants.s3_write(prepare, art, JOB_INPUT_PREFIX)
        grants.kms_use(prepare, storage.key)
        prepare.add_to_role_policy(describe_job)
        train = None
        if engine:
            # prepare (engine): writes machine labels and missing embeddings into the photos, reads the chain's
            # model, and reads labeling copies (or originals) to embed what intake did not.
            grants.s3_read(prepare, art, MODELS_PREFIX)
            grants.s3_read(prepare, storage.intake_bucket)
            train = kit.function(
                self, "TrainModel", handler_dir="train_model", timeout=minutes(15), memory_size=TRAIN_MEMORY_MB,
                description="Trains the auto-labeling engine's next model from every expert label so far",
                environment=common, invoked_by=STEP_FUNCTIONS)
            # train: reads the batch's expert labels, writes its label shard, reads every shard of the chain,
            # writes the model version and moves the chain's control item.
            grants.ddb(train, photos)
            grants.ddb(train, batches, write=True, indexes=False)
            grants.s3_read(train, art, MODELS_PREFIX, JOB_INPUT_PREFIX)
            grants.s3_write(train, art, MODELS_PREFIX)
            train.add_to_role_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[art.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}}))
            grants.kms_use(train, storage.key)
        # process: reads the job output, labels photos, releases unlabeled ones (intake's release_batch).
        grants.ddb(process, photos, write=True)
        grants.ddb(process, batches, write=True, indexes=False)
        grants.s3_read(process, art, JOB_OUTPUT_PREFIX)
        grants.kms_use(process, storage.key, encrypt=False)
        # publish: reads labeled photos and the assets (for their hashes), writes the dataset version.
        grants.ddb(publish, photos)
        grants.ddb(publish, batches, write=True, indexes=False)
        # ListBucket (limited to datasets/): reading datasets/LATEST before the first version exists must answer
        # 404, which publish expects; without it S3 answers 403 (found by the executed-IAM check).
        grants.s3_read(publish, art, "datasets/", list_bucket=True)
        grants.s3_write(publish, art, "datasets/")
        grants.kms_use(publish, storage.key)
        assets.grant_read(publish)
        # fail: stops the batch's jobs, releases its photos and marks it failed, or parks it.
        grants.ddb(fail, photos, write=True)
        grants.ddb(fail, batches, write=True, indexes=False)
        grants.kms_use(fail, storage.key)
        fail.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeLabelingJob", "sagemaker:StopLabelingJob"], resources=[labeling_job_arn]))
        # Review stage, per docs/review.md "IAM".
        grants.ddb(select_review, photos)
        grants.s3_write(select_review, art, JOB_INPUT_PREFIX)
        grants.kms_use(select_review, storage.key)
        # ListBucket: the worker-response files (Cognito sub of each workerId) are found by listing the job output.
        grants.s3_read(post_annotation, art, JOB_OUTPUT_PREFIX, JOB_INPUT_PREFIX, list_bucket=True)
        grants.s3_write(post_annotation, art, "review-answers/")
        grants.ddb(post_annotation, reviewers, indexes=False)
        grants.kms_use(post_annotation, storage.key)
        post_annotation.add_to_role_policy(describe_job)
        grants.s3_read(apply_review, art, JOB_OUTPUT_PREFIX, "review-answers/", list_bucket=True)
        assets.grant_read(apply_review)
        grants.ddb(apply_review, photos, write=True, indexes=False)
        grants.ddb(apply_review, reviewers, write=True, indexes=False)
        grants.kms_use(apply_review, storage.key, encrypt=False)
        assets.grant_read(pre_annotation)
        grants.ddb(pre_annotation, photos, indexes=False)
        grants.kms_use(pre_annotation, storage.key, encrypt=False)
        return WorkflowFunctions(prepare, process, publish, fail, select_review, apply_review, pre_annotation,
                                 post_annotation, train)

    # ------------------------------------------------------------------------------------------------ definition

    def _invoke(self, state_name: str, fn: lambda_.IFunction, payload: sfn.TaskInput | None, result_path: str,
                *, after_job: bool = False) -> tasks.LambdaInvoke:
        """A Lambda step; ``payload`` None passes the whole state (``Parameters: "$"`` is not valid ASL).

        ``after_job``: the step runs on labels already paid for, so any other error is retried too (last retrier)
        before the step's Catch parks the batch.
        """
        task = tasks.LambdaInvoke(self, state_name, lambda_function=fn, payload=payload, result_path=result_path,
                                  payload_response_only=True, retry_on_service_exceptions=False)
        task.add_retry(errors=_LAMBDA_TRANSIENT, interval=Duration.seconds(2), backoff_rate=2, max_attempts=6)
        task.add_retry(errors=_DOMAIN_TRANSIENT, interval=Duration.seconds(5), backoff_rate=2, max_attempts=5)
        if after_job:
            task.add_retry(errors=["States.ALL"], interval=_AFTER_JOB_RETRY_INTERVAL, backoff_rate=3,
                           max_attempts=_AFTER_JOB_RETRY_ATTEMPTS)
        return task

    def _run_job(self, state_name: str, request_path: str, fields: tuple[str, ...], result_path: str,
                 ) -> sfn.CustomState:
        # RoleArn is the one field fixed at synth: it is the role the state machine may pass (iam:PassRole), so the
        # definition names it instead of trusting the request. (moto's ASL grammar also mistakes "RoleArn.$" for
        # the Credentials field.)
        parameters: dict[str, object] = {f"{f}.$": f"{request_path}.{f}" for f in fields if f != "RoleArn"}
        parameters["RoleArn"] = self._gt_role_arn
        state = sfn.CustomState(self, state_name, state_json={
            "Type": "Task",
            "Resource": CREATE_LABELING_JOB_SYNC,
            "Parameters": parameters,
            "ResultPath": result_path,
            "TimeoutSeconds": int(JOB_STATE_TIMEOUT.to_seconds()),
        })
        state.add_retry(errors=_SAGEMAKER_TRANSIENT, interval=Duration.seconds(30), backoff_rate=2, max_attempts=4)
        return state

    def _ls_run(self, state_name: str, stage: str, job_name_path: str, manifest_path: str,
                result_path: str) -> tasks.LambdaInvoke:
        """A Label Studio stage: ``ls_submit`` imports it and keeps the task token; the webhook or the poll resumes
        the execution with the stage's DescribeLabelingJob-shaped result (docs/label-studio.md, "Workflow")."""
        assert self.label_studio is not None
        task = tasks.LambdaInvoke(
            self, state_name, lambda_function=self.label_studio.submit,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object({
                "action": "submit", "stage": stage, "batch_id": sfn.JsonPath.string_at("$.batch_id"),
                "job_name": sfn.JsonPath.string_at(job_name_path),
                "manifest_uri": sfn.JsonPath.string_at(manifest_path),
                "task_token": sfn.JsonPath.task_token,
            }),
            result_path=result_path, retry_on_service_exceptions=False,
            # As long as a Ground Truth job may run; the timeout stops the stage and releases the batch.
            task_timeout=sfn.Timeout.duration(JOB_STATE_TIMEOUT),
        )
        task.add_retry(errors=_LAMBDA_TRANSIENT, interval=Duration.seconds(2), backoff_rate=2, max_attempts=6)
        # The client already retried with backoff; the server may be restarting or scaling, so wait longer.
        task.add_retry(errors=[_LS_UNAVAILABLE, *_DOMAIN_TRANSIENT], interval=Duration.seconds(60), backoff_rate=2,
                       max_attempts=4)
        return task

    def _ls_call(self, state_name: str, action: str, stage: str, job_name_path: str,
                 result_path: str) -> tasks.LambdaInvoke:
        """``ls_submit``'s look-up (the stage's result, finishing it if complete) or stop of a Label Studio stage."""
        assert self.label_studio is not None
        task = self._invoke(state_name, self.label_studio.submit, sfn.TaskInput.from_object({
            "action": action, "stage": stage, "batch_id": sfn.JsonPath.string_at("$.batch_id"),
            "job_name": sfn.JsonPath.string_at(job_name_path),
        }), result_path)
        task.add_retry(errors=[_LS_UNAVAILABLE], interval=Duration.seconds(60), backoff_rate=2, max_attempts=4)
        return task

    def _describe(self, state_name: str, job_name_path: str, result_path: str) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self, state_name, service="sagemaker", action="describeLabelingJob",
            iam_action="sagemaker:DescribeLabelingJob", iam_resources=[self._labeling_job_arn()],
            parameters={"LabelingJobName": sfn.JsonPath.string_at(job_name_path)}, result_path=result_path,
        )
        task.add_retry(errors=["SageMaker.ThrottlingException", "SageMaker.SageMakerException"],
                       interval=Duration.seconds(10), backoff_rate=2, max_attempts=5)
        return task

    def _stop(self, state_name: str, job_name_path: str) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self, state_name, service="sagemaker", action="stopLabelingJob",
            iam_action="sagemaker:StopLabelingJob", iam_resources=[self._labeling_job_arn()],
            parameters={"LabelingJobName": sfn.JsonPath.string_at(job_name_path)}, result_path=sfn.JsonPath.DISCARD,
        )
        task.add_retry(errors=["SageMaker.ThrottlingException"], interval=Duration.seconds(10), max_attempts=3)
        return task

    def _labeling_job_arn(self) -> str:
        return Stack.of(self).format_arn(service="sagemaker", resource="labeling-job",
                                         resource_name=f"{self._config.project}-*")

    def _definition(self) -> sfn.IChainable:
        f = self.functions
        fail_chain = self._failure_chain()
        park = self._park_chain()

        prepare = self._invoke("Prepare the labeling job", f.prepare, None, "$.prepared")
        prepare.add_catch(fail_chain, errors=["States.ALL"], result_path="$.error")

        label_studio = self.label_studio is not None
        # Label Studio has no automated labeling (the config refuses it), so that backend has no automated run.
        run_automated = None if label_studio else self._run_job(
            "Run the automated labeling job", "$.prepared.request", _AUTOMATED_REQUEST_FIELDS, "$.job")
        run_human: sfn.TaskStateBase | sfn.CustomState
        if label_studio:
            run_human = self._ls_run("Run the human labeling job", "labeling", "$.prepared.job_name",
                                     "$.prepared.manifest_uri", "$.job")
            look_up: sfn.TaskStateBase = self._ls_call("Look up the labeling job", "look_up", "labeling",
                                                       "$.prepared.job_name", "$.job")
            stop_job: sfn.TaskStateBase = self._ls_call("Stop the labeling job that ran too long", "stop",
                                                        "labeling", "$.prepared.job_name", sfn.JsonPath.DISCARD)
        else:
            run_human = self._run_job("Run the human labeling job", "$.prepared.request", _COMMON_REQUEST_FIELDS,
                                      "$.job")
            look_up = self._describe("Look up the labeling job", "$.prepared.job_name", "$.job")
            stop_job = self._stop("Stop the labeling job that ran too long", "$.prepared.job_name")
        look_up.add_catch(fail_chain, errors=["States.ALL"], result_path="$.lookup_error")
        wait = sfn.Wait(self, "Wait for the labeling job",
                        time=sfn.WaitTime.seconds_path("$.prepared.poll_seconds"))
        stop_job.add_catch(fail_chain, errors=["States.ALL"], result_path="$.stop_error")
        # Ground Truth writes what a stopped job labeled to its output (StopLabelingJob): look at the job again so
        # those paid labels are recorded. A Label Studio stage that is stopped is withdrawn instead.
        stop_job.next(fail_chain if label_studio else look_up)
        for run in (r for r in (run_automated, run_human) if r is not None):
            run.add_catch(stop_job, errors=["States.Timeout"], result_path="$.error")
            # Anything else (a failed job, or an error after the job was created): look at the job before giving
            # up, so a job that is in fact still running is waited for instead of abandoned.
            run.add_catch(look_up, errors=["States.ALL"], result_path="$.error")

        record = self._invoke("Record the labels", f.process, sfn.TaskInput.from_object({
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
            "kind": sfn.JsonPath.string_at("$.prepared.kind"),
            "job": sfn.JsonPath.object_at("$.job"),
        }), "$.labeling", after_job=True)
        record.add_catch(park("record", "Park after recording the labels failed"), errors=["States.ALL"],
                         result_path="$.error")

        job_state = (
            sfn.Choice(self, "Has the labeling job finished?")
            .when(sfn.Condition.string_equals("$.job.LabelingJobStatus", "Completed"), record)
            .when(sfn.Condition.or_(*(sfn.Condition.string_equals("$.job.LabelingJobStatus", s)
                                      for s in ("Initializing", "InProgress", "Stopping"))), wait)
        )
        if not label_studio:
            # A stopped job keeps the labels it finished (paid for): record them, release the rest. The presence
            # check comes first so a response without counters goes to the failure path, not to a runtime error.
            labeled_before_stop = (
                sfn.Choice(self, "Did the stopped job label any photo?")
                .when(sfn.Condition.is_not_present("$.job.LabelCounters.TotalLabeled"), fail_chain)
                .when(sfn.Condition.number_greater_than("$.job.LabelCounters.TotalLabeled", 0), record)
                .otherwise(fail_chain)
            )
            job_state.when(sfn.Condition.string_equals("$.job.LabelingJobStatus", "Stopped"), labeled_before_stop)
        job_state.otherwise(fail_chain)
        look_up.next(job_state)
        wait.next(look_up)
        if run_automated is not None:
            run_automated.next(record)
        run_human.next(record)

        start_job = (
            sfn.Choice(self, "Does the batch already have a labeling job?")
            .when(sfn.Condition.boolean_equals("$.prepared.exists", True), look_up)
        )
        if f.train is not None:
            # The engine labeled every photo: no taxonomists' job; process-output counts the machine labels.
            no_job = sfn.Pass(self, "Note that the model labeled every photo",
                              result=sfn.Result.from_object({"LabelingJobStatus": NO_JOB_STATUS}), result_path="$.job")
            start_job.when(sfn.Condition.number_equals("$.prepared.human_count", 0), no_job.next(record))
        if run_automated is not None:
            start_job.when(sfn.Condition.string_equals("$.prepared.kind", "automated"), run_automated)
        start_job.otherwise(run_human)

        publish = self._publish_chain(park)
        after_review = publish if f.train is None else self._training_stage(f.train, publish)
        review = self._review_stage(after_review, park)
        record.next(review)
        prepare.next(start_job)

        # `fieldlabel resume` starts a new execution with "resume_from": the batch's state is rebuilt from the
        # registry (the prepare function's resume stage) and the workflow goes on at the step that failed.
        resume = self._invoke("Prepare the resumption", f.prepare, None, "$")
        cannot_resume = sfn.Fail(self, "The batch could not be resumed", error="ResumeRefused",
                                 cause="The batch is not parked (or another resumption took it over); nothing changed")
        resume.add_catch(cannot_resume, errors=["States.ALL"], result_path="$.error")
        resume.next(
            sfn.Choice(self, "Where does the batch resume?")
            .when(sfn.Condition.string_equals("$.resume_from", "record"), start_job)
            .when(sfn.Condition.string_equals("$.resume_from", "review"), review)
            .when(sfn.Condition.string_equals("$.resume_from", "publish"), publish)
            .otherwise(cannot_resume)
        )
        return (
            sfn.Choice(self, "Is this a resumption?")
            .when(sfn.Condition.is_present("$.resume_from"), resume)
            .otherwise(prepare)
        )

    def _training_stage(self, train_fn: lambda_.Function, publish: sfn.IChainable) -> sfn.IChainable:
        """Train the chain's next model; a failure is noted and the batch is published all the same."""
        train = self._invoke("Train the model", train_fn, sfn.TaskInput.from_object({
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
        }), "$.training")
        # The batch's labels are in the registry and its label shard is written first, so a later training picks
        # them up; the next batch is decided by the current model meanwhile.
        failed = sfn.Pass(self, "Note that training failed", parameters={
            "trained": False, "skipped": "training failed", "error": sfn.JsonPath.object_at("$.training_error"),
        }, result_path="$.training")
        train.add_catch(failed.next(publish), errors=["States.ALL"], result_path="$.training_error")
        return train.next(publish)

    def _review_stage(self, publish: sfn.IChainable, park: Callable[[str, str], sfn.IChainable]) -> sfn.Choice:
        f = self.functions
        park_review = park("review", "Park after the review failed")

        def skipped(name: str, reason: str, *, with_error: str | None = None) -> sfn.Chain:
            params: dict[str, object] = {"skipped": reason}
            if with_error:
                params["error"] = sfn.JsonPath.object_at(with_error)
            return sfn.Pass(self, name, parameters=params, result_path="$.review").next(publish)

        # Only a review job that ran and did not finish (failed, stopped, timed out) is given up: publishing goes on
        # without its results. Errors of our own steps are retried, then park the batch (the labels stay).
        review_failed = skipped("Note that the review did not finish", "review failed",
                                with_error="$.review_error")
        select = self._invoke("Select photos for expert review", f.select_review, sfn.TaskInput.from_object({
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
        }), "$.review_selection", after_job=True)
        select.add_catch(park_review, errors=["States.ALL"], result_path="$.error")
        prepare_review = self._invoke("Prepare the review job", f.prepare, sfn.TaskInput.from_object({
            "stage": "review",
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
            "manifest_uri": sfn.JsonPath.string_at("$.review_selection.manifest_uri"),
        }), "$.review_prepared", after_job=True)
        prepare_review.add_catch(park_review, errors=["States.ALL"], result_path="$.error")
        run_review: sfn.TaskStateBase | sfn.CustomState
        if self.label_studio is not None:
            # The senior reviewers' Label Studio project, the same way as the taxonomists'.
            run_review = self._ls_run("Run the expert review job", "review", "$.review_prepared.job_name",
                                      "$.review_prepared.manifest_uri", "$.review_job")
            stop_review: sfn.TaskStateBase = self._ls_call("Stop the review job that ran too long", "stop", "review",
                                                           "$.review_prepared.job_name", sfn.JsonPath.DISCARD)
            look_up_review: sfn.TaskStateBase = self._ls_call("Look up the review job", "look_up", "review",
                                                              "$.review_prepared.job_name", "$.review_job")
        else:
            run_review = self._run_job("Run the expert review job", "$.review_prepared.request",
                                       _COMMON_REQUEST_FIELDS, "$.review_job")
            stop_review = self._stop("Stop the review job that ran too long", "$.review_prepared.job_name")
            # A failed create (e.g. ResourceInUse: a resumed batch's review job exists) or a job that ended: look
            # at the job, wait for it if it runs, apply it if it completed.
            look_up_review = self._describe("Look up the review job", "$.review_prepared.job_name", "$.review_job")
        stop_review.add_catch(review_failed, errors=["States.ALL"], result_path="$.stop_error")
        stop_review.next(review_failed)
        look_up_review.add_catch(park_review, errors=["States.ALL"], result_path="$.error")
        wait_review = sfn.Wait(self, "Wait for the review job",
                               time=sfn.WaitTime.seconds_path("$.prepared.poll_seconds"))
        wait_review.next(look_up_review)
        run_review.add_catch(stop_review, errors=["States.Timeout"], result_path="$.review_error")
        run_review.add_catch(look_up_review, errors=["States.ALL"], result_path="$.review_error")
        apply = self._invoke("Apply the expert review", f.apply_review, sfn.TaskInput.from_object({
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
            "output_manifest_uri": sfn.JsonPath.string_at("$.review_job.LabelingJobOutput.OutputDatasetS3Uri"),
            "job_name": sfn.JsonPath.string_at("$.review_job.LabelingJobName"),
        }), "$.review", after_job=True)
        apply.add_catch(park_review, errors=["States.ALL"], result_path="$.error")
        apply.next(publish)
        look_up_review.next(
            sfn.Choice(self, "Has the review job finished?")
            .when(sfn.Condition.string_equals("$.review_job.LabelingJobStatus", "Completed"), apply)
            .when(sfn.Condition.or_(*(sfn.Condition.string_equals("$.review_job.LabelingJobStatus", s)
                                      for s in ("Initializing", "InProgress", "Stopping"))), wait_review)
            .otherwise(review_failed)
        )

        anything = (
            sfn.Choice(self, "Is there anything to review?")
            .when(sfn.Condition.number_greater_than("$.review_selection.review_count", 0),
                  prepare_review.next(run_review).next(apply))
            .otherwise(skipped("Note that nothing needed review", "nothing to review"))
        )
        select.next(anything)
        return (
            sfn.Choice(self, "Is expert review enabled?")
            .when(sfn.Condition.boolean_equals("$.prepared.review_enabled", True), select)
            .otherwise(skipped("Note that review is disabled", "review disabled"))
        )

    def _publish_chain(self, park: Callable[[str, str], sfn.IChainable]) -> tasks.LambdaInvoke:
        payload: dict[str, object] = {
            "batch_id": sfn.JsonPath.string_at("$.batch_id"),
            "labeling": sfn.JsonPath.object_at("$.labeling"),
            "review": sfn.JsonPath.object_at("$.review"),
        }
        if self.functions.train is not None:
            payload["training"] = sfn.JsonPath.object_at("$.training")
        publish = self._invoke("Publish the dataset version", self.functions.publish,
                               sfn.TaskInput.from_object(payload), "$.published", after_job=True)
        publish.add_catch(park("publish", "Park after publishing failed"), errors=["States.ALL"],
                          result_path="$.error")
        done = sfn.Succeed(self, "The dataset is published")
        notify = tasks.SnsPublish(
            self, "Tell the team the dataset is published", topic=self.topic,
            subject=sfn.JsonPath.string_at("$.published.subject"),
            message=sfn.TaskInput.from_json_path_at("$.published.message"), result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(errors=["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KMSThrottlingException"],
                         interval=Duration.seconds(5), backoff_rate=2, max_attempts=5)
        # The dataset is out; a lost notification must not turn a published batch into a failed one.
        notify.add_catch(done, errors=["States.ALL"], result_path="$.notify_error")
        publish.next(notify).next(done)
        return publish

    def _park_chain(self) -> Callable[[str, str], sfn.IChainable]:
        """Park the batch for an operator; returns a maker of the per-step entry (a Pass naming the step)."""
        parked = sfn.Fail(self, "The batch is parked", error="BatchParked",
                          cause="The labeling job completed and its labels are kept; see the notification and "
                                "run `fieldlabel resume <batch>` when the cause is fixed")
        park = self._invoke("Park the batch for an operator", self.functions.fail, None, "$.parked")
        self._step_then_notify(park, result="$.parked", error_path="$.park_error", end=parked,
                               notify_name="Tell the team the batch is parked",
                               alarm_name="Tell the team the batch could not be parked",
                               alarm_subject="[{}] batch {} needs an operator: parking failed")

        def at(step: str, name: str) -> sfn.IChainable:
            return sfn.Pass(self, name, result=sfn.Result.from_string(step), result_path="$.park_step").next(park)

        return at

    def _failure_chain(self) -> sfn.IChainable:
        failed = sfn.Fail(self, "The batch failed", error="BatchFailed",
                          cause="The batch's photos went back to the pool (or, had its job completed, it was parked); "
                                "see the notification")
        release = self._invoke("Release the batch's photos", self.functions.fail, None, "$.failed")
        self._step_then_notify(release, result="$.failed", error_path="$.release_error", end=failed,
                               notify_name="Tell the team the batch failed",
                               alarm_name="Tell the team the photos could not be released",
                               alarm_subject="[{}] batch {} FAILED, photos NOT released")
        return release

    def _step_then_notify(self, step: sfn.TaskStateBase, *, result: str, error_path: str, end: sfn.Fail,
                          notify_name: str, alarm_name: str, alarm_subject: str) -> None:
        """``step`` -> the team gets the subject and message it returned under ``result`` -> ``end``.

        If the step itself fails, the team gets everything known instead (so an operator can act by hand), and the
        execution still ends at ``end``; a notification that cannot be sent never hides the ending either.
        """
        notify = tasks.SnsPublish(
            self, notify_name, topic=self.topic,
            subject=sfn.JsonPath.string_at(f"{result}.subject"),
            message=sfn.TaskInput.from_json_path_at(f"{result}.message"), result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(errors=["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KMSThrottlingException"],
                         interval=Duration.seconds(5), backoff_rate=2, max_attempts=5)
        notify.add_catch(end, errors=["States.ALL"], result_path="$.notify_error")
        alarm = tasks.SnsPublish(
            self, alarm_name, topic=self.topic,
            subject=sfn.JsonPath.format(alarm_subject, self._config.project, sfn.JsonPath.string_at("$.batch_id")),
            message=sfn.TaskInput.from_text(sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$"))),
            result_path=sfn.JsonPath.DISCARD,
        )
        alarm.add_catch(end, errors=["States.ALL"], result_path="$.notify_error")
        alarm.next(end)
        step.add_catch(alarm, errors=["States.ALL"], result_path=error_path)
        step.next(notify).next(end)

    # ------------------------------------------------------------------------------------------------------- IAM

    def _state_machine_permissions(self, stack: Stack, storage: StorageRefs, gt_role: GroundTruthExecutionRole,
                                   labeling_job_arn: str) -> None:
        """Exactly what ``createLabelingJob.sync`` needs (docs/decisions.md); CustomState generates no IAM."""
        sm = self.state_machine
        sm.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateLabelingJob", "sagemaker:DescribeLabelingJob", "sagemaker:StopLabelingJob",
                     "sagemaker:AddTags"],
            resources=[labeling_job_arn],
        ))
        # AWS's .sync templates give ListTags on "*" (Step Functions developer guide, SageMaker IAM policies); the
        # resource it is called on is not documented, so we keep AWS's choice. AddTags is scoped to the job, as
        # aws-cdk-lib's own SageMaker .sync tasks do (docs/decisions.md, "Executed IAM").
        sm.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:ListTags"], resources=["*"]))
        sm.add_to_role_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[gt_role.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ))
        sm.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[self._sync_rule_arn(stack)],
        ))
        # The topic is encrypted with the data key; publishing needs the key.
        sm.add_to_role_policy(iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                                  resources=[storage.key.key_arn]))

    @staticmethod
    def _sync_rule_arn(stack: Stack) -> str:
        # The managed rule's name for labeling jobs is not documented (facts §7); the prefix covers it and only the
        # SageMaker rules Step Functions manages.
        return stack.format_arn(service="events", resource="rule",
                                resource_name="StepFunctionsGetEventsForSageMaker*",
                                arn_format=ArnFormat.SLASH_RESOURCE_NAME)

    def _acknowledge(self, stack: Stack, storage: StorageRefs, labeling_job_arn: str) -> None:
        sm_role = self.state_machine.role
        ack_wildcards(sm_role, [labeling_job_arn, self._sync_rule_arn(stack)],
                      "Job names are <project>-<batch id>, made at run time; the .sync integration manages its own "
                      "EventBridge rule whose labeling-job name is undocumented (docs/decisions.md).")
        ack_wildcards(sm_role, ["*"], "X-Ray trace segments and CloudWatch Logs log delivery have no resource ARNs; "
                      "sagemaker:ListTags of the .sync integration is on * as AWS's template gives it.")
        f = self.functions
        invoked = [f.prepare, f.process, f.publish, f.fail, f.select_review, f.apply_review]
        invoked += [f.train] if f.train is not None else []
        invoked += [self.label_studio.submit] if self.label_studio is not None else []
        for fn in invoked:
            ack_wildcards(sm_role, [f"{arn_token(fn)}:*"],
                          "Step Functions may invoke any version of the workflow's own function.")
        bucket = f"arn:{stack.partition}:s3:::{storage.names.artifacts_bucket}"
        index = f"{storage.photos_table.table_arn}/index/*"
        engine_reads = ([f"{bucket}/{MODELS_PREFIX}*", f"arn:{stack.partition}:s3:::{storage.names.intake_bucket}/*"]
                        if f.train is not None else [])
        per_function: dict[lambda_.Function, list[str]] = {
            f.prepare: [index, f"{bucket}/jobs/*", labeling_job_arn, *engine_reads],
            f.process: [index, f"{bucket}/gt-output/*"],
            f.publish: [index, f"{bucket}/datasets/*"],
            f.fail: [index, labeling_job_arn],
            f.select_review: [index, f"{bucket}/jobs/*"],
            f.apply_review: [f"{bucket}/gt-output/*", f"{bucket}/review-answers/*"],
            f.pre_annotation: [],
            f.post_annotation: [f"{bucket}/gt-output/*", f"{bucket}/jobs/*", f"{bucket}/review-answers/*",
                                labeling_job_arn],
        }
        if f.train is not None:
            per_function[f.train] = [index, f"{bucket}/{MODELS_PREFIX}*", f"{bucket}/jobs/*"]
        for fn, wildcards in per_function.items():
            role = fn.role
            assert role is not None
            ack_wildcards(role, wildcards,
                          "Batch photos are read through the by_batch index; each prefix holds one kind of per-batch "
                          "or per-job object whose names are made at run time; job names are <project>-<batch id>.")
