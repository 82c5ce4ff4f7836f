"""The IAM the synthesized templates give: each role's identity statements and each resource's policy.

Identity: a role's inline ``Policies``, the ``AWS::IAM::Policy`` and ``AWS::IAM::ManagedPolicy`` resources that
name it, and the AWS managed policies it attaches (their documents are in :data:`AWS_MANAGED`; an unknown one is
an error, so nothing is silently skipped). Resource policies: ``AWS::S3::BucketPolicy``, ``AWS::KMS::Key``
key policies, ``AWS::SQS::QueuePolicy``, ``AWS::SNS::TopicPolicy`` and ``AWS::Lambda::Permission``. Values are
resolved with the harness's :class:`~localrun.harness.Resolver`, so ARNs are the ones the recorded calls use.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localrun.harness import REGION, Resolver
from localrun.iamcheck.evaluate import Statement, as_list

# AWS managed policies the templates attach, as AWS publishes them (IAM console, policy version v1).
AWS_MANAGED: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"},
    ],
}

DOCS = Path(__file__).resolve().parents[2] / "docs"
UPLOADER_POLICY = DOCS / "uploader-policy.json"


class TemplateResolver(Resolver):
    """The harness resolver, plus the resource types only policies refer to (queues, rules, schedules)."""

    def arn(self, stack: str, logical_id: str) -> str:
        typ = self.resource(stack, logical_id)["Type"]
        a, r = self.account, self.region
        if typ == "AWS::SQS::Queue":
            name = self.resource(stack, logical_id).get("Properties", {}).get("QueueName", logical_id)
            return f"arn:aws:sqs:{r}:{a}:{self.value(stack, name)}"
        if typ == "AWS::Events::Rule":
            return f"arn:aws:events:{r}:{a}:rule/{logical_id}"
        if typ == "AWS::Scheduler::Schedule":
            return f"arn:aws:scheduler:{r}:{a}:schedule/default/{logical_id}"
        if typ == "AWS::Cognito::UserPool":
            return f"arn:aws:cognito-idp:{r}:{a}:userpool/{logical_id}"
        if typ == "AWS::SageMaker::Workforce":
            return f"arn:aws:sagemaker:{r}:{a}:workforce/{logical_id.lower()}"
        if typ == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{a}:policy/{logical_id}"
        return super().arn(stack, logical_id)

    def safe(self, stack: str, node: Any) -> Any:
        """:meth:`value`, with anything unresolvable turned into a marker that matches no request."""
        try:
            return self.value(stack, node)
        except (ValueError, KeyError) as exc:
            return f"unresolved:{stack}:{exc}"


def key_arn(account: str, logical_id: str, region: str = REGION) -> str:
    """The ARN the harness resolver gives a key (kept in one place with :class:`Resolver`)."""
    return f"arn:aws:kms:{region}:{account}:key/{uuid.uuid5(uuid.NAMESPACE_URL, logical_id)}"


@dataclass
class RoleInfo:
    arn: str
    stack: str
    logical_id: str
    statements: list[Statement] = field(default_factory=list)
    trust: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BucketInfo:
    name: str
    kms_key: str | None  # SSE-KMS default key ARN, None for SSE-S3
    notifications: list[dict[str, Any]] = field(default_factory=list)  # [{"queue": arn, "prefix": ...}]


@dataclass
class PolicyModel:
    """Everything the evaluator needs, resolved for the harness account."""

    account: str
    region: str
    roles: dict[str, RoleInfo]  # role ARN -> info
    resource_policies: dict[str, list[Statement]]  # bucket/key/queue/topic/function ARN -> statements
    buckets: dict[str, BucketInfo]  # bucket name -> info
    topic_keys: dict[str, str]  # topic ARN -> KMS key ARN
    kms_keys: set[str]
    documented: dict[str, list[Statement]]  # named identities defined outside the templates (docs)
    function_roles: dict[str, str]  # function name -> role ARN
    state_machine_role: str | None
    schedule_roles: dict[str, str]  # target function ARN -> the schedule's role ARN
    state_machines: list[str] = field(default_factory=list)  # state machine ARNs (SendTask* names only a token)
    secret_keys: dict[str, str] = field(default_factory=dict)  # secret ARN -> the KMS key ARN it is encrypted with

    def role_label(self, arn: str) -> str:
        info = self.roles.get(arn)
        return f"{info.stack}/{info.logical_id}" if info else arn


def load(templates: dict[str, dict[str, Any]], account: str, region: str = REGION) -> PolicyModel:
    r = TemplateResolver(templates, account, region)
    roles: dict[str, RoleInfo] = {}
    by_logical: dict[tuple[str, str], RoleInfo] = {}
    for stack, lid, res in r.resources("AWS::IAM::Role"):
        props = res.get("Properties", {})
        info = RoleInfo(r.arn(stack, lid), stack, lid,
                        trust=as_list(r.safe(stack, props.get("AssumeRolePolicyDocument", {})).get("Statement")))
        for i, pol in enumerate(props.get("Policies", [])):
            doc = r.safe(stack, pol["PolicyDocument"])
            info.statements += [Statement(f"{stack}/{lid}.Policies[{i}]#{n}", s)
                                for n, s in enumerate(as_list(doc.get("Statement")))]
        for m in props.get("ManagedPolicyArns", []):
            arn = str(r.safe(stack, m))
            if arn in AWS_MANAGED:
                info.statements += [Statement(f"{arn.rsplit('/', 1)[-1]}#{n}", s)
                                    for n, s in enumerate(AWS_MANAGED[arn])]
            elif not (isinstance(m, dict) and "Ref" in m):
                raise ValueError(f"{stack}/{lid} attaches managed policy {arn}, whose document is unknown to the "
                                 "IAM check: add it to localrun.iamcheck.policies.AWS_MANAGED")
        roles[info.arn] = info
        by_logical[(stack, lid)] = info
    for rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for stack, lid, res in r.resources(rtype):
            props = res.get("Properties", {})
            doc = r.safe(stack, props.get("PolicyDocument", {}))
            stmts = [Statement(f"{stack}/{lid}#{n}", s) for n, s in enumerate(as_list(doc.get("Statement")))]
            for ref in props.get("Roles", []):
                target = by_logical.get((stack, str(ref.get("Ref")))) if isinstance(ref, dict) else None
                if target is None:
                    raise ValueError(f"{stack}/{lid} attaches to a role the IAM check cannot find: {ref}")
                target.statements += stmts

    resource_policies: dict[str, list[Statement]] = {}

    def add(arn: str, source: str, doc: Any) -> None:
        resource_policies.setdefault(arn, []).extend(
            Statement(f"{source}#{n}", s) for n, s in enumerate(as_list((doc or {}).get("Statement"))))

    buckets: dict[str, BucketInfo] = {}
    bucket_by_lid: dict[tuple[str, str], str] = {}
    for stack, lid, res in r.resources("AWS::S3::Bucket"):
        name = r.physical_name(stack, lid)
        bucket_by_lid[(stack, lid)] = name
        key = None
        for rule in res.get("Properties", {}).get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
            default = rule.get("ServerSideEncryptionByDefault", {})
            if default.get("SSEAlgorithm") == "aws:kms" and default.get("KMSMasterKeyID"):
                key = str(r.safe(stack, default["KMSMasterKeyID"]))
        buckets[name] = BucketInfo(name, key)
    for stack, lid, res in r.resources("AWS::S3::BucketPolicy"):
        name = str(r.safe(stack, res["Properties"]["Bucket"]))
        add(f"arn:aws:s3:::{name}", f"{stack}/{lid}", r.safe(stack, res["Properties"]["PolicyDocument"]))
    kms_keys: set[str] = set()
    for stack, lid, res in r.resources("AWS::KMS::Key"):
        arn = r.arn(stack, lid)
        kms_keys.add(arn)
        add(arn, f"{stack}/{lid}.KeyPolicy", r.safe(stack, res["Properties"].get("KeyPolicy", {})))
    for stack, lid, res in r.resources("AWS::SQS::QueuePolicy"):
        for q in res["Properties"].get("Queues", []):
            add(r.arn(stack, q["Ref"]), f"{stack}/{lid}", r.safe(stack, res["Properties"]["PolicyDocument"]))
    topic_keys: dict[str, str] = {}
    for stack, lid, res in r.resources("AWS::SNS::Topic"):
        k = res.get("Properties", {}).get("KmsMasterKeyId")
        if k is not None:
            topic_keys[str(r.value(stack, {"Ref": lid}))] = str(r.safe(stack, k))
    for stack, lid, res in r.resources("AWS::SNS::TopicPolicy"):
        for t in res["Properties"].get("Topics", []):
            add(str(r.safe(stack, t)), f"{stack}/{lid}", r.safe(stack, res["Properties"]["PolicyDocument"]))
    for stack, lid, res in r.resources("AWS::Lambda::Permission"):
        p = res["Properties"]
        stmt: dict[str, Any] = {"Effect": "Allow", "Action": p["Action"], "Resource": "*"}
        principal = str(r.safe(stack, p["Principal"]))
        stmt["Principal"] = {"Service": principal} if principal.endswith(".amazonaws.com") else {"AWS": principal}
        if "SourceArn" in p:
            stmt["Condition"] = {"ArnLike": {"aws:SourceArn": r.safe(stack, p["SourceArn"])}}
        fn = str(r.safe(stack, p["FunctionName"]))
        fn_arn = fn if fn.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{fn}"
        add(fn_arn.split(":function:")[0] + ":function:" + fn_arn.split(":function:")[1].split(":")[0],
            f"{stack}/{lid}", {"Statement": [stmt]})

    for stack, _lid, res in r.resources("Custom::S3BucketNotifications"):
        name = str(r.safe(stack, res["Properties"]["BucketName"]))
        for qc in res["Properties"]["NotificationConfiguration"].get("QueueConfigurations", []):
            rules = qc.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            prefix = next((x["Value"] for x in rules if x["Name"].lower() == "prefix"), "")
            if name in buckets:
                buckets[name].notifications.append({"queue": str(r.safe(stack, qc["QueueArn"])), "prefix": prefix})

    function_roles: dict[str, str] = {}
    for stack, lid, res in r.resources("AWS::Lambda::Function"):
        function_roles[r.physical_name(stack, lid)] = str(r.safe(stack, res["Properties"]["Role"]))
    sm_roles = [str(r.safe(s, res["Properties"]["RoleArn"])) for s, _l, res in
                r.resources("AWS::StepFunctions::StateMachine")]
    schedule_roles: dict[str, str] = {}
    for stack, _lid, res in r.resources("AWS::Scheduler::Schedule"):
        target = res["Properties"]["Target"]
        arn = str(r.safe(stack, target["Arn"]))
        schedule_roles[arn] = str(r.safe(stack, target["RoleArn"]))

    state_machines = [str(r.value(s, {"Ref": lid})) for s, lid, _res in
                      r.resources("AWS::StepFunctions::StateMachine")]
    secret_keys: dict[str, str] = {}
    for stack, lid, res in r.resources("AWS::SecretsManager::Secret"):
        k = res.get("Properties", {}).get("KmsKeyId")
        if k is not None:
            secret_keys[r.arn(stack, lid)] = str(r.safe(stack, k))

    documented = {"uploader": uploader_statements(r, buckets, kms_keys)}
    return PolicyModel(account, region, roles, resource_policies, buckets, topic_keys, kms_keys, documented,
                       function_roles, sm_roles[0] if sm_roles else None, schedule_roles, state_machines,
                       secret_keys)


def uploader_statements(r: TemplateResolver, buckets: dict[str, BucketInfo], kms_keys: set[str]) -> list[Statement]:
    """The scientists' upload policy as docs/uploader-policy.json gives it, for this deployment's names."""
    if not UPLOADER_POLICY.is_file():
        return []
    intake = next((b for b in buckets if "-intake-" in b), "")
    intake_key = buckets[intake].kms_key if intake else None
    text = UPLOADER_POLICY.read_text().replace("INTAKE_BUCKET", intake).replace("DATA_KEY_ARN", intake_key or "")
    doc = json.loads(text)
    return [Statement(f"docs/uploader-policy.json#{n}", s) for n, s in enumerate(as_list(doc.get("Statement")))]
