"""cdk-nag 3 acknowledgments, always on the narrowest construct and always with the reason.

cdk-nag 3 is a CDK Validations plugin: findings are acknowledged with exact ids (no prefix or regex matching), e.g.
``AwsSolutions-IAM5[Action::s3:List*]``. Registering the pack happens once, in ``app.py``.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

BASIC_EXECUTION_POLICY = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


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
