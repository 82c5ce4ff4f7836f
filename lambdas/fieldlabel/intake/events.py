"""S3 object-created notifications as they arrive in SQS message bodies."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from urllib.parse import unquote_plus

UPLOADS_PREFIX = "uploads/"
FOLDER_SIDECAR_NAME = "_folder.json"
SIDECAR_SUFFIX = ".json"
SEQUENCER_WIDTH = 32


@dataclass(frozen=True)
class ObjectEvent:
    """One ``ObjectCreated:*`` record, key already URL-decoded."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str
    event_name: str

    @property
    def is_sidecar(self) -> bool:
        """Sidecar JSON (per-photo ``<stem>.json`` or ``_folder.json``) rather than a photo."""
        return self.key.lower().endswith(SIDECAR_SUFFIX)

    @property
    def is_folder_sidecar(self) -> bool:
        """The per-folder sidecar ``_folder.json``."""
        return posixpath.basename(self.key) == FOLDER_SIDECAR_NAME


def normalise_sequencer(sequencer: str | None) -> str:
    """S3 sequencers are hex strings of varying length; left-pad to a fixed width so string order is numeric order."""
    return (sequencer or "").upper().rjust(SEQUENCER_WIDTH, "0")


def stem_of(key: str) -> str:
    """The key without its extension: ``uploads/a/IMG_1.HEIC`` -> ``uploads/a/IMG_1`` (sidecars share the stem)."""
    base = posixpath.basename(key)
    root, dot, _ext = base.rpartition(".")
    stem = root if dot and root else base
    return posixpath.join(posixpath.dirname(key), stem)


def folder_of(key: str) -> str:
    """The folder prefix of a key, ending in ``/``: ``uploads/a/IMG_1.jpg`` -> ``uploads/a/``."""
    return posixpath.dirname(key) + "/"


def parse_message_body(body: str) -> list[ObjectEvent]:
    """The object-created records of one SQS message body; ``[]`` for S3's ``s3:TestEvent``.

    Keys arrive URL-encoded (spaces as ``+``, non-ASCII as ``%XX``), so they are decoded with ``unquote_plus``.
    Records that are not ``ObjectCreated:*`` and keys outside ``uploads/`` (including folder markers) are dropped,
    so a mis-scoped notification can never loop on the labeling copies intake writes itself.

    Raises:
        ValueError: when the body is not JSON or not an S3 notification.
    """
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"SQS body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError("SQS body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return []
    records = payload.get("Records")
    if not isinstance(records, list):
        raise ValueError("SQS body is not an S3 event notification (no Records)")
    events: list[ObjectEvent] = []
    for record in records:
        name = str(record.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        obj = s3["object"]
        key = unquote_plus(obj["key"])
        if not key.startswith(UPLOADS_PREFIX) or key.endswith("/"):
            continue
        size = obj.get("size")
        events.append(
            ObjectEvent(
                bucket=s3["bucket"]["name"],
                key=key,
                size=int(size) if size is not None else None,
                etag=obj.get("eTag"),
                version_id=obj.get("versionId") or None,
                sequencer=normalise_sequencer(obj.get("sequencer")),
                event_name=name,
            )
        )
    return events
