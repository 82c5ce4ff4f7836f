"""Run the synthesized labeling state machine end to end in moto, with the real handlers and a fake Ground Truth.

Importable without pytest (the offline demo reuses it). What is real and what is simulated:

* real: the state machine definition exactly as ``cdk synth`` writes it (intrinsics resolved to moto names by
  :class:`Resolver`), moto's Step Functions interpreter, every Lambda handler (called in-process with the
  environment the template gives it), S3, DynamoDB, SNS and SQS in moto;
* simulated: Ground Truth. :class:`FakeGroundTruth` answers CreateLabelingJob / DescribeLabelingJob /
  StopLabelingJob (moto has no labeling jobs) and writes a realistic output manifest; and the one thing moto's
  interpreter cannot do, the ``arn:aws:states:::sagemaker:createLabelingJob.sync`` integration: it is patched to
  call CreateLabelingJob, then poll DescribeLabelingJob until the job is terminal (Completed -> the description is
  the state's result; Failed/Stopped -> ``States.TaskFailed`` with the description as cause), which is what the
  real integration does.

Typical use::

    templates = synth_templates()
    with WorkflowHarness(templates) as h:
        h.seed_batch("b20261126t063000z-1a2b3c4d", 1300)
        run = h.run_batch("b20261126t063000z-1a2b3c4d", kind="automated", photo_count=1300)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = ROOT / "lambdas"
for _p in (str(ROOT), str(LAMBDAS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import boto3  # noqa: E402
import botocore.session  # noqa: E402
from botocore.validate import validate_parameters  # noqa: E402

from localrun.iamcheck.principals import Principal, acting_as  # noqa: E402
from localrun.iamcheck.principals import role as role_principal  # noqa: E402

MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
REGION = "us-east-1"
# Asset env vars of the functions -> the rendered file they point at (stacks/labeling_assets.py).
ASSET_ENV = {
    "LABEL_CATEGORIES_URI": "label-categories.json",
    "UI_TEMPLATE_URI": "image-classification.liquid.html",
    "REVIEW_TEMPLATE_URI": "expert-review.liquid.html",
    "TAXONOMY_S3_URI": "taxonomy.json",
}


# ----------------------------------------------------------------------------------------------------- templates


def cdk_context() -> dict[str, Any]:
    """The context of ``cdk.json`` (the CLI injects it; a bare ``cdk.App`` does not)."""
    return dict(json.loads((ROOT / "cdk.json").read_text()).get("context", {}))


def synth_templates(context: dict[str, Any] | None = None, outdir: str | None = None) -> dict[str, dict[str, Any]]:
    """Synthesize the app (bundling skipped) and return ``{"storage"|"workforce"|"pipeline": template}``.

    ``outdir`` keeps the cloud assembly there (default: a temporary folder), e.g. to read it back like ``cdk.out``.
    """
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from app import build

    outdir = outdir or tempfile.mkdtemp(prefix="cdk-e2e-")
    app = cdk.App(outdir=outdir, context={**cdk_context(), "aws:cdk:bundling-stacks": [], **(context or {})})
    stacks = build(app)
    assembly = app.synth()
    return {name: assembly.get_stack_by_name(stack.stack_name).template for name, stack in stacks.items()}


def context_with(labeling_engine: str, env: str = "dev") -> dict[str, Any]:
    """cdk.json's context with ``labeling.engine`` of environment ``env`` set (``groundtruth`` or ``model``)."""
    import copy

    environments = copy.deepcopy(cdk_context()["environments"])
    environments[env].setdefault("labeling", {})["engine"] = labeling_engine
    return {"environments": environments}


def config_from_context(context: dict[str, Any] | None = None) -> Any:
    """The frozen AppConfig of the default environment."""
    from stacks.config import load_config

    return load_config({**cdk_context(), **(context or {})})


class Resolver:
    """Resolves CloudFormation intrinsics of the synthesized templates to the names the harness creates in moto.

    Physical names: explicit ``*Name`` properties when the template has them (buckets, tables), the logical id
    otherwise (functions, topics, roles); ARNs are built from those in the harness account and region.
    """

    _NAME_PROPS = {"AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::GlobalTable": "TableName",
                   "AWS::DynamoDB::Table": "TableName", "AWS::SNS::Topic": "TopicName",
                   "AWS::Lambda::Function": "FunctionName", "AWS::StepFunctions::StateMachine": "StateMachineName"}

    def __init__(self, templates: dict[str, dict[str, Any]], account: str, region: str = REGION) -> None:
        self.templates = templates
        self.account = account
        self.region = region
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, tpl in templates.items():
            for out in tpl.get("Outputs", {}).values():
                if "Export" in out:
                    self.exports[self._plain(stack, out["Export"]["Name"])] = (stack, out["Value"])

    def _plain(self, stack: str, value: Any) -> str:
        return value if isinstance(value, str) else str(self.value(stack, value))

    def resource(self, stack: str, logical_id: str) -> dict[str, Any]:
        return dict(self.templates[stack]["Resources"][logical_id])

    def physical_name(self, stack: str, logical_id: str) -> str:
        res = self.resource(stack, logical_id)
        prop = self._NAME_PROPS.get(res["Type"])
        if prop and isinstance(res.get("Properties", {}).get(prop), str):
            return str(res["Properties"][prop])
        return logical_id

    def arn(self, stack: str, logical_id: str) -> str:
        typ = self.resource(stack, logical_id)["Type"]
        name = self.physical_name(stack, logical_id)
        a, r = self.account, self.region
        by_type = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{r}:{a}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{a}:role/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{r}:{a}:{name}",
            "AWS::SageMaker::Workteam": f"arn:aws:sagemaker:{r}:{a}:workteam/private-crowd/{name.lower()}",
            "AWS::KMS::Key": f"arn:aws:kms:{r}:{a}:key/{uuid.uuid5(uuid.NAMESPACE_URL, name)}",
            "AWS::DynamoDB::GlobalTable": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{r}:{a}:log-group:{name}:*",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{r}:{a}:stateMachine:{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{r}:{a}:secret:{name}-{secret_suffix(name)}",
        }
        if typ not in by_type:
            raise ValueError(f"no ARN rule for {typ} ({stack}/{logical_id})")
        return by_type[typ]

    def value(self, stack: str, node: Any) -> Any:
        """The resolved value of a template node (strings, lists and dicts are resolved recursively)."""
        if isinstance(node, str | int | float | bool) or node is None:
            return node
        if isinstance(node, list):
            return [self.value(stack, n) for n in node]
        if not isinstance(node, dict):
            raise ValueError(node)
        if "Ref" in node:
            ref = node["Ref"]
            pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account,
                      "AWS::URLSuffix": "amazonaws.com"}
            if ref in pseudo:
                return pseudo[ref]
            typ = self.resource(stack, ref)["Type"]
            return self.arn(stack, ref) if typ in ("AWS::SNS::Topic", "AWS::StepFunctions::StateMachine",
                                                   "AWS::SecretsManager::Secret") else \
                self.physical_name(stack, ref)
        if "Fn::GetAtt" in node:
            lid, attr = node["Fn::GetAtt"]
            if attr in ("Arn", "WorkteamArn"):
                return self.arn(stack, lid)
            if attr == "Name" or attr == "TopicName":
                return self.physical_name(stack, lid)
            if attr == "FunctionUrl":
                # A Lambda Function URL; the harness delivers what is posted there to the function itself.
                return f"https://{lid.lower()}.lambda-url.{self.region}.on.aws/"
            raise ValueError(f"unsupported GetAtt {lid}.{attr}")
        if "Fn::ImportValue" in node:
            src_stack, value = self.exports[self._plain(stack, node["Fn::ImportValue"])]
            return self.value(src_stack, value)
        if "Fn::Join" in node:
            sep, parts = node["Fn::Join"]
            return sep.join(str(self.value(stack, p)) for p in parts)
        if "Fn::Select" in node:
            idx, items = node["Fn::Select"]
            return self.value(stack, items)[int(idx)]
        if "Fn::Split" in node:
            sep, text = node["Fn::Split"]
            return str(self.value(stack, text)).split(sep)
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            for k, v in {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account,
                         "AWS::URLSuffix": "amazonaws.com"}.items():
                text = text.replace("${" + k + "}", v)
            return text
        return {k: self.value(stack, v) for k, v in node.items()}

    def resources(self, rtype: str, stack: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """``[(stack, logical id, resource)]`` of one type."""
        return [(s, lid, r) for s, t in self.templates.items() if stack in (None, s)
                for lid, r in t["Resources"].items() if r["Type"] == rtype]


def secret_suffix(name: str) -> str:
    """The six-letter suffix Secrets Manager appends to a secret's name in its ARN; moto's is random, the harness
    makes it a function of the name (:meth:`WorkflowHarness._patch`) so templates and moto agree."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest[:6])


# ------------------------------------------------------------------------------------------------ fake Ground Truth

_SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


@dataclass
class PhotoOutcome:
    """What the fake Ground Truth does with one manifest line."""

    kind: str  # "human" | "machine" | "failed" | "missing"
    label: str | None = None
    confidence: float | None = None
    reason: str | None = None


Plan = Callable[[int, dict[str, Any]], PhotoOutcome]
ReviewPlan = Callable[[int, dict[str, Any]], dict[str, Any] | None]
# Simulated people of a custom job: (job kind "label" | "review", the task input the real pre-annotation Lambda made,
# the manifest line, workers per object) -> [(person, the answer the template would submit)]. The fake gives each
# person a stable Cognito sub and a per-job workerId (FakeGroundTruth.sub_of / job_worker_ids).
Workers = Callable[[str, dict[str, Any], dict[str, Any], int], list[tuple[str, dict[str, Any]]]]


def default_plan(labels: list[str]) -> Plan:
    """Every 3rd photo labeled by humans, every 50th failed, the rest by the model; labels cycle."""

    def plan(i: int, line: dict[str, Any]) -> PhotoOutcome:
        label = labels[i % len(labels)]
        if i % 50 == 49:
            return PhotoOutcome("failed", reason="ClientError: worker task expired")
        if i % 3 == 0:
            return PhotoOutcome("human", label, 0.0 if i % 2 else 0.94)
        return PhotoOutcome("machine", label, round(0.95 + (i % 5) / 100, 2))

    return plan


def confirm_all_but(correct: dict[int, str]) -> ReviewPlan:
    """Review plan: reviewers confirm every label except the given line indexes, which they correct."""

    def plan(i: int, line: dict[str, Any]) -> dict[str, Any]:
        under = (line.get("label-under-review") or {}).get("label")
        label = correct.get(i, under)
        return {"label": label, "confidence": 0.97, "agreement": 1.0, "needs_adjudication": False, "answers": 2,
                "comments": []}

    return plan


@dataclass
class FakeJob:
    request: dict[str, Any]
    arn: str
    status: str = "InProgress"
    describes: int = 0
    output_uri: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    failure_reason: str | None = None
    final_model_arn: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    finishing: bool = False  # the post-annotation Lambda describes the job while it is being finished


class FakeGroundTruth:
    """CreateLabelingJob / DescribeLabelingJob / StopLabelingJob against S3 in moto.

    Every CreateLabelingJob request is validated against botocore's SageMaker model (a request the real service
    would refuse fails the state). ``fail_jobs`` names jobs that end Failed; ``polls_before_done`` how many describes
    see InProgress first.
    """

    def __init__(self, account: str, region: str = REGION) -> None:
        self.account = account
        self.region = region
        self.jobs: dict[str, FakeJob] = {}
        self.plan: Plan | None = None
        self.review_plan: ReviewPlan = confirm_all_but({})
        self.fail_jobs: dict[str, str] = {}
        # Jobs stopped (by an operator, say) after their first N output lines: they end Stopped with those lines
        # in the output location and no LabelingJobOutput, as StopLabelingJob describes.
        self.stop_after: dict[str, int] = {}
        self.polls_before_done = 0
        self.requests: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self._model_seq = 0
        self._lock = threading.Lock()
        # Custom jobs (our pre-/post-annotation Lambdas): with ``workers`` set, each line goes through the REAL
        # pre-annotation Lambda, the simulated people answer its task input, and the REAL post-annotation Lambda
        # consolidates their answers into the output manifest. ``invoke`` (set by the harness) calls a function.
        self.workers: Workers | None = None
        self.invoke: Callable[[str, dict[str, Any]], Any] | None = None
        self.custom_invocations: Counter[str] = Counter()
        # Who answered custom jobs: person -> Cognito sub (stable), and per job person -> workerId (differs per job,
        # since AWS does not promise a workerId stays the same across jobs). Read by tests and the demo report.
        self.subs: dict[str, str] = {}
        self.job_worker_ids: dict[str, dict[str, str]] = {}

    # -- API ---------------------------------------------------------------------------------------------------

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        validate_parameters(request, _SAGEMAKER.operation_model("CreateLabelingJob").input_shape)
        name = request["LabelingJobName"]
        with self._lock:
            if name.lower() in {n.lower() for n in self.jobs}:
                raise _sm_error("ResourceInUse", f"Job name {name} already exists")
            self.requests.append(request)
            job = FakeJob(request, f"arn:aws:sagemaker:{self.region}:{self.account}:labeling-job/{name.lower()}")
            self.jobs[name] = job
        return {"LabelingJobArn": job.arn}

    def describe(self, name: str) -> dict[str, Any]:
        job = self.jobs.get(name)
        if job is None:
            raise _sm_error("ResourceNotFound", f"Could not find labeling job {name}")
        job.describes += 1
        if job.status == "InProgress" and not job.finishing and job.describes > self.polls_before_done:
            job.finishing = True
            try:
                self._finish(job)
            finally:
                job.finishing = False
        req = job.request
        resp: dict[str, Any] = {
            "LabelingJobStatus": job.status,
            "LabelCounters": job.counters or {"TotalLabeled": 0, "HumanLabeled": 0, "MachineLabeled": 0,
                                              "FailedNonRetryableError": 0, "Unlabeled": 0},
            "CreationTime": job.created,
            "LastModifiedTime": datetime.now(UTC),
            "JobReferenceCode": hashlib.sha1(name.encode()).hexdigest()[:20],
            "LabelingJobName": name,
            "LabelingJobArn": job.arn,
            "LabelAttributeName": req["LabelAttributeName"],
            "InputConfig": req["InputConfig"],
            "OutputConfig": req["OutputConfig"],
            "RoleArn": req["RoleArn"],
            "HumanTaskConfig": req["HumanTaskConfig"],
        }
        for opt in ("LabelCategoryConfigS3Uri", "StoppingConditions", "LabelingJobAlgorithmsConfig", "Tags"):
            if opt in req:
                resp[opt] = req[opt]
        if job.failure_reason:
            resp["FailureReason"] = job.failure_reason
        if job.status == "Completed":
            out: dict[str, Any] = {"OutputDatasetS3Uri": job.output_uri}
            if job.final_model_arn:
                out["FinalActiveLearningModelArn"] = job.final_model_arn
            resp["LabelingJobOutput"] = out
        return resp

    def stop(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is None:
            raise _sm_error("ResourceNotFound", f"Could not find labeling job {name}")
        self.stopped.append(name)
        if job.status == "InProgress":
            job.status = "Stopped"

    # -- job simulation ------------------------------------------------------------------------------------------

    def _finish(self, job: FakeJob) -> None:
        # Everything Ground Truth reads and writes for a job, it does as the job's execution role.
        with acting_as(role_principal(job.request["RoleArn"], "Ground Truth execution role")):
            self._finish_as_role(job)

    def _finish_as_role(self, job: FakeJob) -> None:
        name = job.request["LabelingJobName"]
        if name in self.fail_jobs:
            job.status, job.failure_reason = "Failed", self.fail_jobs[name]
            return
        s3 = boto3.client("s3", region_name=self.region)
        manifest = job.request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
        bucket, key = manifest[5:].split("/", 1)
        lines = [json.loads(x) for x in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines() if x]
        self._read_task_inputs(s3, job.request, lines)
        attr = job.request["LabelAttributeName"]
        out_bucket, out_prefix = job.request["OutputConfig"]["S3OutputPath"][5:].split("/", 1)
        out_key = f"{out_prefix.rstrip('/')}/{name}/manifests/output/output.manifest".lstrip("/")
        counters = {"TotalLabeled": 0, "HumanLabeled": 0, "MachineLabeled": 0, "FailedNonRetryableError": 0,
                    "Unlabeled": 0}
        out_lines = []
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        if self._is_custom(job):
            out_lines = self._run_custom(job, lines, counters, created, out_bucket, out_prefix)
        elif attr == "species-review":
            for i, line in enumerate(lines):
                review = self.review_plan(i, line)
                if review is None:
                    continue
                out_lines.append({**line, attr: review, f"{attr}-metadata": {
                    "job_name": f"labeling-job/{name.lower()}", "type": "groundTruth/custom",
                    "human-annotated": "yes", "creation_date": created}})
                counters["TotalLabeled"] += 1
                counters["HumanLabeled"] += 1
        else:
            categories = self._categories(s3, job.request["LabelCategoryConfigS3Uri"])
            plan = self.plan or default_plan(categories)
            automated = "LabelingJobAlgorithmsConfig" in job.request
            for i, line in enumerate(lines):
                outcome = plan(i, line)
                if outcome.kind == "missing":
                    counters["Unlabeled"] += 1
                    continue
                if outcome.kind == "machine" and not automated:
                    outcome = PhotoOutcome("human", outcome.label, outcome.confidence)
                meta: dict[str, Any] = {"type": "groundtruth/image-classification",
                                        "job-name": f"labeling-job/{name.lower()}", "creation-date": created}
                if outcome.kind == "failed":
                    meta["failure-reason"] = outcome.reason or "ClientError: failed"
                    out_lines.append({**line, f"{attr}-metadata": meta})
                    counters["FailedNonRetryableError"] += 1
                    continue
                label = outcome.label or categories[0]
                meta.update({"class-name": label, "confidence": outcome.confidence or 0.0,
                             "human-annotated": "yes" if outcome.kind == "human" else "no"})
                out_lines.append({**line, attr: str(categories.index(label)), f"{attr}-metadata": meta})
                counters["TotalLabeled"] += 1
                counters["HumanLabeled" if outcome.kind == "human" else "MachineLabeled"] += 1
            if automated:
                self._model_seq += 1
                job.final_model_arn = (f"arn:aws:sagemaker:{self.region}:{self.account}:model/"
                                       f"{name.lower()}-al-model-{self._model_seq}")
        status = "Completed"
        if name in self.stop_after:
            out_lines = out_lines[:self.stop_after[name]]
            counters = _counters_of(out_lines, attr, total=len(lines))
            status = "Stopped"
        body = "".join(json.dumps(x, separators=(",", ":")) + "\n" for x in out_lines).encode()
        s3.put_object(Bucket=out_bucket, Key=out_key, Body=body)
        job.output_uri = f"s3://{out_bucket}/{out_key}"
        job.counters = counters
        job.status = status

    def _is_custom(self, job: FakeJob) -> bool:
        """A job whose pre-annotation function is one of ours (not a built-in ARN), run with simulated people."""
        pre = job.request["HumanTaskConfig"]["PreHumanTaskLambdaArn"]
        return self.workers is not None and self.invoke is not None and ":function:" in pre and \
            not pre.split(":function:")[-1].startswith("PRE-")

    def _run_custom(self, job: FakeJob, lines: list[dict[str, Any]], counters: dict[str, int], created: str,
                    out_bucket: str, out_prefix: str) -> list[dict[str, Any]]:
        """What Ground Truth does with a custom task: pre-annotation per object, workers, one consolidation call."""
        assert self.workers is not None and self.invoke is not None
        request = job.request
        name, attr = request["LabelingJobName"], request["LabelAttributeName"]
        htc = request["HumanTaskConfig"]
        pre_arn = htc["PreHumanTaskLambdaArn"]
        post_arn = htc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"]
        kind = "review" if attr.endswith("-review") else "label"
        s3 = boto3.client("s3", region_name=self.region)
        payload, sent = [], {}
        for i, line in enumerate(lines):
            pre = self.invoke(pre_arn, {"version": "2018-10-16", "labelingJobArn": job.arn, "dataObject": line})
            self.custom_invocations["pre_annotation"] += 1
            if not pre.get("isHumanAnnotationRequired", True):
                continue
            people = self.workers(kind, pre["taskInput"], line, int(htc["NumberOfHumanWorkersPerDataObject"]))
            answers = [(self._worker_id(name, person), person, a) for person, a in people]
            self._write_worker_response(s3, out_bucket, out_prefix, name, str(i), answers, created)
            payload.append({"datasetObjectId": str(i), "dataObject": {"s3Uri": line["source-ref"]},
                            "annotations": [{"workerId": w, "annotationData": {"content": json.dumps(a)}}
                                            for w, _, a in answers]})
            sent[str(i)] = line
        consolidated: dict[str, Any] = {}
        if payload:
            key = (f"{out_prefix.rstrip('/')}/{name}/annotations/consolidation-request/iteration-1/"
                   f"{created.replace(':', '-')}.json").lstrip("/")
            s3.put_object(Bucket=out_bucket, Key=key, Body=json.dumps(payload).encode())
            categories = self._categories(s3, request["LabelCategoryConfigS3Uri"])
            response = self.invoke(post_arn, {
                "version": "2018-10-16", "labelingJobArn": job.arn, "labelCategories": categories,
                "labelAttributeName": attr, "roleArn": request["RoleArn"],
                "payload": {"s3Uri": f"s3://{out_bucket}/{key}"}})
            self.custom_invocations["post_annotation"] += 1
            consolidated = {r["datasetObjectId"]: r["consolidatedAnnotation"]["content"] for r in response}
        out_lines = []
        for i, line in enumerate(lines):
            content = consolidated.get(str(i))
            meta = {"job_name": f"labeling-job/{name.lower()}", "type": "groundTruth/custom",
                    "human-annotated": "yes", "creation_date": created}
            if content is None or attr not in content:
                counters["FailedNonRetryableError"] += 1
                out_lines.append({**line, f"{attr}-metadata": {**meta, "failure-reason":
                                  "ClientError: the object was not sent to workers" if str(i) not in sent
                                  else "ClientError: no consolidated annotation"}})
                continue
            out_lines.append({**line, attr: content[attr], f"{attr}-metadata": meta})
            counters["TotalLabeled"] += 1
            counters["HumanLabeled"] += 1
        return out_lines

    def sub_of(self, person: str) -> str:
        """The simulated person's Cognito ``sub``: stable for the person, whatever the job."""
        if person not in self.subs:
            self.subs[person] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fieldlabel-simulated-person/{person}"))
        return self.subs[person]

    def _worker_id(self, job: str, person: str) -> str:
        """A per-job workerId in the private workforce's format; a new job gives the same person another one."""
        digest = hashlib.sha256(f"{job}/{person}".encode()).hexdigest()[:16]
        return self.job_worker_ids.setdefault(job, {}).setdefault(person, f"private.{self.region}.{digest}")

    def _write_worker_response(self, s3: Any, bucket: str, prefix: str, job: str, object_id: str,
                               answers: list[tuple[str, str, dict[str, Any]]], created: str) -> None:
        """Ground Truth's worker-response file of one data object (private workforce: each answer carries the
        worker's Cognito identity), at ``<output>/<job>/annotations/worker-response/iteration-1/<object>/``."""
        key = (f"{prefix.rstrip('/')}/{job}/annotations/worker-response/iteration-1/{object_id}/"
               f"{created.replace(':', '-')}.json").lstrip("/")
        stamp = f"{created[:19]}Z"
        doc = {"answers": [{
            "acceptanceTime": stamp, "submissionTime": stamp, "timeSpentInSeconds": 30.0, "workerId": worker_id,
            "answerContent": answer,
            "workerMetadata": {"identityData": {
                "identityProviderType": "Cognito",
                "issuer": f"https://cognito-idp.{self.region}.amazonaws.com/{self.region}_simulated",
                "sub": self.sub_of(person)}},
        } for worker_id, person, answer in answers]}
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())

    @staticmethod
    def _read_task_inputs(s3: Any, request: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """What Ground Truth reads besides the manifest: the worker UI template, and every photo (workers' browsers
        load them through URLs Ground Truth signs with the execution role; automated labeling trains on them)."""
        ui = request["HumanTaskConfig"].get("UiConfig", {}).get("UiTemplateS3Uri")
        if ui:
            bucket, key = ui[5:].split("/", 1)
            s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        from localrun.iamcheck import recorder

        if not recorder.active():
            return
        from localrun.iamcheck.principals import current

        for line in lines:
            ref = line.get("source-ref")
            if isinstance(ref, str) and ref.startswith("s3://"):
                bucket, key = ref[5:].split("/", 1)
                recorder.record_call(recorder.Call(current(), "s3", "s3", "GetObject", {"Bucket": bucket, "Key": key},
                                                   status=200))

    @staticmethod
    def _categories(s3: Any, uri: str) -> list[str]:
        bucket, key = uri[5:].split("/", 1)
        doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return [x["label"] for x in doc["labels"]]


def _counters_of(out_lines: list[dict[str, Any]], attr: str, *, total: int) -> dict[str, int]:
    """LabelCounters of the output lines a job wrote (a stopped job's part of its input)."""
    counters = {"TotalLabeled": 0, "HumanLabeled": 0, "MachineLabeled": 0, "FailedNonRetryableError": 0,
                "Unlabeled": total - len(out_lines)}
    for line in out_lines:
        meta = line.get(f"{attr}-metadata") or {}
        if meta.get("failure-reason"):
            counters["FailedNonRetryableError"] += 1
            continue
        counters["TotalLabeled"] += 1
        counters["HumanLabeled" if meta.get("human-annotated", "yes") == "yes" else "MachineLabeled"] += 1
    return counters


def _sm_error(code: str, message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    class _Err(SagemakerClientError):
        pass

    _Err.code = code
    return _Err(message)


# ------------------------------------------------------------------------------------------------------- patching


@dataclass
class LambdaContextStub:
    """What Powertools reads from the Lambda context."""

    function_name: str
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class _Patches:
    """setattr with undo, so the harness works without pytest's monkeypatch."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def set(self, target: Any, name: str, value: Any) -> None:
        had = hasattr(target, name) and name in vars(target)
        self._undo.append((target, name, vars(target).get(name), had))
        setattr(target, name, value)

    def undo(self) -> None:
        for target, name, old, had in reversed(self._undo):
            if had:
                setattr(target, name, old)
            else:
                delattr(target, name)
        self._undo.clear()


class _NoSleep:
    """Stands in for the ``time`` module of moto's retrier: ``sleep`` returns at once, the rest is ``time``'s."""

    @staticmethod
    def sleep(seconds: float) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def call_handler(handler: str, env: dict[str, str], event: Any, function_name: str) -> Any:
    """Import ``lambdas/<dir>/handler.py`` afresh (no state kept between calls) and call it with ``env`` set."""
    module_dir = handler.split(".")[0]
    path = LAMBDAS / module_dir / "handler.py"
    with _environment(env):
        spec = importlib.util.spec_from_file_location(f"e2e_handler_{module_dir}_{uuid.uuid4().hex}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        # dataclasses (with postponed annotations) look their module up in sys.modules while it executes
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
            return module.lambda_handler(event, LambdaContextStub(function_name))
        finally:
            sys.modules.pop(spec.name, None)


def _sync_labeling_task_class() -> type:
    """moto's SageMaker task, taught the ``createLabelingJob.sync`` pattern (the one simulated integration)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
        StateTaskServiceUnsupported,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    class SageMakerLabelingSync(StateTaskServiceUnsupported):
        def __init__(self) -> None:
            super().__init__()
            self._supported_integration_patterns.add(ResourceCondition.Sync)  # type: ignore[arg-type]

        def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):  # noqa: ANN001, ANN202
            if self.resource.api_action != "createLabelingJob":
                raise RuntimeError(f"unsupported .sync resource {self.resource.resource_arn}")
            client = boto_client_for(service="sagemaker", region=resource_runtime_part.region,
                                     state_credentials=state_credentials)
            name = normalised_parameters["LabelingJobName"]

            def resolve() -> Any:
                job = client.describe_labeling_job(LabelingJobName=name)
                job.pop("ResponseMetadata", None)
                status = job["LabelingJobStatus"]
                if status in ("Initializing", "InProgress", "Stopping"):
                    return None
                job = json.loads(json.dumps(job, default=lambda d: d.isoformat()))
                if status == "Completed":
                    return job
                raise FailureEventException(FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                        error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=json.dumps(job),
                        resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type())),
                ))

            return resolve

    return SageMakerLabelingSync


def table_request(props: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments for an ``AWS::DynamoDB::GlobalTable`` (what ``TableV2`` synthesizes; moto's
    CloudFormation does not model it): the same name, keys, attribute types and GSIs, on demand."""
    request: dict[str, Any] = {
        "TableName": props["TableName"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    gsis = [{k: g[k] for k in ("IndexName", "KeySchema", "Projection") if k in g}
            for g in props.get("GlobalSecondaryIndexes", [])]
    if gsis:
        request["GlobalSecondaryIndexes"] = gsis
    return request


# -------------------------------------------------------------------------------------------------------- harness


@dataclass
class Run:
    """One finished execution."""

    status: str
    output: dict[str, Any] | None
    states: list[str]
    history: list[dict[str, Any]]
    error: str | None = None
    cause: str | None = None


class WorkflowHarness:
    """Creates the pipeline's resources in moto from the templates and runs executions of the real state machine.

    Use as a context manager; it starts ``mock_aws`` with Step Functions execution on, patches moto (Lambda invoke
    -> real handlers, SageMaker labeling jobs -> :class:`FakeGroundTruth`, the ``.sync`` labeling integration), and
    undoes everything on exit.
    """

    def __init__(self, templates: dict[str, dict[str, Any]], *, env_overrides: dict[str, str] | None = None,
                 account: str | None = None, assets_dir: Path | None = None, warm_handlers: bool = False,
                 label_studio: Any | None = None) -> None:
        """Args (besides the templates):
            env_overrides: environment put over every function's own.
            account: the moto account (default: the one in the templates' bucket names).
            assets_dir: a ``cdk.out`` folder; the labeling assets are uploaded from its ``asset.<hash>.*`` files
                (what ``cdk deploy`` would publish) instead of being rendered again from the config.
            warm_handlers: keep each function's handler module between calls, as a warm Lambda container does
                (faster; module-level caches persist, see :meth:`cold_start`). Default: a fresh import per call.
            label_studio: a running Label Studio server (``.url``, ``.token``; localrun.labelstudio) for the
                ``label_studio`` backend: the functions call it, its admin token is the token secret in moto, and
                its webhooks reach the webhook function through a local relay (:meth:`deliver_webhooks`).
        """
        self.templates = templates
        self.assets_dir = assets_dir
        self.warm_handlers = warm_handlers
        self._warm: dict[str, Any] = {}
        self.account = account or self._config_account()
        self.resolver = Resolver(templates, self.account)
        self.ground_truth = FakeGroundTruth(self.account)
        self.env_overrides = {"POLL_SECONDS": "0", "POWERTOOLS_LOG_LEVEL": "WARNING",
                              "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "FieldLabel",
                              "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, **(env_overrides or {})}
        self.functions: dict[str, dict[str, Any]] = {}
        self.invocations: list[tuple[str, Any]] = []
        # handler folder -> callable(event) run before the handler (it may raise, to simulate a crash)
        self.faults: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._patches = _Patches()
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self.label_studio = label_studio
        self.webhook_relay: Any = None
        self.webhook_secret_value = uuid.uuid4().hex
        self.webhook_responses: list[dict[str, Any]] = []

    def _config_account(self) -> str:
        storage = self.templates["storage"]
        for res in storage["Resources"].values():
            if res["Type"] == "AWS::S3::Bucket" and isinstance(res["Properties"].get("BucketName"), str):
                return str(res["Properties"]["BucketName"].split("-")[-4])
        return "123456789012"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> WorkflowHarness:
        from moto import mock_aws

        fake_env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "MOTO_ACCOUNT_ID": self.account}
        self._saved_env = {k: os.environ.get(k) for k in fake_env}
        os.environ.update(fake_env)
        self._mock = mock_aws(config=MOTO_CONFIG)
        self._mock.start()
        self._patch()
        if self.label_studio is not None:
            from localrun.webhooks import WebhookRelay

            self.webhook_relay = WebhookRelay().start()
        self._create_resources()
        self.ground_truth.invoke = self.invoke_function
        return self

    def invoke_function(self, arn: str, event: dict[str, Any]) -> Any:
        """Invoke one of the pipeline's functions through moto's Lambda (so the real handler runs) and return its
        result; an unhandled error in the handler raises here, as a failed synchronous invoke would."""
        lam = boto3.client("lambda", region_name=REGION)
        resp = lam.invoke(FunctionName=arn, InvocationType="RequestResponse", Payload=json.dumps(event).encode())
        body = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise RuntimeError(f"{arn.rsplit(':', 1)[-1]} failed: {body[:1000]!r}")
        return json.loads(body or b"null")

    def __exit__(self, *exc: object) -> None:
        if self.webhook_relay is not None:
            self.webhook_relay.stop()
        self._patches.undo()
        if self._mock is not None:
            self._mock.stop()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # -- patches ---------------------------------------------------------------------------------------------

    def _patch(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.core.responses import ActionResult
        from moto.sagemaker.responses import SageMakerResponse
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

        harness = self

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any,
                   response_headers: dict[str, str]) -> bytes:
            name = function_name.split(":function:")[-1].split(":")[0]
            fn = harness.functions[name]
            event = json.loads(body or "{}")
            harness.invocations.append((name, event))
            env = {**fn["env"], **harness.env_overrides}
            principal = harness.function_principal(name)
            try:
                with acting_as(principal):
                    fault = harness.faults.get(fn["handler"].split(".")[0])
                    if fault is not None:
                        with _environment(env):
                            fault(event)
                    if harness.warm_handlers:
                        result = harness._call_warm(name, fn["handler"], env, event)
                    else:
                        result = call_handler(fn["handler"], env, event, name)
            except Exception as exc:  # noqa: BLE001 - reported to Step Functions like Lambda does
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
            return json.dumps(result, default=str).encode()

        self._patches.set(LambdaSimpleBackend, "invoke", invoke)
        from moto.secretsmanager.utils import SecretsManagerSecretIdentifier

        def secret_arn(ident: Any, existing_ids: Any = None, tags: Any = None) -> str:
            return f"arn:aws:secretsmanager:{ident.region}:{ident.account_id}:secret:{ident.name}-" \
                   f"{secret_suffix(ident.name)}"

        # The ARN the templates' policies name (Resolver): moto would append a random suffix.
        self._patches.set(SecretsManagerSecretIdentifier, "generate", secret_arn)
        from localrun.motofix import patches as moto_speed_fixes

        for target, attr, value in moto_speed_fixes():
            self._patches.set(target, attr, value)

        gt = self.ground_truth

        def create_labeling_job(resp: Any) -> Any:
            return ActionResult(gt.create(json.loads(resp.body)))

        def describe_labeling_job(resp: Any) -> Any:
            return ActionResult(gt.describe(json.loads(resp.body)["LabelingJobName"]))

        def stop_labeling_job(resp: Any) -> Any:
            gt.stop(json.loads(resp.body)["LabelingJobName"])
            return ActionResult({})

        for name, fn in (("create_labeling_job", create_labeling_job), ("describe_labeling_job",
                         describe_labeling_job), ("stop_labeling_job", stop_labeling_job)):
            self._patches.set(SageMakerResponse, name, fn)

        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
            StateTaskServiceAwsSdk,
        )

        sdk_eval = StateTaskServiceAwsSdk._eval_service_task

        def eval_sdk_task(task: Any, env: Any, *args: Any, **kwargs: Any) -> None:
            # Step Functions hands SDK results to the next state as JSON: timestamps become ISO strings.
            sdk_eval(task, env, *args, **kwargs)
            env.stack[-1] = json.loads(json.dumps(env.stack[-1], default=lambda d: d.isoformat()))

        self._patches.set(StateTaskServiceAwsSdk, "_eval_service_task", eval_sdk_task)

        # Retry intervals are the definition's (seconds to minutes); moto would sleep through each one. The retries
        # themselves (their count, order and errors) are unchanged, only the waiting is skipped.
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

        self._patches.set(retrier_decl, "time", _NoSleep())

        sync_cls = _sync_labeling_task_class()
        original = state_task_factory.state_task_service_for

        def service_for(service_name: str) -> Any:
            return sync_cls() if service_name == "sagemaker" else original(service_name)

        self._patches.set(state_task_factory, "state_task_service_for", service_for)

    # -- resources -------------------------------------------------------------------------------------------

    def _create_resources(self) -> None:
        r = self.resolver
        s3 = boto3.client("s3", region_name=REGION)
        for stack, lid, _res in r.resources("AWS::S3::Bucket", "storage"):
            s3.create_bucket(Bucket=r.physical_name(stack, lid))
        ddb = boto3.client("dynamodb", region_name=REGION)
        tables = {lid: r.physical_name(s, lid) for s, lid, _ in r.resources("AWS::DynamoDB::GlobalTable", "storage")}
        self.photos_table = next(v for v in tables.values() if v.endswith("-photos"))
        self.batches_table = next(v for v in tables.values() if v.endswith("-batches"))
        self.reviewers_table = next(v for v in tables.values() if v.endswith("-reviewers"))
        for _stack, _lid, res in r.resources("AWS::DynamoDB::GlobalTable", "storage"):
            ddb.create_table(**table_request(res["Properties"]))
        self.intake_bucket = next(r.physical_name(s, lid) for s, lid, _ in r.resources("AWS::S3::Bucket", "storage")
                                  if "-intake-" in r.physical_name(s, lid))
        self.artifacts_bucket = next(r.physical_name(s, lid) for s, lid, _ in
                                     r.resources("AWS::S3::Bucket", "storage") if "-artifacts-" in
                                     r.physical_name(s, lid))

        iam = boto3.client("iam", region_name=REGION)
        role_arn = iam.create_role(RoleName="e2e-lambda", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        sfn_role = iam.create_role(RoleName="e2e-states", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        zip_bytes = io.BytesIO()
        with zipfile.ZipFile(zip_bytes, "w") as zf:
            zf.writestr("handler.py", "def lambda_handler(event, context):\n    return event\n")
        for stack, lid, res in r.resources("AWS::Lambda::Function", "pipeline"):
            props = res["Properties"]
            handler = props["Handler"]
            if not (LAMBDAS / handler.split(".")[0] / "handler.py").is_file():
                continue
            env = {k: str(r.value(stack, v)) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
            name = r.physical_name(stack, lid)
            lam.create_function(FunctionName=name, Runtime="python3.12", Role=role_arn, Handler=handler,
                                Code={"ZipFile": zip_bytes.getvalue()})
            self.functions[name] = {"handler": handler, "env": env, "role": str(r.value(stack, props["Role"]))}

        self._upload_assets(s3)
        self._create_secrets()
        if self.label_studio is not None:
            # Only the functions whose template names them: the local server's URL for the deployment's, the
            # relay's for the webhook function's Function URL.
            local = {"LABEL_STUDIO_URL": self.label_studio.url, "WEBHOOK_URL": self.webhook_relay.url,
                     # The local server cannot reach moto's in-process S3, so its projects get no S3 storage: tasks
                     # keep their s3:// URIs unresolved (presigning is tested in tests/unit/labelstudio with moto's
                     # server). Nothing the workflow reads depends on it.
                     "LABEL_STUDIO_IMAGES_BUCKET": ""}
            for fn in self.functions.values():
                fn["env"].update({k: v for k, v in local.items() if k in fn["env"]})

        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        self.notifications_queue = sqs.create_queue(QueueName="e2e-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.notifications_queue,
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for stack, lid, _res in r.resources("AWS::SNS::Topic", "pipeline"):
            arn = sns.create_topic(Name=r.physical_name(stack, lid))["TopicArn"]
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

        (stack, lid, sm), = r.resources("AWS::StepFunctions::StateMachine", "pipeline")
        self.definition = json.loads(r.value(stack, sm["Properties"]["DefinitionString"]))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        self.state_machine_arn = sfn.create_state_machine(
            name=r.physical_name(stack, lid), definition=json.dumps(self.definition), roleArn=sfn_role,
            type="STANDARD")["stateMachineArn"]

    def _create_secrets(self) -> None:
        """The Label Studio deployment's secrets the functions name: the token is the local server's admin token."""
        values = {"LABEL_STUDIO_TOKEN_SECRET_ARN": self.label_studio.token if self.label_studio else None,
                  "LABEL_STUDIO_WEBHOOK_SECRET_ARN": self.webhook_secret_value}
        sm = boto3.client("secretsmanager", region_name=REGION)
        made: set[str] = set()
        for fn in self.functions.values():
            for var, value in values.items():
                arn = fn["env"].get(var)
                if not arn or arn in made or value is None:
                    continue
                name = arn.split(":secret:", 1)[1].rsplit("-", 1)[0]
                created = sm.create_secret(Name=name, SecretString=value)["ARN"]
                if created != arn:
                    raise RuntimeError(f"moto made {created} for {var}, the templates name {arn}")
                made.add(arn)

    def _upload_assets(self, s3: Any) -> None:
        if self.assets_dir is not None:
            self._upload_assets_from(s3, self.assets_dir)
            return
        from stacks.labeling_assets import render_ui_files

        # The environment the templates were synthesized from (its project name), so its taxonomy is rendered.
        project = next((fn["env"]["PROJECT_PREFIX"] for fn in self.functions.values()
                        if fn["env"].get("PROJECT_PREFIX")), None)
        envs = cdk_context().get("environments", {})
        env = next((name for name, block in envs.items() if block.get("project") == project), None)
        files = render_ui_files(config_from_context({"env": env} if env else None))
        for fn in self.functions.values():
            for var, file_name in ASSET_ENV.items():
                uri = fn["env"].get(var)
                if not uri or file_name not in files:
                    continue
                bucket, key = uri[5:].split("/", 1)
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                    s3.create_bucket(Bucket=bucket)
                s3.put_object(Bucket=bucket, Key=key, Body=files[file_name].encode())

    def _upload_assets_from(self, s3: Any, cdk_out: Path) -> None:
        """Publish the file assets the functions' asset URIs name, from ``cdk.out/asset.<hash>.<ext>``."""
        for fn in self.functions.values():
            for var in ASSET_ENV:
                uri = fn["env"].get(var)
                if not uri:
                    continue
                bucket, key = uri[5:].split("/", 1)
                source = cdk_out / f"asset.{key}"
                if not source.is_file():
                    raise FileNotFoundError(f"{var} names {uri}, but {source} is not in {cdk_out}")
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                    s3.create_bucket(Bucket=bucket)
                s3.put_object(Bucket=bucket, Key=key, Body=source.read_bytes())

    def _call_warm(self, name: str, handler: str, env: dict[str, str], event: Any) -> Any:
        with _environment(env):
            module = self._warm.get(name)
            if module is None:
                module_dir = handler.split(".")[0]
                path = LAMBDAS / module_dir / "handler.py"
                spec = importlib.util.spec_from_file_location(f"warm_handler_{name}", path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                # dataclasses (with postponed annotations) look their module up in sys.modules while it executes
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                self._warm[name] = module
            return module.lambda_handler(event, LambdaContextStub(name))

    def function_principal(self, name: str) -> Principal:
        """The execution role function ``name`` runs as (what its calls are checked against)."""
        return role_principal(self.functions[name]["role"], f"function {name}")

    def schedule_principal(self, function_name: str) -> Principal | None:
        """The role of the schedule that invokes function ``function_name``, if one does."""
        r = self.resolver
        for stack, _lid, res in r.resources("AWS::Scheduler::Schedule"):
            target = res["Properties"]["Target"]
            if str(r.value(stack, target["Arn"])).endswith(f":function:{function_name}"):
                return role_principal(str(r.value(stack, target["RoleArn"])), "EventBridge Scheduler")
        return None

    def cold_start(self, name: str) -> None:
        """Forget function ``name``'s warm module, so its next call re-reads its environment (warm mode only)."""
        self._warm.pop(name, None)

    # -- scenario helpers --------------------------------------------------------------------------------------

    def seed_batch(self, batch_id: str, count: int, *, kind: str = "automated", attempts: int = 0,
                   start: int = 0, write_images: bool = False) -> list[str]:
        """Register ``count`` photos as BATCHED in ``batch_id`` (and the batch as STARTED); returns photo ids.

        The fake Ground Truth never opens the images, so their labeling copies are only written on request.
        """
        ddb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        from fieldlabel.registry.model import to_item

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ids = []
        items = []
        for i in range(start, start + count):
            digest = hashlib.sha256(f"{batch_id}/{i}".encode()).hexdigest()
            photo_id = f"sha256:{digest}"
            key = f"labeling-copies/sha256-{digest}.jpg"
            if write_images:
                s3.put_object(Bucket=self.intake_bucket, Key=key, Body=b"\xff\xd8 fake jpeg")
            items.append(to_item({
                "photo_id": photo_id, "status": "BATCHED", "batch_id": batch_id, "registered_at": now,
                "updated_at": now, "attempts": attempts, "labeling_ref": f"s3://{self.intake_bucket}/{key}",
                "original": {"bucket": self.intake_bucket, "key": f"uploads/site-{i % 7}/IMG_{i}.HEIC",
                             "version_id": "", "etag": digest[:32], "size": 1000 + i},
                "field": {"site_id": f"S{i % 7}", "captured_at": "2026-05-01T10:00:00Z", "latitude": 52.1,
                          "longitude": 5.2},
            }))
            ids.append(photo_id)
        for chunk in range(0, len(items), 25):
            ddb.batch_write_item(RequestItems={self.photos_table: [{"PutRequest": {"Item": it}}
                                                                  for it in items[chunk:chunk + 25]]})
        ddb.put_item(TableName=self.batches_table, Item=to_item({
            "batch_id": batch_id, "status": "STARTED", "kind": kind, "photo_count": count, "created_at": now,
            "updated_at": now}))
        return ids

    def run_batch(self, batch_id: str, *, photo_count: int, kind: str = "automated", attempt: int = 1,
                  timeout: float = 900.0) -> Run:
        """Start ``batch-<batch_id>`` with the contract's execution input and wait for it to end."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.start_execution(stateMachineArn=self.state_machine_arn, name=f"batch-{batch_id}", input=json.dumps(
            {"batch_id": batch_id, "photo_count": photo_count, "kind": kind, "attempt": attempt}))["executionArn"]
        return self.wait_for(arn, timeout=timeout)

    def start_batch(self, batch_id: str, *, photo_count: int, kind: str = "automated", attempt: int = 1) -> str:
        """Start ``batch-<batch_id>`` without waiting (its run states wait for Label Studio); the execution ARN."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        return str(sfn.start_execution(stateMachineArn=self.state_machine_arn, name=f"batch-{batch_id}",
                                       input=json.dumps({"batch_id": batch_id, "photo_count": photo_count,
                                                         "kind": kind, "attempt": attempt}))["executionArn"])

    def wait_until(self, what: str, condition: Callable[[], Any], *, timeout: float = 300.0) -> Any:
        """Wait until ``condition()`` is truthy (an execution reaching a state) and return its value.

        A hang guard, not a timing: the condition is what the test waits for (e.g. a stage submitted), never an
        amount of time; ``timeout`` only turns a hang into a failure naming ``what``.
        """
        deadline = time.monotonic() + timeout
        while True:
            # A handler runs in moto's execution thread with its environment set (``_environment``); reading the
            # registry from this thread builds a boto3 client, which iterates os.environ, so it must not overlap a
            # handler's environment being restored (a key popped mid-iteration is a KeyError: seen in CI).
            with _ENV_LOCK:
                value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.05)

    def stage_submitted(self, batch_id: str, stage: str = "labeling") -> dict[str, Any] | None:
        """The batch item once its Label Studio ``stage`` is submitted (tasks imported, token kept), else None."""
        batch = self.batch(batch_id)
        return batch if batch.get(f"ls_{stage}_expected") is not None and \
            batch.get(f"ls_{stage}_state") == "OPEN" else None

    def function_named(self, handler_dir: str) -> str:
        """The (moto) name of the pipeline function whose handler is ``lambdas/<handler_dir>/handler.py``."""
        names = [n for n, f in self.functions.items() if f["handler"].split(".")[0] == handler_dir]
        if len(names) != 1:
            raise KeyError(f"{len(names)} functions run lambdas/{handler_dir}")
        return names[0]

    def deliver_webhooks(self, *, drop: bool = False) -> list[dict[str, Any]]:
        """Hand every webhook Label Studio posted so far to the webhook function, as its Function URL would.

        ``drop``: lose them instead (a webhook that never arrives), so only the poll can finish the batch. Returns
        the function's responses (``statusCode``, ``body``). A Function URL with AuthType NONE is an unsigned public
        request: Lambda checks only the function's resource policy, so no IAM caller is checked here.
        """
        from localrun.iamcheck.principals import INTERNAL

        events = self.webhook_relay.take() if self.webhook_relay is not None else []
        if drop:
            return []
        fn = self.function_named("ls_webhook")
        out = []
        with acting_as(INTERNAL):
            for event in events:
                out.append(self.invoke_function(fn, event))
        self.webhook_responses += out
        return out

    def post_webhook(self, headers: dict[str, str], body: str = '{"action": "ANNOTATION_CREATED"}') -> Any:
        """Post one request to the webhook function as anyone on the internet could (e.g. without the secret)."""
        from localrun.iamcheck.principals import INTERNAL

        event = {"version": "2.0", "headers": {k.lower(): v for k, v in headers.items()}, "body": body,
                 "isBase64Encoded": False, "queryStringParameters": None}
        with acting_as(INTERNAL):
            return self.invoke_function(self.function_named("ls_webhook"), event)

    def run_ls_poll(self) -> Any:
        """What the poll schedule does: invoke the poll function with the schedule's input, as its role."""
        fn = self.function_named("ls_poll")
        with acting_as(self.schedule_principal(fn)):
            return self.invoke_function(fn, {"trigger": "schedule"})

    def expire_task_token(self, token: str) -> None:
        """Make the run state waiting for ``token`` time out now (``States.Timeout``), as its TimeoutSeconds would.

        The state's timeout is a month; moto's interpreter waits for the callback with that timeout, so the harness
        hands the waiting state the same outcome the timer would.
        """
        from moto.stepfunctions.parser.api import ExecutionStatus
        from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackOutcomeTimedOut
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[self.account][REGION]
        for execution in backend._get_executions(ExecutionStatus.RUNNING):
            if execution.exec_worker.env.callback_pool_manager.notify(
                    callback_id=token, outcome=CallbackOutcomeTimedOut(callback_id=token)):
                return
        raise KeyError("no running execution waits for that task token")

    def wait_for(self, arn: str, *, timeout: float = 120.0) -> Run:
        """Wait for the execution ``arn`` (started by anyone, e.g. ``fieldlabel resume``) to end."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} still running after {timeout} s")
            time.sleep(0.1)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        output = json.loads(desc["output"]) if desc.get("output") else None
        return Run(desc["status"], output, states, events, desc.get("error"), desc.get("cause"))

    def photos(self, batch_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Every photo item (optionally only those whose ``batch_id`` or ``last_batch_id`` is ``batch_id``)."""
        from fieldlabel.registry.model import from_item

        with _ENV_LOCK:  # see wait_until
            ddb = boto3.client("dynamodb", region_name=REGION)
        out: dict[str, dict[str, Any]] = {}
        for page in ddb.get_paginator("scan").paginate(TableName=self.photos_table):
            for raw in page["Items"]:
                item = from_item(raw) or {}
                if batch_id in (None, item.get("batch_id"), item.get("last_batch_id")):
                    out[item["photo_id"]] = item
        return out

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The batch item (or a control item such as ``#model``)."""
        from fieldlabel.registry.model import from_item

        with _ENV_LOCK:  # see wait_until
            ddb = boto3.client("dynamodb", region_name=REGION)
        return from_item(ddb.get_item(TableName=self.batches_table, Key={"batch_id": {"S": batch_id}})
                         .get("Item")) or {}

    def notifications(self) -> list[dict[str, Any]]:
        """SNS messages delivered so far (``{"Subject", "Message"}``), oldest first; the queue is drained."""
        sqs = boto3.client("sqs", region_name=REGION)
        out: list[dict[str, Any]] = []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.notifications_queue, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                body = json.loads(m["Body"])
                out.append({"Subject": body.get("Subject"), "Message": body.get("Message")})
                sqs.delete_message(QueueUrl=self.notifications_queue, ReceiptHandle=m["ReceiptHandle"])

    def s3_json_lines(self, uri: str) -> list[dict[str, Any]]:
        """A JSON Lines object from S3."""
        s3 = boto3.client("s3", region_name=REGION)
        bucket, key = uri[5:].split("/", 1)
        return [json.loads(x) for x in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines() if x]

    def s3_json(self, uri: str) -> Any:
        s3 = boto3.client("s3", region_name=REGION)
        bucket, key = uri[5:].split("/", 1)
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
