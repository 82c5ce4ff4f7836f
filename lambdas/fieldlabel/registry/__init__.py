"""The photo and batch registry (DynamoDB), shapes per docs/contracts.md."""

from fieldlabel.registry.model import (
    BATCHED,
    CLAIMING,
    FAILED,
    KIND_AUTOMATED,
    KIND_HUMAN_ONLY,
    LABELED,
    PARKED,
    PENDING,
    QUARANTINED,
    STARTED,
)
from fieldlabel.registry.tables import create_registry_tables

__all__ = [
    "BATCHED",
    "CLAIMING",
    "FAILED",
    "KIND_AUTOMATED",
    "KIND_HUMAN_ONLY",
    "LABELED",
    "PARKED",
    "PENDING",
    "QUARANTINED",
    "STARTED",
    "create_registry_tables",
]
