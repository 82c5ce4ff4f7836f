"""Scanner acknowledgments: cdk-nag's and checkov's, always on the narrowest construct and always with the reason.

cdk-nag 3 is a CDK Validations plugin: findings are acknowledged with exact ids (no prefix or regex matching), e.g.
``AwsSolutions-IAM5[Action::s3:List*]``. Registering the packs happens once, in :func:`add_nag_packs` (``app.py``
and the infrastructure tests). checkov reads ``cdk.out``; a check is skipped in the resource's template metadata
(:func:`checkov_skip`), which is where checkov looks for ``checkov: skip:`` entries.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def add_nag_packs(app: App) -> None:
    """Run cdk-nag's AwsSolutions and Serverless packs when ``app`` synthesizes; a finding fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def ack(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and its children) with a specific reason."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgment of {rule_id} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def arn_token(construct: IConstruct, attr: str = "Arn") -> str:
    """The ``<LogicalId.Attr>`` token cdk-nag prints for a same-stack reference to ``construct``'s resource."""
    stack = Stack.of(construct)
    child = construct.node.default_child or construct
    return f"<{stack.resolve(stack.get_logical_id(child))}.{attr}>"  # type: ignore[arg-type]


def ack_wildcards(scope: IConstruct, resources: list[str], reason: str) -> None:
    """Acknowledge ``AwsSolutions-IAM5`` for each wildcard resource, exactly as cdk-nag renders it."""
    for resource in resources:
        ack(scope, f"AwsSolutions-IAM5[Resource::{resource}]", reason)


def checkov_skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip checkov's ``check_id`` on ``construct``'s CloudFormation resource, with the reason, in its metadata."""
    if len(reason) < 20:
        raise ValueError(f"checkov skip of {check_id} needs a real reason, got {reason!r}")
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to carry a checkov skip")
    entry = resource.get_metadata("checkov") or {}
    skips = [s for s in entry.get("skip", []) if s["id"] != check_id]
    resource.add_metadata("checkov", {"skip": [*skips, {"id": check_id, "comment": reason}]})


def checkov_skip_deploy_time_function(function: IConstruct) -> None:
    """Skip checkov's run-time Lambda checks on a CDK framework function that runs only during deployments."""
    for check_id, reason in (
        ("CKV_AWS_115", "A CDK framework function that runs only while CloudFormation deploys; reserving "
                        "concurrency for it would only take capacity from the account."),
        ("CKV_AWS_116", "Called by CloudFormation during a deployment, which reports its failure and rolls back; "
                        "there is no asynchronous event to keep."),
        ("CKV_AWS_117", "Calls only AWS APIs during deployments; a VPC would add NAT gateways or endpoints for "
                        "nothing."),
        ("CKV_AWS_173", "Its environment names its handler function, no secrets; Lambda encrypts it at rest."),
    ):
        checkov_skip(function, check_id, reason)
