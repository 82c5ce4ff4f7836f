"""Table definitions of the registry exactly as docs/contracts.md describes them, for tests and the offline demo.

The CDK stack defines the same tables; this helper exists so that moto-based tests and the demo build identical ones.
"""

from __future__ import annotations

from typing import Any


def create_registry_tables(dynamodb_client: Any, photos_table: str, batches_table: str) -> None:
    """Create the photos table (GSIs ``by_status``, ``by_batch``, sparse ``by_due``) and the batches table, on demand.

    Args:
        dynamodb_client: a boto3 DynamoDB client (moto in tests).
        photos_table: name of the photos table to create.
        batches_table: name of the batches table to create.
    """
    dynamodb_client.create_table(
        TableName=photos_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "photo_id", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "registered_at", "AttributeType": "S"},
            {"AttributeName": "batch_id", "AttributeType": "S"},
            {"AttributeName": "due_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "photo_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "registered_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "by_batch",
                "KeySchema": [
                    {"AttributeName": "batch_id", "KeyType": "HASH"},
                    {"AttributeName": "photo_id", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "by_due",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "due_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    dynamodb_client.create_table(
        TableName=batches_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "batch_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"}],
    )
