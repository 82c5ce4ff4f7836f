"""Operations: the dashboard, the alarms and the operations topic they publish to, and an optional cost budget.

The standard AWS service views and alarms (every Lambda function, the intake queue and its DLQ, the state machine)
come from cdk-monitoring-constructs; the alarms on the application's own metrics (quarantine rate, oldest pending
photo) and the failed-labeling-job rule are written here. docs/operations.md explains each alarm and what to do;
docs/decisions.md ("Monitoring: library or hand-written") why the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import cdk_monitoring_constructs as mc
import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_events as events_refs
from constructs import Construct

from stacks.config import AppConfig
from stacks.kms_policy import account_key_policy
from stacks.label_studio_stack import LabelStudioStack
from stacks.monitoring_metrics import AppMetrics, handler_dir_of
from stacks.nag import ack
from stacks.pipeline_stack import PipelineStack
from stacks.storage_stack import StorageNames

LABELING_JOB_EVENT = "SageMaker Ground Truth Labeling Job State Change"
# A handful of photos an hour is too few to call a rate: one corrupt upload in three would page someone.
QUARANTINE_RATE_MIN_PHOTOS = 10
QUARANTINE_RATE_PERIOD = Duration.hours(1)
# The dispatcher reports the pool as a run leaves it, so a photo shows past the maximum wait only when a run did not
# claim it (small-batch policy 'wait', a lost race, a run out of time). Two dispatch intervals of slack let the next
# run catch up before anyone is paged; a run that fails outright raises its function's errors alarm instead.
OLDEST_PENDING_SLACK_INTERVALS = 2
# Label Studio: server errors (both load balancers, generated or passed on) per 5 minutes before someone is paged; a
# single 5xx is usually one interrupted request.
LABEL_STUDIO_5XX_PER_5_MINUTES = 5
LABEL_STUDIO_MAX_USAGE_PERCENT = 90
# The database alarms well before it fills: 2 GiB left of at least 20.
LABEL_STUDIO_DB_MIN_FREE_BYTES = 2 * 1024**3

# Services that publish to the operations topic. Each needs the topic policy and, the topic being encrypted,
# kms:GenerateDataKey and kms:Decrypt on its key.
_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com")


@jsii.implements(events.IRuleTarget)
class _TopicTarget:
    """An SNS topic as a rule target, without the grants ``targets.SnsTopic`` adds.

    ``targets.SnsTopic`` gives EventBridge ``kms:GenerateDataKey*`` on an encrypted topic's key (a wildcard action,
    which this project allows nowhere) and an unconditioned topic statement; the key and topic policies here grant
    exactly what is needed instead.
    """

    def __init__(self, topic: sns.ITopic, message: events.RuleTargetInput) -> None:
        self._topic = topic
        self._message = message

    def bind(self, rule: events_refs.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:  # noqa: A002 - jsii name
        del rule, id
        return events.RuleTargetConfig(arn=self._topic.topic_arn, input=self._message)


@dataclass(frozen=True)
class MonitoredFunction:
    """A pipeline function and the handler folder it runs (``lambdas/<handler_dir>``)."""

    handler_dir: str
    function: lambda_.Function


def pipeline_functions(pipeline: Stack) -> list[MonitoredFunction]:
    """Every function of the pipeline stack made from a ``lambdas/<dir>/handler.py``, in a stable order.

    Found by walking the stack rather than listed, so a function added later is monitored without touching this file.
    """
    found = [
        MonitoredFunction(d, c)
        for c in pipeline.node.find_all()
        if isinstance(c, lambda_.Function) and (d := handler_dir_of(c)) is not None
    ]
    return sorted(found, key=lambda f: (f.handler_dir, f.function.node.path))


def oldest_pending_threshold_seconds(config: AppConfig) -> int:
    """Alarm threshold of the oldest pending photo's age: the configured maximum wait plus the dispatcher's slack."""
    b = config.batching
    return int(b.max_wait_hours * 3600) + OLDEST_PENDING_SLACK_INTERVALS * b.dispatch_every_minutes * 60


class MonitoringStack(Stack):
    """Operations topic (+ its key), dashboard, alarms, the failed-labeling-job rule and the optional budget.

    Exposes ``topic``, ``key``, ``facade`` (cdk-monitoring-constructs), ``alarms`` (hand-written alarms by purpose),
    ``labeling_job_rule``, ``functions`` and ``budget`` (None unless ``monitoring.monthly_budget_usd`` is set).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        pipeline: PipelineStack,
        label_studio: LabelStudioStack | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
        self._config = config
        self.metrics = AppMetrics(config)
        self.key, self.topic = self._topic()
        self.labeling_job_rule = self._labeling_job_rule()

        self.facade = mc.MonitoringFacade(
            self,
            "Monitoring",
            alarm_factory_defaults=mc.AlarmFactoryDefaults(
                alarm_name_prefix=config.project,
                actions_enabled=True,
                action=mc.SnsAlarmActionStrategy(on_alarm_topic=self.topic),
                # One bad period is enough: every alarm here means something is already broken.
                datapoints_to_alarm=1,
                evaluation_periods=1,
            ),
            dashboard_factory=mc.DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=f"{config.project}-operations",
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        self.alarms: dict[str, cw.Alarm] = {}
        self.functions = pipeline_functions(pipeline)

        self.facade.add_large_header(f"{config.project}: field photos to labeled datasets")
        self._intake_section()
        self._queues_section(StorageNames.for_config(config))
        self._async_failures_section(pipeline)
        self._batches_section(pipeline)
        self._labels_section()
        self._functions_section()
        if label_studio is not None:
            self._label_studio_section(label_studio)
        self.budget = self._budget() if config.monitoring.monthly_budget_usd else None

    # ------------------------------------------------------------------------------------------------ topic

    def _topic(self) -> tuple[kms.Key, sns.Topic]:
        config = self._config
        key = kms.Key(
            self,
            "OperationsKey",
            alias=f"alias/{config.project}-operations",
            description=f"{config.project}: operations topic (alarms, failed labeling jobs, budget)",
            enable_key_rotation=True,
            policy=account_key_policy(),
            # Retained where data is (retention.removal_policy): a notification still queued for delivery, or one
            # an operator is investigating, cannot be decrypted once its key is gone.
            removal_policy=RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LetAlarmServicesPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal(p) for p in _PUBLISHERS],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
            )
        )
        topic = sns.Topic(
            self,
            "Operations",
            topic_name=f"{config.project}-operations",
            display_name=f"{config.project} operations",
            master_key=key,
            enforce_ssl=True,
        )
        for email in config.monitoring.alarm_emails:
            subscription = topic.add_subscription(subs.EmailSubscription(email))
            ack(subscription, "Serverless-SNSRedrivePolicy",
                "An alarm e-mail that bounces needs no replay: the alarm stays in ALARM on the dashboard.")
        account = self.account
        # A topic policy replaces SNS's default one, so the services that publish are allowed explicitly, each only
        # on behalf of this account.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{self.partition}:cloudwatch:{self.region}:{account}:alarm:*"},
                },
            )
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetNotifications",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{self.partition}:budgets::{account}:*"},
                },
            )
        )
        return key, topic

    def _labeling_job_rule(self) -> events.Rule:
        """Failed or stopped labeling jobs of this project straight to the topic: no metric, no delay."""
        config = self._config
        job_arn_prefix = f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:labeling-job/{config.project}-"
        rule = events.Rule(
            self,
            "LabelingJobFailedOrStopped",
            description=f"{config.project}: a Ground Truth labeling job failed or was stopped",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[LABELING_JOB_EVENT],
                detail={"LabelingJobStatus": ["Failed", "Stopped"]},
                resources=events.Match.prefix(job_arn_prefix),
            ),
        )
        job = events.EventField.from_path("$.resources[0]")
        status = events.EventField.from_path("$.detail.LabelingJobStatus")
        ack(rule, "Serverless-EventBusDLQ",
            "An immediate heads-up only: the workflow itself catches the failed job, releases the batch and sends "
            "the batch summary, and the failed-execution alarm fires.")
        rule.add_target(
            _TopicTarget(
                self.topic,
                events.RuleTargetInput.from_text(
                    f"[{config.project}] Labeling job {job} is {status}. The workflow releases the batch's photos "
                    "and publishes a batch summary; see docs/operations.md, 'Labeling job failed or stopped'."
                ),
            )
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LabelingJobEvents",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.rule_arn}},
            )
        )
        return rule

    # ------------------------------------------------------------------------------------------------ sections

    def _alarm(self, purpose: str, alarm: cw.Alarm) -> cw.Alarm:
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[purpose] = alarm
        return alarm

    def _intake_section(self) -> None:
        config, m = self._config, self.metrics
        hour = QUARANTINE_RATE_PERIOD
        rate = cw.MathExpression(
            expression=f"IF((r + q) >= {QUARANTINE_RATE_MIN_PHOTOS}, q / (r + q), 0)",
            using_metrics={"r": m.registered(hour), "q": m.quarantined(hour)},
            period=hour,
            label="quarantine rate",
        )
        quarantine_alarm = self._alarm(
            "quarantine_rate",
            rate.create_alarm(
                self,
                "QuarantineRate",
                alarm_name=f"{config.project}-quarantine-rate",
                alarm_description=(
                    f"More than {config.monitoring.quarantine_rate_threshold:.0%} of the photos uploaded in an hour "
                    f"(of at least {QUARANTINE_RATE_MIN_PHOTOS}) were quarantined. Check the per-reason graph and the "
                    "register function's logs; docs/operations.md, 'Quarantine rate'."
                ),
                threshold=config.monitoring.quarantine_rate_threshold,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        )
        threshold = oldest_pending_threshold_seconds(config)
        oldest = m.oldest_pending_age(Duration.minutes(config.batching.dispatch_every_minutes))
        waiting_alarm = self._alarm(
            "oldest_pending",
            oldest.create_alarm(
                self,
                "OldestPendingPhoto",
                alarm_name=f"{config.project}-batch-waiting-too-long",
                alarm_description=(
                    f"A pending photo has waited more than {config.batching.max_wait_hours:g} h (the configured "
                    "maximum) plus two dispatch intervals without being sent to labeling. Check the dispatch "
                    "function; docs/operations.md, 'Batch waiting too long'."
                ),
                threshold=threshold,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        )
        per_reason = cw.MathExpression(
            expression=(
                f"SEARCH('{{FieldLabel,reason,service}} MetricName=\"PhotosQuarantined\" "
                f"service=\"{config.project}-register\"', 'Sum', 3600)"
            ),
            using_metrics={},
            label="",
            period=hour,
        )
        self.facade.monitor_custom(
            alarm_friendly_name="Intake",
            human_readable_name="Intake: photos registered, quarantined and waiting",
            metric_groups=[
                mc.CustomMetricGroup(
                    title="Photos registered and quarantined",
                    metrics=[m.registered(), m.quarantined(), m.duplicates()],
                ),
                mc.CustomMetricGroup(title="Quarantined photos by reason", metrics=[per_reason]),
                mc.CustomMetricGroup(title="Pending photos", metrics=[m.pending()]),
                mc.CustomMetricGroup(
                    title="Oldest pending photo age",
                    metrics=[oldest],
                    horizontal_annotations=[cw.HorizontalAnnotation(value=threshold, label="alarm")],
                ),
            ],
        )
        self.facade.add_widget(cw.AlarmWidget(title="Quarantine rate (alarm)", alarm=quarantine_alarm, width=12))
        self.facade.add_widget(cw.AlarmWidget(title="Batch waiting too long (alarm)", alarm=waiting_alarm, width=12))

    def _queues_section(self, names: StorageNames) -> None:
        # By name, not by reference: the storage stack's queues have fixed names, and a reference would be an export.
        def queue(id_: str, name: str) -> sqs.IQueue:
            arn = f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name}"
            return sqs.Queue.from_queue_attributes(self, id_, queue_arn=arn, queue_name=name)

        self.facade.monitor_sqs_queue_with_dlq(
            queue=queue("IntakeQueue", names.intake_queue),
            dead_letter_queue=queue("IntakeDeadLetters", names.intake_dlq),
            human_readable_name="Intake queue (upload events) and its dead-letter queue",
            alarm_friendly_name="IntakeQueue",
            add_dead_letter_queue_max_size_alarm={
                "DeadLetters": mc.MaxMessageCountThreshold(
                    max_message_count=0,
                    alarm_description_override=(
                        "Upload events failed registration 5 times and sit in the dead-letter queue. Read the "
                        "register function's errors, fix, then redrive; docs/operations.md, 'Dead-letter messages'."
                    ),
                )
            },
        )

    def _async_failures_section(self, pipeline: PipelineStack) -> None:
        queue = getattr(pipeline, "async_failures", None)
        if queue is None:
            return
        self.facade.monitor_sqs_queue(
            queue=queue,
            human_readable_name="Failed asynchronous invocations (dispatcher, fail-batch) and undelivered events",
            alarm_friendly_name="AsyncFailures",
            add_queue_max_size_alarm={
                "Failed": mc.MaxMessageCountThreshold(
                    max_message_count=0,
                    alarm_description_override=(
                        "An asynchronous invocation failed for good: the dispatcher (schedule or register) or the "
                        "stopped-execution release. Read the message's request context and the function's errors; "
                        "docs/operations.md, 'Failed asynchronous invocations'."
                    ),
                )
            },
        )

    def _batches_section(self, pipeline: PipelineStack) -> None:
        m = self.metrics
        workflow = getattr(pipeline, "workflow", None)
        if workflow is not None:
            self.facade.monitor_step_function(
                state_machine=workflow.state_machine,
                human_readable_name="Labeling batches: executions and their duration (labeling job + review)",
                alarm_friendly_name="LabelingWorkflow",
                add_failed_execution_count_alarm={
                    "Failed": mc.ErrorCountThreshold(
                        max_error_count=0,
                        alarm_description_override=(
                            "A labeling batch failed; its photos went back to the pending pool. Read the batch "
                            "summary and the execution history; docs/operations.md, 'Batch failed'."
                        ),
                    )
                },
                add_timed_out_execution_count_alarm={
                    "TimedOut": mc.ErrorCountThreshold(
                        max_error_count=0,
                        alarm_description_override=(
                            "A labeling batch's execution timed out without releasing its photos. Release the batch "
                            "by hand; docs/operations.md, 'Batch timed out'."
                        ),
                    )
                },
            )
        self.facade.monitor_custom(
            alarm_friendly_name="Batches",
            human_readable_name="Batches: claimed, sent, failed, published",
            metric_groups=[
                mc.CustomMetricGroup(title="Batches claimed and failed", metrics=[m.batches_claimed(),
                                                                                  m.batches_failed()]),
                mc.CustomMetricGroup(title="Photos sent to labeling and published",
                                     metrics=[m.photos_sent(), m.photos_published()]),
            ],
        )

    def _labels_section(self) -> None:
        m = self.metrics
        day = Duration.days(1)
        if self._config.labeling.engine == "model":
            contradicted = self._alarm(
                "audit_contradicts_bound",
                m.audit_contradicts_bound(Duration.hours(1)).create_alarm(
                    self,
                    "AuditContradictsBound",
                    alarm_name=f"{self._config.project}-audit-contradicts-engine-bound",
                    alarm_description=(
                        "The expert audit of a batch's machine labels measured an error whose lower 95 % bound is "
                        f"above the engine's target alpha ({self._config.engine.alpha:g}): the certified bound did "
                        "not hold. Read the batch's statistics (engine, review); docs/operations.md, "
                        "'Audit contradicts the engine's bound'."
                    ),
                    threshold=1,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                ),
            )
            self.facade.add_widget(cw.AlarmWidget(title="Audit contradicts the engine's bound (alarm)",
                                                  alarm=contradicted, width=12))
        self.facade.monitor_custom(
            alarm_friendly_name="Labels",
            human_readable_name="Labels: human vs machine, measured machine-label accuracy",
            metric_groups=[
                # process_output emits one datapoint per batch, so the hourly maximum is the batch's figure.
                mc.CustomMetricGroup(
                    title="Labels per batch (human vs machine)",
                    metrics=[m.labeled_by("Humans", statistic="Maximum", period=Duration.hours(1)),
                             m.labeled_by("Machine", statistic="Maximum", period=Duration.hours(1)),
                             m.not_labeled(Duration.hours(1))],
                ),
                mc.CustomMetricGroup(
                    title="Labels per day (human vs machine)",
                    metrics=[m.labeled_by("Humans", period=day), m.labeled_by("Machine", period=day)],
                ),
                mc.CustomMetricGroup(
                    title="Machine-label accuracy from expert audits",
                    metrics=[m.machine_accuracy(day)],
                ),
                mc.CustomMetricGroup(title="Expert corrections", metrics=[m.review_corrections()]),
            ],
        )

    def _functions_section(self) -> None:
        self.facade.add_large_header("Lambda functions: errors, throttles, durations")
        for f in self.functions:
            self.facade.monitor_lambda_function(
                lambda_function=f.function,
                human_readable_name=f"Function {f.handler_dir}",
                alarm_friendly_name=f"fn-{f.handler_dir}",
                add_fault_count_alarm={
                    "Errors": mc.ErrorCountThreshold(
                        max_error_count=0,
                        alarm_description_override=(
                            f"The {f.handler_dir} function reported errors. Read its log group's errors; "
                            "docs/operations.md, 'Lambda errors'."
                        ),
                    )
                },
            )

    def _label_studio_section(self, ls: LabelStudioStack) -> None:
        """The Label Studio server: its service behind the taxonomists' load balancer, server errors on both load
        balancers, the database."""
        project = self._config.project
        lbs = ls.load_balancers
        self.facade.add_large_header("Label Studio: service, load balancers, database")
        self.facade.monitor_fargate_application_load_balancer(
            fargate_service=ls.server.service,
            application_load_balancer=lbs.public,
            application_target_group=lbs.public_targets,
            human_readable_name="Label Studio service (taxonomists' load balancer)",
            alarm_friendly_name="LabelStudio",
            add_unhealthy_task_count_alarm={
                "Unhealthy": mc.UnhealthyTaskCountThreshold(
                    max_unhealthy_tasks=0,
                    alarm_description_override=(
                        "A Label Studio task fails the load balancer's health check (/health). Read the service's "
                        "events and the container log; docs/operations.md, 'Label Studio unhealthy'."
                    ),
                )
            },
            add_cpu_usage_alarm={
                "Cpu": mc.UsageThreshold(
                    max_usage_percent=LABEL_STUDIO_MAX_USAGE_PERCENT,
                    alarm_description_override=(
                        f"Label Studio's tasks use more than {LABEL_STUDIO_MAX_USAGE_PERCENT} % CPU. Raise "
                        "label_studio.cpu or desired_count; docs/operations.md, 'Label Studio CPU or memory'."
                    ),
                )
            },
            add_memory_usage_alarm={
                "Memory": mc.UsageThreshold(
                    max_usage_percent=LABEL_STUDIO_MAX_USAGE_PERCENT,
                    alarm_description_override=(
                        f"Label Studio's tasks use more than {LABEL_STUDIO_MAX_USAGE_PERCENT} % of their memory. "
                        "Raise label_studio.memory_mib; docs/operations.md, 'Label Studio CPU or memory'."
                    ),
                )
            },
        )
        # Server errors on either load balancer: those it generates (no healthy target, timeouts) and those the
        # server answers with. The internal one carries the pipeline's API calls.
        using: dict[str, cw.IMetric] = {}
        for name, lb in (("public", lbs.public), ("internal", lbs.internal)):
            using[f"{name}_elb"] = lb.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT,
                                                            statistic="Sum", period=Duration.minutes(5))
            using[f"{name}_target"] = lb.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
                                                                  statistic="Sum", period=Duration.minutes(5))
        errors = cw.MathExpression(
            expression="FILL(public_elb, 0) + FILL(public_target, 0) + FILL(internal_elb, 0) + "
                       "FILL(internal_target, 0)",
            using_metrics=using, period=Duration.minutes(5), label="Label Studio 5xx (both load balancers)",
        )
        errors_alarm = self._alarm(
            "label_studio_5xx",
            errors.create_alarm(
                self,
                "LabelStudio5xx",
                alarm_name=f"{project}-label-studio-5xx",
                alarm_description=(
                    f"Label Studio answered at least {LABEL_STUDIO_5XX_PER_5_MINUTES} server errors in 5 minutes "
                    "(taxonomists' or the pipeline's load balancer). Read the container log; docs/operations.md, "
                    "'Label Studio server errors'."
                ),
                threshold=LABEL_STUDIO_5XX_PER_5_MINUTES,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        )
        self.facade.add_widget(cw.AlarmWidget(title="Label Studio server errors (alarm)", alarm=errors_alarm,
                                              width=12))
        # The container's log lives in the Label Studio stack (the task definition names it); its errors show here.
        self.facade.add_widget(cw.LogQueryWidget(
            title="Label Studio errors (container log, last 50)",
            log_group_names=[ls.server.log_group.log_group_name],
            query_lines=["fields @timestamp, @message", "filter @message like /ERROR|Traceback|CRITICAL/",
                         "sort @timestamp desc", "limit 50"],
            width=12,
        ))
        self.facade.monitor_rds_instance(
            instance=ls.database.instance,
            human_readable_name="Label Studio database (PostgreSQL)",
            alarm_friendly_name="LabelStudioDb",
            add_cpu_usage_alarm={
                "Cpu": mc.UsageThreshold(
                    max_usage_percent=LABEL_STUDIO_MAX_USAGE_PERCENT,
                    alarm_description_override=(
                        f"The Label Studio database uses more than {LABEL_STUDIO_MAX_USAGE_PERCENT} % CPU. Raise "
                        "label_studio.database.instance_class; docs/operations.md, 'Label Studio database'."
                    ),
                )
            },
            add_free_storage_space_alarm={
                "Storage": mc.MinUsageCountThreshold(
                    min_count=LABEL_STUDIO_DB_MIN_FREE_BYTES,
                    alarm_description_override=(
                        "The Label Studio database has less than 2 GiB of storage left. Raise "
                        "label_studio.database.allocated_storage_gib; docs/operations.md, 'Label Studio database'."
                    ),
                )
            },
        )

    # ------------------------------------------------------------------------------------------------ budget

    def _budget(self) -> budgets.CfnBudget:
        config = self._config
        if not config.tags:
            raise ValueError(
                "monitoring.monthly_budget_usd needs at least one tag in 'tags': the budget is filtered on the "
                "project's cost-allocation tags"
            )
        tag_filters = [
            budgets.CfnBudget.ExpressionProperty(
                tags=budgets.CfnBudget.TagValuesProperty(key=k, values=[v], match_options=["EQUALS"])
            )
            for k, v in sorted(config.tags.items())
        ]
        expression = (
            tag_filters[0] if len(tag_filters) == 1 else budgets.CfnBudget.ExpressionProperty(and_=tag_filters)
        )
        subscriber = budgets.CfnBudget.SubscriberProperty(address=self.topic.topic_arn, subscription_type="SNS")

        def notify(kind: str, percent: int) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind,
                    comparison_operator="GREATER_THAN",
                    threshold=percent,
                    threshold_type="PERCENTAGE",
                ),
                subscribers=[subscriber],
            )

        return budgets.CfnBudget(
            self,
            "MonthlyBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{config.project}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(
                    amount=config.monitoring.monthly_budget_usd, unit="USD"  # type: ignore[arg-type]
                ),
                filter_expression=expression,
            ),
            notifications_with_subscribers=[notify("ACTUAL", 80), notify("FORECASTED", 100)],
        )
