"""Photo items: registration upserts, sidecar components, and the merged ``field`` map.

A photo item holds three metadata components besides the merged ``field`` map that readers use:
``exif`` (from the bytes, written once), ``folder_sidecar`` and ``sidecar`` (each ``{key, seq, fields, issues}``,
``seq`` being the S3 event sequencer of the sidecar object). ``field`` is always
``exif.fields <- folder_sidecar.fields <- sidecar.fields`` (later wins). Every write that changes a component either
rewrites ``field`` in the same request under a condition that pins the components it merged, or re-reads and
retries, so concurrent photo and sidecar events converge on the same ``field`` whatever their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.registry.model import BY_STATUS_INDEX, PENDING, error_code, from_item, to_attr

SLOTS = ("folder_sidecar", "sidecar")
_MAX_RETRIES = 8


@dataclass(frozen=True)
class SidecarComponent:
    """One sidecar as applied to photos: the sidecar's key, its S3 sequencer, the valid fields and the problems."""

    key: str
    seq: str
    fields: dict[str, Any]
    issues: list[str]

    def to_value(self) -> dict[str, Any]:
        """Plain dict as stored in DynamoDB."""
        return {"key": self.key, "seq": self.seq, "fields": self.fields, "issues": self.issues}

    @classmethod
    def from_value(cls, value: dict[str, Any] | None) -> SidecarComponent | None:
        """Inverse of :meth:`to_value`; None stays None."""
        if not value:
            return None
        return cls(value["key"], value["seq"], dict(value.get("fields") or {}), list(value.get("issues") or []))


@dataclass
class PhotoRegistration:
    """Everything intake learned about one uploaded object, ready to upsert."""

    photo_id: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int
    status: str
    labeling_ref: str | None = None
    media: dict[str, Any] | None = None
    quarantine_reason: str | None = None
    exif_fields: dict[str, Any] = field(default_factory=dict)
    exif_issues: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UpsertResult:
    """Outcome of :func:`upsert_photo`: whether this call created the entry, and the entry's status."""

    created: bool
    status: str


def merge_field(
    exif: dict[str, Any] | None, folder: SidecarComponent | None, sidecar: SidecarComponent | None
) -> tuple[dict[str, Any], list[str]]:
    """The merged ``field`` map and ``metadata_issues`` list (per-photo sidecar > folder sidecar > EXIF)."""
    exif = exif or {}
    merged: dict[str, Any] = dict(exif.get("fields") or {})
    issues: list[str] = [f"exif: {i}" for i in exif.get("issues") or []]
    for label, comp in (("folder sidecar", folder), ("sidecar", sidecar)):
        if comp is not None:
            merged.update(comp.fields)
            issues.extend(f"{label} {comp.key}: {i}" for i in comp.issues)
    return merged, issues


def _newer_or_same(stored: SidecarComponent | None, candidate: SidecarComponent) -> bool:
    """Whether ``candidate`` may replace ``stored``: a different sidecar key (last applied wins) or a sequencer
    at least as new."""
    return stored is None or stored.key != candidate.key or stored.seq <= candidate.seq


class _Expr:
    """Builds an expression with generated placeholders so reserved words (status, key...) never bite."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def n(self, *path: str) -> str:
        parts = []
        for p in path:
            ph = f"#{p}"
            self.names[ph] = p
            parts.append(ph)
        return ".".join(parts)

    def v(self, value: Any) -> str:
        ph = f":v{len(self.values)}"
        self.values[ph] = to_attr(value)
        return ph

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _slot_pinned(e: _Expr, slot: str, comp: SidecarComponent | None) -> str:
    """Condition: the stored slot is exactly ``comp`` (absent when None)."""
    if comp is None:
        return f"attribute_not_exists({e.n(slot)})"
    return f"({e.n(slot, 'key')} = {e.v(comp.key)} AND {e.n(slot, 'seq')} = {e.v(comp.seq)})"


def _slot_not_newer(e: _Expr, slot: str, comp: SidecarComponent | None) -> str:
    """Condition for the optimistic first write: the stored slot is absent, or older/same than ``comp``."""
    if comp is None:
        return f"attribute_not_exists({e.n(slot)})"
    return (
        f"(attribute_not_exists({e.n(slot)}) OR {e.n(slot, 'key')} <> {e.v(comp.key)}"
        f" OR {e.n(slot, 'seq')} <= {e.v(comp.seq)})"
    )


def get_photo(ddb: Any, table: str, photo_id: str) -> dict[str, Any] | None:
    """Read one photo item (strongly consistent) as plain values, or None."""
    resp = ddb.get_item(TableName=table, Key={"photo_id": {"S": photo_id}}, ConsistentRead=True)
    return from_item(resp.get("Item"))


def upsert_photo(
    ddb: Any,
    table: str,
    reg: PhotoRegistration,
    *,
    sidecar: SidecarComponent | None,
    folder: SidecarComponent | None,
    now_iso: str,
) -> UpsertResult:
    """Register an object, or add its key to the existing entry with the same photo id. One UpdateItem normally.

    Registration fields are written with ``if_not_exists`` so a redelivered event or a re-upload of identical content
    changes nothing but ``source_keys`` and ``updated_at``. The sidecars seen by the caller are folded into ``field``
    in the same request, guarded by a condition; if a sidecar event got there first with something the caller did not
    see, the item is re-read and merged (rare; only on races or duplicates under another folder).

    Args:
        ddb: boto3 DynamoDB client.
        table: photos table name.
        reg: what intake learned about the object.
        sidecar: the per-photo sidecar found for this key, if any.
        folder: the folder sidecar found for this key, if any.
        now_iso: the current time, ISO-8601.

    Returns:
        Whether the entry was created by this call, and the entry's status.

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors other than a lost race, or after repeated lost races.
    """
    exif_value = {"fields": reg.exif_fields, "issues": reg.exif_issues}
    original = {"bucket": reg.bucket, "key": reg.key, "version_id": reg.version_id or "", "etag": reg.etag or "",
                "size": reg.size}
    pinned: dict[str, SidecarComponent | None] = {"sidecar": sidecar, "folder_sidecar": folder}
    exact = False
    for _ in range(_MAX_RETRIES):
        e = _Expr()
        sets = [
            f"{e.n('registered_at')} = if_not_exists({e.n('registered_at')}, {e.v(now_iso)})",
            f"{e.n('updated_at')} = {e.v(now_iso)}",
            f"{e.n('original')} = if_not_exists({e.n('original')}, {e.v(original)})",
            f"{e.n('status')} = if_not_exists({e.n('status')}, {e.v(reg.status)})",
            f"{e.n('attempts')} = if_not_exists({e.n('attempts')}, {e.v(0)})",
            f"{e.n('exif')} = if_not_exists({e.n('exif')}, {e.v(exif_value)})",
        ]
        if reg.media is not None:
            sets.append(f"{e.n('media')} = if_not_exists({e.n('media')}, {e.v(reg.media)})")
        if reg.labeling_ref is not None:
            sets.append(f"{e.n('labeling_ref')} = if_not_exists({e.n('labeling_ref')}, {e.v(reg.labeling_ref)})")
        if reg.quarantine_reason is not None:
            sets.append(
                f"{e.n('quarantine_reason')} = if_not_exists({e.n('quarantine_reason')}, {e.v(reg.quarantine_reason)})"
            )
        conds = []
        for slot in SLOTS:
            comp = pinned[slot]
            if comp is not None:
                sets.append(f"{e.n(slot)} = {e.v(comp.to_value())}")
            conds.append(_slot_pinned(e, slot, comp) if exact else _slot_not_newer(e, slot, comp))
        merged, issues = merge_field(exif_value, pinned["folder_sidecar"], pinned["sidecar"])
        sets.append(f"{e.n('field')} = {e.v(merged)}")
        sets.append(f"{e.n('metadata_issues')} = {e.v(issues)}")
        expr = "SET " + ", ".join(sets) + f" ADD {e.n('source_keys')} {e.v({reg.key})}"
        try:
            resp = ddb.update_item(
                TableName=table,
                Key={"photo_id": {"S": reg.photo_id}},
                UpdateExpression=expr,
                ConditionExpression=" AND ".join(conds),
                ReturnValues="ALL_OLD",
                **e.kwargs(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            stored = get_photo(ddb, table, reg.photo_id) or {}
            for slot in SLOTS:
                mine = pinned[slot]
                theirs = SidecarComponent.from_value(stored.get(slot))
                if mine is None or (theirs is not None and not _newer_or_same(theirs, mine)):
                    pinned[slot] = theirs
            exact = True
            continue
        old = from_item(resp.get("Attributes")) or {}
        if "status" in old:
            return UpsertResult(created=False, status=str(old["status"]))
        return UpsertResult(created=True, status=reg.status)
    raise RuntimeError(f"could not settle sidecar metadata of {reg.photo_id} after {_MAX_RETRIES} attempts")


def apply_sidecar(ddb: Any, table: str, photo_id: str, slot: str, comp: SidecarComponent, now_iso: str) -> bool:
    """Store a sidecar component on a photo entry and refresh its merged ``field``; safe to repeat.

    When the photo is not registered yet, only the component is stored (a stub without ``status``, so it appears in no
    index); registration merges it later. An older sequencer of the same sidecar never replaces a newer one.

    Args:
        ddb: boto3 DynamoDB client.
        table: photos table name.
        photo_id: the entry to update.
        slot: ``"sidecar"`` or ``"folder_sidecar"``.
        comp: the sidecar component.
        now_iso: the current time, ISO-8601.

    Returns:
        True when ``field`` now reflects ``comp`` (or the photo is a stub), False when a newer sidecar is stored.

    Raises:
        ValueError: on an unknown slot.
        botocore.exceptions.ClientError: on DynamoDB errors other than lost races.
    """
    if slot not in SLOTS:
        raise ValueError(f"unknown sidecar slot {slot!r}")
    e = _Expr()
    try:
        resp = ddb.update_item(
            TableName=table,
            Key={"photo_id": {"S": photo_id}},
            UpdateExpression=f"SET {e.n(slot)} = {e.v(comp.to_value())}, {e.n('updated_at')} = {e.v(now_iso)}",
            ConditionExpression=(
                f"attribute_not_exists({e.n(slot)}) OR {e.n(slot, 'key')} <> {e.v(comp.key)}"
                f" OR {e.n(slot, 'seq')} < {e.v(comp.seq)}"
            ),
            ReturnValues="ALL_NEW",
            **e.kwargs(),
        )
        item = from_item(resp["Attributes"]) or {}
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        item = get_photo(ddb, table, photo_id) or {}
    for _ in range(_MAX_RETRIES):
        stored = {s: SidecarComponent.from_value(item.get(s)) for s in SLOTS}
        if "exif" not in item:
            return True
        merged, issues = merge_field(item.get("exif"), stored["folder_sidecar"], stored["sidecar"])
        if item.get("field") == merged and list(item.get("metadata_issues") or []) == issues:
            return stored[slot] == comp
        e = _Expr()
        conds = [f"attribute_exists({e.n('exif')})"] + [_slot_pinned(e, s, stored[s]) for s in SLOTS]
        try:
            ddb.update_item(
                TableName=table,
                Key={"photo_id": {"S": photo_id}},
                UpdateExpression=f"SET {e.n('field')} = {e.v(merged)}, {e.n('metadata_issues')} = {e.v(issues)}",
                ConditionExpression=" AND ".join(conds),
                **e.kwargs(),
            )
            return stored[slot] == comp
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = get_photo(ddb, table, photo_id) or {}
    raise RuntimeError(f"could not settle sidecar metadata of {photo_id} after {_MAX_RETRIES} attempts")


def is_pending_status(status: str) -> bool:
    """Whether a status counts towards the pending pool."""
    return status == PENDING


def count_status(ddb: Any, photos_table: str, status: str) -> int:
    """Photos with ``status``: a paginated ``Select=COUNT`` query on the keys-only ``by_status`` index."""
    count = 0
    kwargs: dict[str, Any] = {
        "TableName": photos_table, "IndexName": BY_STATUS_INDEX, "Select": "COUNT",
        "KeyConditionExpression": "#s = :s", "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": status}},
    }
    while True:
        resp = ddb.query(**kwargs)
        count += int(resp.get("Count", 0))
        if "LastEvaluatedKey" not in resp:
            return count
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
