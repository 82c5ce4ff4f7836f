"""What the pipeline's Label Studio functions need from the Label Studio deployment (labeling.backend 'label_studio').

The deployment (VPC, Fargate service, load balancers, database, secrets) is built by the Label Studio stack; the
pipeline stack receives this and gives its Label Studio functions the network placement and secrets below.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager


@dataclass(frozen=True)
class LabelStudioRefs:
    """Network placement and secrets of the functions that call Label Studio's API."""

    vpc: ec2.IVpc
    # The security group those functions get; the service admits it on the API endpoint.
    lambda_security_group: ec2.ISecurityGroup
    lambda_subnets: ec2.SubnetSelection
    # What a function inside the VPC calls (no trailing slash), e.g. https://labels.example.org.
    api_url: str
    # The admin's API token (the one the container is bootstrapped with) and the webhooks' shared secret.
    token_secret: secretsmanager.ISecret
    webhook_secret: secretsmanager.ISecret
    # The key both secrets are encrypted with (the project's data key).
    secrets_key: kms.IKey | None = None

    def grant_secret_read(self, grantee: iam.IGrantable, *secrets: secretsmanager.ISecret) -> None:
        """Let ``grantee`` read ``secrets`` (default: the token and the webhook secret), key included.

        Use this rather than ``secret.grant_read``: the data key lives in the storage stack, and CDK's grant on a key
        of another stack can write the grantee into neither policy (the key policy would be a cross-stack cycle), so
        ``grant_read`` gives ``secretsmanager:GetSecretValue`` without the ``kms:Decrypt`` it needs.
        """
        chosen = secrets or (self.token_secret, self.webhook_secret)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[s.secret_arn for s in chosen],
        ))
        if self.secrets_key is not None:
            grant_decrypt_via_secrets_manager(grantee, self.secrets_key)


def grant_decrypt_via_secrets_manager(grantee: iam.IGrantable, key: kms.IKey) -> None:
    """``kms:Decrypt`` on ``key``, only when Secrets Manager asks for it on the grantee's behalf."""
    region = Stack.of(key).region
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["kms:Decrypt"], resources=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
    ))
