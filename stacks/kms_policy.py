"""Key policies that delegate to IAM with explicit actions instead of CDK's default ``kms:*`` for the account."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

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
