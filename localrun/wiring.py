"""What the harness does not create but the intake path needs, made from the same synthesized templates.

The harness (localrun.harness) creates the buckets, registry tables, functions, topics and state machine. Intake
adds: the intake queue and its dead-letter queue (names, redrive policy and visibility timeout from the Storage
template), the bucket notification S3 -> SQS (from the ``Custom::S3BucketNotifications`` resource, the
configuration CDK's custom resource would apply in AWS), and the event source mapping and schedule the event pump
imitates (batch size and rate from the Pipeline template).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from localrun.harness import REGION, WorkflowHarness

STACK_KEYS = ("storage", "workforce", "pipeline")


class TemplatesMissing(RuntimeError):
    """cdk.out does not hold the synthesized stacks (run ``make synth``)."""


def load_templates(cdk_out: Path) -> dict[str, dict[str, Any]]:
    """The synthesized templates of ``cdk_out`` as ``{"storage"|"workforce"|"pipeline"|...: template}``.

    Stacks are found through ``manifest.json`` and keyed by the suffix of their name (``<project>-Storage``); the
    three the pipeline runs on must be there, others (``monitoring``) come along.
    """
    manifest_path = cdk_out / "manifest.json"
    if not manifest_path.is_file():
        raise TemplatesMissing(f"{manifest_path} not found: run `make synth` first")
    manifest = json.loads(manifest_path.read_text())
    found: dict[str, dict[str, Any]] = {}
    for art_id, art in manifest.get("artifacts", {}).items():
        if art.get("type") != "aws:cloudformation:stack":
            continue
        key = art_id.rsplit("-", 1)[-1].lower()
        if key:
            template_file = art.get("properties", {}).get("templateFile", f"{art_id}.template.json")
            found[key] = json.loads((cdk_out / template_file).read_text())
    missing = [k for k in STACK_KEYS if k not in found]
    if missing:
        raise TemplatesMissing(f"{cdk_out} lacks the {', '.join(missing)} stack(s): run `make synth`")
    return found


@dataclass
class IntakeWiring:
    """Names the event pump and the uploads need."""

    queue_url: str
    dead_letter_url: str | None
    register_function: str
    dispatch_function: str
    batch_size: int
    schedule: str | None


def _function_by_handler(h: WorkflowHarness, handler_dir: str) -> str:
    for name, fn in h.functions.items():
        if fn["handler"].split(".")[0] == handler_dir:
            return name
    raise TemplatesMissing(f"the Pipeline template has no function with handler {handler_dir}.handler "
                           "(is the intake wired into the pipeline stack?)")


def create_intake(h: WorkflowHarness) -> IntakeWiring:
    """Create the intake queues and the bucket notification in moto, as the templates define them."""
    r = h.resolver
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    urls: dict[str, str] = {}  # logical id -> url
    arns: dict[str, str] = {}
    ordered = sorted(r.resources("AWS::SQS::Queue", "storage"), key=lambda x: "RedrivePolicy" in x[2]["Properties"])
    for stack, lid, res in ordered:  # dead-letter queues first, so a redrive policy finds its target
        props = res.get("Properties", {})
        attrs = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if "RedrivePolicy" in props:
            redrive = props["RedrivePolicy"]
            target = arns[_getatt_id(redrive["deadLetterTargetArn"])]
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": target,
                                                 "maxReceiveCount": redrive["maxReceiveCount"]})
        name = str(r.value(stack, props.get("QueueName", lid)))
        urls[lid] = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arns[lid] = sqs.get_queue_attributes(QueueUrl=urls[lid], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    (stack, _lid, res), = r.resources("Custom::S3BucketNotifications", "storage")
    raw = res["Properties"]["NotificationConfiguration"]
    queue_configs = []
    for qc in raw.get("QueueConfigurations", []):
        queue_configs.append({**qc, "QueueArn": arns[_getatt_id(qc["QueueArn"])]})
    if not queue_configs:
        raise TemplatesMissing("the intake bucket's notification has no queue configuration")
    s3.put_bucket_notification_configuration(Bucket=str(r.value(stack, res["Properties"]["BucketName"])),
                                             NotificationConfiguration={"QueueConfigurations": queue_configs})
    notified = _getatt_id(raw["QueueConfigurations"][0]["QueueArn"])
    dlq = next((u for lid, u in urls.items() if lid != notified), None)

    batch_size = 10
    for _s, _lid, esm in r.resources("AWS::Lambda::EventSourceMapping", "pipeline"):
        batch_size = int(esm["Properties"].get("BatchSize", batch_size))
    schedule = None
    for _s, _lid, sch in r.resources("AWS::Scheduler::Schedule", "pipeline"):
        schedule = str(sch["Properties"].get("ScheduleExpression"))
    return IntakeWiring(
        queue_url=urls[notified], dead_letter_url=dlq,
        register_function=_function_by_handler(h, "register"),
        dispatch_function=_function_by_handler(h, "dispatch"),
        batch_size=batch_size, schedule=schedule,
    )


def _getatt_id(node: Any) -> str:
    """The logical id of ``{"Fn::GetAtt": [id, "Arn"]}``."""
    return str(node["Fn::GetAtt"][0])


def schedule_seconds(expression: str | None) -> int | None:
    """``rate(5 minutes)`` -> 300; None for anything else."""
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression or "")
    if not m:
        return None
    return int(m.group(1)) * (60 if m.group(2).startswith("minute") else 3600)
