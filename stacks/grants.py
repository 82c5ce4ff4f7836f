"""Least-privilege IAM statements with explicit actions.

CDK's ``grant_*`` helpers emit wildcard actions (``s3:GetObject*``, ``s3:List*``, ``kms:GenerateDataKey*``,
``kms:ReEncrypt*``). This project allows no wildcard action, so every grant is spelled out here, once.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

S3_READ = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"]
S3_WRITE = ["s3:PutObject", "s3:AbortMultipartUpload"]
S3_TAG = ["s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"]
KMS_DECRYPT = ["kms:Decrypt", "kms:DescribeKey"]
KMS_ENCRYPT_DECRYPT = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
DDB_READ = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
DDB_WRITE = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
]


def _objects(bucket: s3.IBucket, prefixes: Iterable[str]) -> list[str]:
    return [bucket.arn_for_objects(f"{p}*") for p in prefixes]


def list_prefix_condition(prefixes: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """``s3:ListBucket`` limited to listings under ``prefixes``.

    ``IfExists``: S3 also checks ``s3:ListBucket`` on a Get/Head of a key that does not exist (404 with it, 403
    without), and that check is not a listing request, so it need not carry ``s3:prefix``; a real listing always
    does (``""`` when no prefix is given, which this refuses). docs/decisions.md, "Executed IAM".
    """
    return {"StringLikeIfExists": {"s3:prefix": [f"{p}*" for p in prefixes]}}


def s3_read(
    grantee: iam.IGrantable,
    bucket: s3.IBucket,
    *prefixes: str,
    list_bucket: bool = False,
    list_whole_bucket: bool = False,
) -> None:
    """Let ``grantee`` read objects under ``prefixes`` (all objects when none given).

    ``list_bucket`` adds ``s3:ListBucket`` limited to those prefixes (which also makes S3 answer 404, not 403, for
    a missing key there); ``list_whole_bucket`` adds it for the whole bucket with ``s3:GetBucketLocation``, for a
    service role whose listings are not ours to predict (Ground Truth's execution role, as AWS documents it).
    """
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=S3_READ, resources=_objects(bucket, prefixes or ("",)))
    )
    if list_whole_bucket:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket", "s3:GetBucketLocation"], resources=[bucket.bucket_arn])
        )
    elif list_bucket:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions=list_prefix_condition(prefixes) if prefixes else None,
            )
        )


def s3_write(grantee: iam.IGrantable, bucket: s3.IBucket, *prefixes: str) -> None:
    """Let ``grantee`` write objects under ``prefixes`` (never delete: originals and datasets are kept)."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=S3_WRITE, resources=_objects(bucket, prefixes or ("",)))
    )


def s3_tag(grantee: iam.IGrantable, bucket: s3.IBucket, *prefixes: str) -> None:
    """Let ``grantee`` tag objects under ``prefixes`` (quarantine marks originals with tags, it never moves them)."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=S3_TAG, resources=_objects(bucket, prefixes or ("",)))
    )


def kms_use(grantee: iam.IGrantable, key: kms.IKey, *, encrypt: bool = True) -> None:
    """Let ``grantee`` decrypt (and, with ``encrypt``, encrypt) data under ``key``."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=KMS_ENCRYPT_DECRYPT if encrypt else KMS_DECRYPT, resources=[key.key_arn])
    )


def ddb(
    grantee: iam.IGrantable,
    table: dynamodb.ITableV2 | dynamodb.ITable,
    *,
    write: bool = False,
    indexes: bool = True,
    scan: bool = False,
) -> None:
    """Let ``grantee`` read (and, with ``write``, write; with ``scan``, scan) ``table`` and its indexes."""
    resources = [table.table_arn] + ([f"{table.table_arn}/index/*"] if indexes else [])
    actions = DDB_READ + (DDB_WRITE if write else []) + (["dynamodb:Scan"] if scan else [])
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources))
    # A table under a customer-managed key is read and written with the caller's own KMS permissions.
    if table.encryption_key is not None:
        kms_use(grantee, table.encryption_key, encrypt=write)
