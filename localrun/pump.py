"""The event pump: plays the part of Lambda's SQS event source mapping and of the dispatcher's schedule.

In AWS, Lambda polls the intake queue and invokes the register function with batches of up to
``REGISTER_BATCH_SIZE`` messages (stacks/intake.py), deletes the messages the function did not report as failed
(``ReportBatchItemFailures``), and leaves the failed ones to come back after the visibility timeout; EventBridge
Scheduler invokes the dispatch function every few minutes. moto runs neither poller, so this does, through the Lambda
Invoke API (whose handlers run in-process, see the harness), with the same event shapes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localrun.iamcheck.principals import INTERNAL, Principal, acting_as

# Same numbers as the synthesized event source mapping (stacks/intake.py, REGISTER_BATCH_SIZE).
DEFAULT_BATCH_SIZE = 20
SQS_MAX_RECEIVE = 10


@dataclass
class PumpStats:
    """What the pump did, for the report."""

    messages: int = 0
    # S3's s3:TestEvent, sent once when the bucket notification is configured: delivered like any message (the
    # register function ignores it), but it is not an upload.
    test_events: int = 0
    invocations: int = 0
    failed_messages: int = 0  # reported by the function (partial batch failure) or a whole failed invocation
    dispatch_runs: int = 0
    batches_started: list[str] = field(default_factory=list)


def is_s3_test_event(body: str) -> bool:
    """Whether an intake message is S3's ``s3:TestEvent`` rather than an upload's notification."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return False
    return isinstance(payload, dict) and payload.get("Event") == "s3:TestEvent"


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS poller gives a function for ``messages`` (ReceiveMessage results)."""
    records = []
    for m in messages:
        attrs = m.get("Attributes", {})
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {k: attrs[k] for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                                  "ApproximateFirstReceiveTimestamp") if k in attrs},
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's own
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


class EventPump:
    """Moves intake messages to the register function and runs the dispatcher on a (compressed) schedule."""

    def __init__(
        self,
        *,
        sqs: Any,
        lambda_client: Any,
        queue_url: str,
        register_function: str,
        dispatch_function: str,
        region: str = "us-east-1",
        batch_size: int = DEFAULT_BATCH_SIZE,
        dispatch_every_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        poller: Principal | None = None,
        scheduler: Principal | None = None,
    ) -> None:
        """``poller``: who reads and deletes the queue's messages (the event source mapping uses the register
        function's role); ``scheduler``: who invokes the dispatcher (the schedule's role). For the IAM check."""
        self.sqs = sqs
        self.lambda_client = lambda_client
        self.queue_url = queue_url
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.register_function = register_function
        self.dispatch_function = dispatch_function
        self.region = region
        self.batch_size = batch_size
        self.dispatch_every = dispatch_every_seconds
        self.clock = clock
        self._last_dispatch = clock()
        self.stats = PumpStats()
        self.poller = poller
        self.scheduler = scheduler

    def _receive(self) -> list[dict[str, Any]]:
        with acting_as(self.poller):
            return self._receive_messages()

    def _receive_messages(self) -> list[dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        while len(got) < self.batch_size:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(SQS_MAX_RECEIVE, self.batch_size - len(got)),
                AttributeNames=["All"], WaitTimeSeconds=0,
            )
            fresh = [m for m in resp.get("Messages", []) if m["MessageId"] not in got]
            if not fresh:  # empty, or (with a zero visibility timeout) the same messages again
                break
            got.update((m["MessageId"], m) for m in fresh)
        return list(got.values())

    def pump_once(self) -> int:
        """Deliver one batch to the register function; returns the number of messages taken off the queue."""
        messages = self._receive()
        if not messages:
            return 0
        with acting_as(INTERNAL):  # Lambda's poller invokes the function itself: no IAM check on the invoke
            resp = self.lambda_client.invoke(
                FunctionName=self.register_function, InvocationType="RequestResponse",
                Payload=json.dumps(sqs_event(messages, self.queue_arn, self.region)).encode(),
            )
        self.stats.invocations += 1
        self.stats.messages += len(messages)
        payload = resp["Payload"].read()
        if resp.get("FunctionError"):
            # A failed invocation leaves the whole batch on the queue, as the real poller does.
            self.stats.failed_messages += len(messages)
            return 0
        result = json.loads(payload or b"{}") or {}
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        self.stats.failed_messages += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        self.stats.test_events += sum(1 for m in done if is_s3_test_event(m.get("Body", "")))
        with acting_as(self.poller):
            for i in range(0, len(done), SQS_MAX_RECEIVE):
                chunk = done[i:i + SQS_MAX_RECEIVE]
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)])
        return len(done)

    def drain(self, on_progress: Callable[[int], None] | None = None, *, idle_rounds: int = 2) -> int:
        """Pump until the queue is empty (``idle_rounds`` empty receives in a row); returns messages handled."""
        total, idle = 0, 0
        while idle < idle_rounds:
            n = self.pump_once()
            if n:
                total += n
                idle = 0
                if on_progress:
                    on_progress(total)
            else:
                idle += 1
            self.tick()
        return total

    def tick(self, *, force: bool = False) -> dict[str, Any] | None:
        """Run the dispatcher if its (compressed) schedule is due, as EventBridge Scheduler would."""
        now = self.clock()
        if not force and now - self._last_dispatch < self.dispatch_every:
            return None
        self._last_dispatch = now
        return self.dispatch()

    def dispatch(self) -> dict[str, Any]:
        """One scheduled run of the dispatch function; returns its summary."""
        with acting_as(self.scheduler):
            resp = self.lambda_client.invoke(FunctionName=self.dispatch_function, InvocationType="RequestResponse",
                                             Payload=json.dumps({"trigger": "schedule"}).encode())
        self.stats.dispatch_runs += 1
        payload = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise RuntimeError(f"dispatch failed: {payload[:500]!r}")
        summary = json.loads(payload or b"{}") or {}
        self.stats.batches_started.extend(summary.get("batches") or [])
        return summary
