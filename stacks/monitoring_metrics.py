"""The application metrics the handlers emit, as CloudWatch metric objects for the dashboard and the alarms.

Handlers emit Powertools EMF metrics in namespace ``FieldLabel`` with one dimension, ``service``, which the
LambdaKit sets to ``<project>-<handler dir with - for _>`` (``stacks/lambda_code.py``). Names and meanings are listed
in docs/operations.md ("Metrics"); tests/unit/ops/test_metrics_*.py check each handler emits what is used here.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_

from stacks.config import AppConfig

NAMESPACE = "FieldLabel"
HANDLER_SUFFIX = ".handler.lambda_handler"


def service_name(config: AppConfig, handler_dir: str) -> str:
    """The ``service`` dimension of a handler's metrics: the same formula as LambdaKit's POWERTOOLS_SERVICE_NAME."""
    return f"{config.project}-{handler_dir.replace('_', '-')}"


def handler_dir_of(fn: lambda_.Function) -> str | None:
    """``register`` for a function whose handler is ``register.handler.lambda_handler``; None for other functions."""
    handler = getattr(fn.node.default_child, "handler", None)
    if isinstance(handler, str) and handler.endswith(HANDLER_SUFFIX):
        return handler.removesuffix(HANDLER_SUFFIX)
    return None


class AppMetrics:
    """Factory of this deployment's ``FieldLabel`` metrics, each bound to the service that emits it."""

    def __init__(self, config: AppConfig) -> None:
        self._config = config

    def metric(
        self,
        handler_dir: str,
        name: str,
        *,
        statistic: str = "Sum",
        period: Duration | None = None,
        label: str | None = None,
    ) -> cw.Metric:
        """Metric ``name`` emitted by ``lambdas/<handler_dir>``."""
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={"service": service_name(self._config, handler_dir)},
            statistic=statistic,
            period=period or Duration.minutes(5),
            label=label or name,
        )

    # --- intake (register, dispatch) -------------------------------------------------------------------------------

    def registered(self, period: Duration | None = None) -> cw.Metric:
        return self.metric("register", "PhotosRegistered", period=period, label="registered")

    def quarantined(self, period: Duration | None = None) -> cw.Metric:
        return self.metric("register", "PhotosQuarantined", period=period, label="quarantined")

    def duplicates(self) -> cw.Metric:
        return self.metric("register", "DuplicatesSkipped", label="duplicates skipped")

    def pending(self) -> cw.Metric:
        return self.metric("dispatch", "PendingPhotos", statistic="Maximum", label="pending photos")

    def oldest_pending_age(self, period: Duration | None = None) -> cw.Metric:
        return self.metric("dispatch", "OldestPendingAgeSeconds", statistic="Maximum", period=period,
                           label="oldest pending photo (s)")

    def batches_claimed(self) -> cw.Metric:
        return self.metric("dispatch", "BatchesClaimed", label="batches claimed")

    # --- workflow and review ------------------------------------------------------------------------------------

    def labeled_by(self, who: str, *, statistic: str = "Sum", period: Duration | None = None) -> cw.Metric:
        """``who`` is ``Humans`` or ``Machine`` (process_output emits one datapoint per batch)."""
        return self.metric("process_output", f"PhotosLabeledBy{who}", statistic=statistic, period=period,
                           label=f"labeled by {who.lower()}")

    def not_labeled(self, period: Duration | None = None) -> cw.Metric:
        return self.metric("process_output", "PhotosNotLabeled", period=period, label="not labeled")

    def batches_failed(self) -> cw.Metric:
        return self.metric("fail_batch", "BatchesFailed", label="batches failed")

    def photos_sent(self) -> cw.Metric:
        return self.metric("prepare_job", "PhotosSentToLabeling", label="photos sent to labeling")

    def photos_published(self) -> cw.Metric:
        return self.metric("publish_dataset", "DatasetPhotosPublished", label="photos published")

    def machine_accuracy(self, period: Duration | None = None) -> cw.Metric:
        return self.metric("apply_review", "MachineLabelAccuracy", statistic="Average", period=period,
                           label="machine-label accuracy (%)")

    def audit_contradicts_bound(self, period: Duration | None = None) -> cw.Metric:
        """1 for a batch whose audit's lower bound on the machine-label error exceeds alpha (own engine only)."""
        return self.metric("publish_dataset", "MachineLabelAuditContradictsBound", statistic="Maximum",
                           period=period, label="audit contradicts the certified bound")

    def review_corrections(self) -> cw.Metric:
        return self.metric("apply_review", "ReviewCorrections", label="corrections by experts")
