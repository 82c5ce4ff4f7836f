"""From a recorded call to the permissions it needs: IAM action, resource ARN and request context.

The action is ``<prefix>:<Operation>`` (the prefix is the service model's signing name) except where the Service
Authorization Reference says otherwise; :data:`_S3`, :func:`_dynamodb` and the other functions below are that
small explicit table for the services the project uses. Service semantics that change the outcome are added as
extra accesses:

* S3 Get/Head of a key that does not exist answers 404 only to a caller with ``s3:ListBucket`` on the bucket,
  403 otherwise (S3 API reference, GetObject/HeadObject "Permissions"). The implicit ListBucket check carries no
  ``s3:prefix`` in its context here, so a prefix condition must tolerate its absence (``...IfExists``).
* SSE-KMS: reading an object needs ``kms:Decrypt`` on the bucket's key; writing needs ``kms:GenerateDataKey``
  (multipart uploads also ``kms:Decrypt``); publishing to a KMS-encrypted SNS topic needs both.
* ``createLabelingJob.sync`` tags the job (``sagemaker:AddTags``) and manages an EventBridge rule.
* ``iam:PassRole`` for the role a CreateLabelingJob request names.
* S3 event notifications: S3 itself sends to the queue (``sqs:SendMessage`` as ``s3.amazonaws.com``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from localrun.iamcheck.policies import PolicyModel
from localrun.iamcheck.principals import Principal, service
from localrun.iamcheck.recorder import Access, Call

SYNC_RULE = "StepFunctionsGetEventsForSageMakerLabelingJobsRule"  # undocumented name (facts §7): a best guess


def _obj(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _bucket(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _versioned(call: Call, plain: str, versioned: str) -> str:
    return versioned if call.params.get("VersionId") else plain


_S3_OBJECT: dict[str, Callable[[Call], str]] = {
    "GetObject": lambda c: _versioned(c, "s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": lambda c: _versioned(c, "s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectTagging": lambda c: _versioned(c, "s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": lambda c: _versioned(c, "s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "PutObject": lambda c: "s3:PutObject",
    "CreateMultipartUpload": lambda c: "s3:PutObject",
    "UploadPart": lambda c: "s3:PutObject",
    "CompleteMultipartUpload": lambda c: "s3:PutObject",
    "AbortMultipartUpload": lambda c: "s3:AbortMultipartUpload",
    "DeleteObject": lambda c: _versioned(c, "s3:DeleteObject", "s3:DeleteObjectVersion"),
}
_S3_BUCKET = {"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
              "ListObjectVersions": "s3:ListBucketVersions", "GetBucketLocation": "s3:GetBucketLocation"}
_READS = {"GetObject", "HeadObject", "GetObjectTagging"}
_WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject"}
_MISSING = {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}


class AccessMapper:
    """Turns recorded calls into accesses for one :class:`PolicyModel` (account, buckets, keys, topics)."""

    def __init__(self, model: PolicyModel) -> None:
        self.m = model

    def base_context(self, who: Principal) -> dict[str, Any]:
        ctx: dict[str, Any] = {"aws:SecureTransport": "true", "aws:CurrentTime": "2026-01-01T00:00:00Z"}
        if who.kind == "role" and who.arn:
            ctx.update({"aws:PrincipalArn": who.arn, "aws:PrincipalAccount": self.m.account})
        if who.kind == "policy":
            ctx["aws:PrincipalAccount"] = self.m.account
        return ctx

    def accesses(self, call: Call) -> list[Access]:
        who = call.principal
        if who is None or who.kind == "internal":
            return []
        fn = getattr(self, f"_{call.service}", None)
        out: list[Access] = []
        ctx = self.base_context(who)
        if fn is not None:
            out = fn(call, who, ctx)
        if not out:
            out = [Access(who, f"{call.prefix}:{call.operation}", "*", ctx, call, why="no mapping: resource *")]
        return out

    # -- S3 ----------------------------------------------------------------------------------------------------

    def _s3(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        p, op = call.params, call.operation
        bucket = str(p.get("Bucket", ""))
        ctx = {**ctx, "s3:TlsVersion": "1.2"}
        out: list[Access] = []
        if op in _S3_BUCKET:
            c = dict(ctx)
            if op in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
                # A list request always carries the prefix (empty when none is given).
                c["s3:prefix"] = p.get("Prefix", "")
                if "Delimiter" in p:
                    c["s3:delimiter"] = p["Delimiter"]
            out.append(Access(who, _S3_BUCKET[op], _bucket(bucket), c, call))
            return out
        if op == "CopyObject":
            src = unquote(str(p.get("CopySource", ""))).lstrip("/")
            sb, _, sk = src.partition("/")
            out.append(Access(who, "s3:GetObject", _obj(sb, sk.split("?")[0]), ctx, call))
            out.append(Access(who, "s3:PutObject", _obj(bucket, p["Key"]), ctx, call))
            out += self._kms_for_s3(who, sb, "kms:Decrypt", call, "reading an SSE-KMS object")
        elif op in _S3_OBJECT:
            out.append(Access(who, _S3_OBJECT[op](call), _obj(bucket, str(p.get("Key", ""))), ctx, call))
        else:
            return []
        missing = call.status == 404 or (call.error_code in _MISSING)
        if op in _READS and missing:
            out.append(Access(who, "s3:ListBucket", _bucket(bucket), dict(ctx), call, why=(
                f"{op} of a key that does not exist: S3 answers 404 only to a caller with s3:ListBucket on the "
                "bucket, 403 AccessDenied otherwise, and the code expects the 404")))
        ok = call.status is not None and call.status < 300
        if op == "GetObject" and ok:
            out += self._kms_for_s3(who, bucket, "kms:Decrypt", call, "reading an SSE-KMS object")
        if op in _WRITES and ok:
            out += self._kms_for_s3(who, bucket, "kms:GenerateDataKey", call, "writing to an SSE-KMS bucket")
            if op in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
                out += self._kms_for_s3(who, bucket, "kms:Decrypt", call, "a multipart upload to an SSE-KMS bucket")
            out += self._notifications(bucket, str(p.get("Key", "")), call)
        return out

    def _kms_for_s3(self, who: Principal, bucket: str, action: str, call: Call, why: str) -> list[Access]:
        info = self.m.buckets.get(bucket)
        if info is None or not info.kms_key:
            return []  # SSE-S3, or a bucket outside the templates (the CDK asset bucket: AWS managed key)
        ctx = {**self.base_context(who), "kms:ViaService": f"s3.{self.m.region}.amazonaws.com",
               "kms:CallerAccount": self.m.account}
        return [Access(who, action, info.kms_key, ctx, call, why=why)]

    def _notifications(self, bucket: str, key: str, call: Call) -> list[Access]:
        info = self.m.buckets.get(bucket)
        out = []
        for n in info.notifications if info else []:
            if key.startswith(n["prefix"]):
                ctx = {"aws:SourceArn": _bucket(bucket), "aws:SourceAccount": self.m.account,
                       "aws:SecureTransport": "true"}
                out.append(Access(service("s3.amazonaws.com", "S3 event notification"), "sqs:SendMessage",
                                  n["queue"], ctx, call, why="S3 delivers the object-created event to the queue"))
        return out

    # -- DynamoDB ------------------------------------------------------------------------------------------------

    def _table(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:dynamodb:{self.m.region}:{self.m.account}:table/{name}"

    def _dynamodb(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        p, op = call.params, call.operation
        if op in ("BatchGetItem", "BatchWriteItem"):
            return [Access(who, f"dynamodb:{op}", self._table(t), ctx, call) for t in p.get("RequestItems", {})]
        if op in ("TransactWriteItems", "TransactGetItems"):
            names = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
            out = []
            for item in p.get("TransactItems", []):
                for kind, body in item.items():
                    out.append(Access(who, f"dynamodb:{names[kind]}", self._table(body["TableName"]), ctx, call))
            return out
        if "TableName" in p:
            res = self._table(str(p["TableName"]))
            if p.get("IndexName"):
                res += f"/index/{p['IndexName']}"
            return [Access(who, f"dynamodb:{op}", res, ctx, call)]
        return []

    # -- Lambda, Step Functions, SNS, SQS ----------------------------------------------------------------------

    def _function(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:lambda:{self.m.region}:{self.m.account}:function:{name}"

    def _lambda(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        if call.operation in ("Invoke", "InvokeAsync"):
            res = self._function(str(call.params["FunctionName"]))
            if call.params.get("Qualifier"):
                res += f":{call.params['Qualifier']}"
            return [Access(who, "lambda:InvokeFunction", res, ctx, call)]
        if "FunctionName" in call.params:
            return [Access(who, f"lambda:{call.operation}", self._function(str(call.params["FunctionName"])), ctx,
                           call)]
        return []

    def _stepfunctions(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        p = call.params
        arn = p.get("stateMachineArn") or p.get("executionArn")
        if call.operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat") and "taskToken" in p:
            # The request names only a task token; IAM authorizes it on the state machine whose execution waits
            # (aws-cdk-lib's grantTaskResponse grants these actions on the state machine ARN).
            return [Access(who, f"states:{call.operation}", sm, ctx, call,
                           why="a task token of this state machine's executions") for sm in self.m.state_machines]
        return [Access(who, f"states:{call.operation}", str(arn), ctx, call)] if arn else []

    def _secretsmanager(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        secret = call.params.get("SecretId")
        if not secret:
            return []
        out = [Access(who, f"secretsmanager:{call.operation}", str(secret), ctx, call)]
        key = self.m.secret_keys.get(str(secret))
        if call.operation == "GetSecretValue" and key:
            kctx = {**ctx, "kms:ViaService": f"secretsmanager.{self.m.region}.amazonaws.com",
                    "kms:CallerAccount": self.m.account}
            out.append(Access(who, "kms:Decrypt", key, kctx, call, why="reading a secret encrypted with the data key"))
        return out

    def _sns(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        topic = call.params.get("TopicArn")
        if not topic:
            return []
        out = [Access(who, f"sns:{call.operation}", str(topic), ctx, call)]
        key = self.m.topic_keys.get(str(topic))
        if call.operation == "Publish" and key:
            kctx = {**ctx, "kms:ViaService": f"sns.{self.m.region}.amazonaws.com",
                    "kms:CallerAccount": self.m.account}
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                out.append(Access(who, action, key, kctx, call, why="publishing to a KMS-encrypted topic"))
        return out

    def _sqs(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        p = call.params
        url = p.get("QueueUrl")
        if url:
            parts = str(url).rstrip("/").split("/")
            arn = f"arn:aws:sqs:{self.m.region}:{parts[-2]}:{parts[-1]}"
        elif p.get("QueueName"):
            arn = f"arn:aws:sqs:{self.m.region}:{self.m.account}:{p['QueueName']}"
        else:
            return []
        op = call.operation.removesuffix("Batch")
        return [Access(who, f"sqs:{op}", arn, ctx, call)]

    # -- SageMaker ----------------------------------------------------------------------------------------------

    def _sagemaker(self, call: Call, who: Principal, ctx: dict[str, Any]) -> list[Access]:
        p, op = call.params, call.operation
        name = p.get("LabelingJobName")
        if not name:
            return []
        job = f"arn:aws:sagemaker:{self.m.region}:{self.m.account}:labeling-job/{str(name).lower()}"
        out = [Access(who, f"sagemaker:{op}", job, ctx, call)]
        if op == "CreateLabelingJob":
            out.append(Access(who, "iam:PassRole", str(p["RoleArn"]),
                              {**ctx, "iam:PassedToService": "sagemaker.amazonaws.com"}, call,
                              why="the request names the role Ground Truth runs as"))
            sync = who.arn is not None and who.arn == self.m.state_machine_role
            if p.get("Tags") or sync:
                out.append(Access(who, "sagemaker:AddTags", job, ctx, call, why=(
                    "createLabelingJob.sync tags the job it starts (MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS)"
                    if sync else "CreateLabelingJob with Tags")))
            if sync:
                rule = f"arn:aws:events:{self.m.region}:{self.m.account}:rule/{SYNC_RULE}"
                for action in ("events:PutRule", "events:PutTargets", "events:DescribeRule"):
                    out.append(Access(who, action, rule, ctx, call,
                                      why="createLabelingJob.sync manages its own EventBridge rule"))
        return out
