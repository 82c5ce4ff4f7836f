"""Registry vocabulary: statuses, control-item keys, and DynamoDB (de)serialisation of plain Python values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

# Photo statuses (docs/contracts.md, photos table).
PENDING = "PENDING"
BATCHED = "BATCHED"
LABELED = "LABELED"
QUARANTINED = "QUARANTINED"
PARKED = "PARKED"
# Released after a failed labeling attempt and waiting out its back-off (``due_at``) before it is PENDING again.
BACKOFF = "BACKOFF"

# Batch statuses (docs/contracts.md, batches table).
CLAIMING = "CLAIMING"
STARTED = "STARTED"
FAILED = "FAILED"
PUBLISHED = "PUBLISHED"
# A batch whose job finished (its labels are paid for) but whose later step failed: held for an operator, whose
# ``fieldlabel resume`` restarts the workflow at ``parked_step``. The photo status PARKED has the same spelling but
# lives in the other table (photos out of attempts).
BATCH_PARKED = "PARKED"

KIND_AUTOMATED = "automated"
KIND_HUMAN_ONLY = "human_only"

# Control items live in the batches table; their keys start with '#' so batch listings can skip them.
PENDING_COUNTER_KEY = "#pending-counter"
DISPATCH_LEASE_KEY = "#dispatch-lease"
STEM_PREFIX = "#sidecar-stem#"
FOLDER_PREFIX = "#sidecar-folder#"

BY_STATUS_INDEX = "by_status"
BY_BATCH_INDEX = "by_batch"
# Sparse index (partition ``status``, sort ``due_at``): only photos backing off carry ``due_at``.
BY_DUE_INDEX = "by_due"

# Quarantine reason of a claimed photo that has nothing a labeling job could show (no ``labeling_ref``).
NO_LABELING_COPY = "no_labeling_copy"

_SER = TypeSerializer()
_DESER = TypeDeserializer()


def _to_dynamo_safe(value: Any) -> Any:
    """Floats become Decimals (DynamoDB numbers); empty sets are dropped by the caller."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo_safe(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Binary):  # B attributes (the photo's embedding) read back as plain bytes
        return bytes(value.value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def to_attr(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (``{"S": ...}``, ``{"M": ...}``...)."""
    return _SER.serialize(_to_dynamo_safe(value))


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A dict of Python values as a DynamoDB item (None values are left out)."""
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A DynamoDB item as plain Python values (integral numbers as int, others as float, binary as bytes)."""
    if item is None:
        return None
    return {k: _from_dynamo(_DESER.deserialize(v)) for k, v in item.items()}


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
