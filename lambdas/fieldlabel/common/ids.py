"""Identifiers that cross a boundary: photo ids (the dedupe key) and batch ids (see docs/contracts.md)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

BATCH_ID_PATTERN = re.compile(r"^b[0-9]{8}t[0-9]{6}z-[0-9a-f]{8}$")
CONTENT_PREFIX = "sha256:"
OBJECT_PREFIX = "obj:"


def content_photo_id(sha256_hex: str) -> str:
    """Photo id in ``content`` dedupe mode: ``sha256:<hex>`` of the object's bytes."""
    return f"{CONTENT_PREFIX}{sha256_hex}"


def object_photo_id(bucket: str, key: str, version_id: str | None) -> str:
    """Photo id in ``object`` dedupe mode: ``obj:<sha256 of bucket/key/version>``.

    An unversioned object uses the empty string as its version, so re-uploads to the same key share one id.
    """
    digest = hashlib.sha256(f"{bucket}/{key}/{version_id or ''}".encode()).hexdigest()
    return f"{OBJECT_PREFIX}{digest}"


def safe_photo_id(photo_id: str) -> str:
    """The photo id as an S3 key segment or file stem: ``sha256:ab..`` -> ``sha256-ab..``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", photo_id)


def new_batch_id(now: datetime, token: str | None = None) -> str:
    """A batch id ``b<YYYYMMDD>t<HHMMSS>z-<8 hex>`` for ``now`` (UTC).

    Args:
        now: timezone-aware time the batch is created.
        token: 8 lowercase hex characters; random when omitted (tests pass one to get a fixed id).

    Raises:
        ValueError: if ``token`` is not 8 lowercase hex characters.
    """
    token = token if token is not None else secrets.token_hex(4)
    batch_id = f"b{now.astimezone(UTC):%Y%m%d}t{now.astimezone(UTC):%H%M%S}z-{token}"
    if not BATCH_ID_PATTERN.match(batch_id):
        raise ValueError(f"invalid batch id token {token!r}")
    return batch_id
