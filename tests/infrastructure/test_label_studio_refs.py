"""What a pipeline function gets from LabelStudioRefs.grant_secret_read: the secrets and their key, nothing more."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from stacks.label_studio_refs import LabelStudioRefs
from stacks.label_studio_stack import encrypted_secret

KEY_ARN = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-4000-8000-000000000001"


def _stack_with_refs() -> tuple[cdk.Stack, LabelStudioRefs, iam.Role]:
    app = cdk.App()
    stack = cdk.Stack(app, "Refs", env=cdk.Environment(account="111111111111", region="us-east-1"))
    key = kms.Key.from_key_arn(stack, "Key", KEY_ARN)
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    secrets = [encrypted_secret(stack, name, key=key, description=name, length=40,
                                rotation_reason="not rotated in this test of the grant")
               for name in ("Token", "Webhook")]
    refs = LabelStudioRefs(
        vpc=vpc, lambda_security_group=ec2.SecurityGroup(stack, "Sg", vpc=vpc),
        lambda_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        api_url="https://labels.example.org", token_secret=secrets[0], webhook_secret=secrets[1], secrets_key=key,
    )
    role = iam.Role(stack, "Fn", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    return stack, refs, role


def _statements(template: Template) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    return [st for p in policies.values() for st in p["Properties"]["PolicyDocument"]["Statement"]]


def test_grant_secret_read_gives_both_secrets_and_decrypt_only_through_secrets_manager() -> None:
    stack, refs, role = _stack_with_refs()
    refs.grant_secret_read(role)
    template = Template.from_stack(stack)
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    assert len(secrets) == 2
    for secret in secrets.values():
        assert secret["Properties"]["KmsKeyId"] == KEY_ARN
    statements = _statements(template)
    read = next(st for st in statements if "secretsmanager:GetSecretValue" in st["Action"])
    assert sorted(read["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert sorted(r["Ref"] for r in read["Resource"]) == sorted(secrets)
    decrypt = next(st for st in statements if st["Action"] == "kms:Decrypt")
    assert decrypt["Resource"] == KEY_ARN
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert len(statements) == 2


def test_grant_secret_read_of_one_secret_names_only_that_one() -> None:
    stack, refs, role = _stack_with_refs()
    refs.grant_secret_read(role, refs.webhook_secret)
    read = next(st for st in _statements(Template.from_stack(stack))
                if "secretsmanager:GetSecretValue" in st["Action"])
    resources = read["Resource"] if isinstance(read["Resource"], list) else [read["Resource"]]
    assert len(resources) == 1 and "Webhook" in resources[0]["Ref"]
