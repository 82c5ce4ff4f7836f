"""Key policies that delegate to IAM with explicit actions instead of CDK's default ``kms:*`` for the account."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

# Every KMS action that applies to one symmetric encryption key (the Service Authorization Reference's list for
# the "key" resource type). The account root gets these so IAM policies can delegate them; listing them, rather
# than ``kms:*``, keeps the project's no-wildcard-action rule without locking anyone out: PutKeyPolicy is included.
SYMMETRIC_KEY_ACTIONS = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:ListRetirableGrants",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]


def account_key_policy() -> iam.PolicyDocument:
    """A key policy whose one statement lets this account's IAM policies grant use and administration of the key."""
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="DelegateToAccountIam",
                principals=[iam.AccountRootPrincipal()],
                actions=SYMMETRIC_KEY_ACTIONS,
                resources=["*"],  # in a key policy "*" means this key
            )
        ]
    )


# What CloudWatch Logs does with the key of an encrypted log group (the CloudWatch Logs user guide's key policy,
# with its wildcard actions written out).
LOGS_KEY_ACTIONS = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
]


def allow_cloudwatch_logs(key: kms.Key) -> None:
    """Let CloudWatch Logs encrypt this account's log groups in the key's region with ``key``, and nothing else.

    The encryption-context condition limits the key to log groups of this account and region; the log groups are
    named by CloudFormation, so the condition names no single group.
    """
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsEncryptsThisAccountsLogGroups",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=LOGS_KEY_ACTIONS,
            resources=["*"],  # in a key policy "*" means this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs", resource="log-group", resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
