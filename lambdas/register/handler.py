"""Register Lambda: SQS batch of S3 object-created notifications -> photo registry (partial batch failures)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from fieldlabel.common.clock import utc_now
from fieldlabel.common.observability import NAMESPACE, logger, metrics, tracer
from fieldlabel.embedding import load_embedder
from fieldlabel.intake.register import RegisterReport, SqsMessage, register_messages
from fieldlabel.intake.settings import RegisterSettings

processor = BatchProcessor(event_type=EventType.SQS)


@cache
def settings() -> RegisterSettings:
    """Environment, parsed once per container."""
    return RegisterSettings.from_env()


@cache
def clients() -> dict[str, Any]:
    """boto3 clients, created lazily on first use (not at import, so tests can set up moto first)."""
    return {"s3": boto3.client("s3"), "ddb": boto3.client("dynamodb"), "lambda": boto3.client("lambda")}


def emit_metrics(report: RegisterReport) -> None:
    """The intake metrics the operations alarms use (docs/intake.md, "Metrics")."""
    metrics.add_metric(name="PhotosRegistered", unit=MetricUnit.Count, value=report.registered)
    metrics.add_metric(name="PhotosQuarantined", unit=MetricUnit.Count, value=sum(report.quarantined.values()))
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="LabelingCopiesMade", unit=MetricUnit.Count, value=report.copies_made)
    metrics.add_metric(name="PhotosEmbedded", unit=MetricUnit.Count, value=report.embedded)
    metrics.add_metric(name="EmbeddingFailures", unit=MetricUnit.Count, value=report.embedding_failures)
    for reason, count in sorted(report.quarantined.items()):
        with single_metric(name="PhotosQuarantined", unit=MetricUnit.Count, value=count, namespace=NAMESPACE) as m:
            m.add_dimension(name="reason", value=reason)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Register the batch's objects, then report the messages that failed so SQS redelivers only those."""
    cfg = settings()
    c = clients()
    records = event.get("Records", [])
    report = register_messages(
        [SqsMessage(r["messageId"], r.get("body", "")) for r in records],
        s3=c["s3"], ddb=c["ddb"], lambda_client=c["lambda"], settings=cfg, now=utc_now(),
        embedder=load_embedder,  # loaded (ONNX sessions, ~0.3 s) on the first photo that needs it, once per container
    )
    emit_metrics(report)
    if report.failures:
        logger.warning("messages failed", extra={"failures": report.failures})
    if report.counter_error:
        logger.warning("pending counter not updated", extra={"error": report.counter_error})
    logger.info("batch registered", extra={
        "registered": report.registered, "duplicates": report.duplicates, "quarantined": dict(report.quarantined),
        "copies": report.copies_made, "embedded": report.embedded, "embedding_failures": report.embedding_failures,
        "sidecars": report.sidecars, "dispatch_invoked": report.dispatch_invoked,
    })

    def record_handler(record: SQSRecord) -> None:
        failure = report.failures.get(record.message_id)
        if failure:
            raise RuntimeError(failure)

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
