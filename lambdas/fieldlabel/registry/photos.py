"""Photo items: registration upserts, per-upload sidecar components, and the merged ``field`` map.

A photo item (one per distinct content under content dedupe) holds ``exif`` (from the bytes, written once) and
``sources``: one entry per source key the content arrived under, each with that upload's own ``sidecar`` and
``folder_sidecar`` components (``{key, seq, fields, issues}``, ``seq`` being the S3 event sequencer of the sidecar
object). Nothing of one upload's metadata is ever replaced by another upload's. Readers use the merged views:

* ``field``: EXIF, then every source's folder sidecar, then every source's per-photo sidecar (later wins; so a
  per-photo sidecar beats a folder sidecar beats EXIF), and among sources of the same kind the lexicographically
  smallest source key wins. A field to which two uploads' sidecars give different values is listed in
  ``field_conflicts`` (every value stays in ``sources``).
* ``metadata_issues``: EXIF problems, then each sidecar's problems, each prefixed with the sidecar's own key, so an
  issue is always attributed to the file that has it and to no other upload.

Every write that changes ``sources`` rewrites the merged views in the same request under a condition on
``meta_version`` (optimistic concurrency); a lost race re-reads the item and merges again, so concurrent photo and
sidecar events converge on the same item whatever their order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.registry.model import BY_STATUS_INDEX, PENDING, error_code, from_item, to_attr

SLOTS = ("folder_sidecar", "sidecar")
_SLOT_LABEL = {"folder_sidecar": "folder sidecar", "sidecar": "sidecar"}
_MAX_RETRIES = 8

Sources = dict[str, dict[str, "SidecarComponent"]]


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
    # fieldlabel.embedding: float16 bytes and the model id, or why it could not be computed (None and None: not
    # attempted, e.g. a duplicate whose entry already has one).
    embedding: bytes | None = None
    embedding_model: str | None = None
    embedding_issue: str | None = None


@dataclass(frozen=True)
class UpsertResult:
    """Outcome of :func:`upsert_photo`: whether this call created the entry, and the entry's status."""

    created: bool
    status: str


@dataclass(frozen=True)
class MergedMetadata:
    """The reader-facing views of a photo's metadata components."""

    field: dict[str, Any]
    issues: list[str]
    conflicts: list[str]


def merge_sources(exif: dict[str, Any] | None, sources: Sources,
                  embedding_issue: str | None = None) -> MergedMetadata:
    """Merge EXIF and every source key's sidecars into ``field``, ``metadata_issues`` and ``field_conflicts``.

    Precedence (later wins): EXIF < folder sidecars < per-photo sidecars; within one kind the smallest source key
    wins. Issues are listed once per sidecar file, prefixed with that file's key; the embedding problem, if any
    (stored as ``embedding_issue``, so every later merge keeps it), comes last as ``embedding: ...``.
    """
    exif = exif or {}
    base: dict[str, Any] = dict(exif.get("fields") or {})
    merged = dict(base)
    issues: list[str] = [f"exif: {i}" for i in exif.get("issues") or []]
    seen: set[tuple[str, str, str]] = set()
    for slot in SLOTS:
        for src in sorted(sources, reverse=True):  # smallest key applied last, so it wins
            comp = sources[src].get(slot)
            if comp is not None:
                merged.update(comp.fields)
    for src in sorted(sources):
        for slot in SLOTS:
            comp = sources[src].get(slot)
            if comp is None:
                continue
            for issue in comp.issues:
                mark = (comp.key, comp.seq, issue)  # a folder sidecar shared by two uploads is reported once
                if mark not in seen:
                    seen.add(mark)
                    issues.append(f"{_SLOT_LABEL[slot]} {comp.key}: {issue}")
    # A conflict: two uploads' sidecars give a field different values (a field only one upload sets is no conflict).
    values: dict[str, set[str]] = {}
    for src in sources:
        own: dict[str, Any] = {}
        for slot in SLOTS:
            comp = sources[src].get(slot)
            if comp is not None:
                own.update(comp.fields)
        for name, value in own.items():
            values.setdefault(name, set()).add(repr(value))
    conflicts = sorted(name for name, distinct in values.items() if len(distinct) > 1)
    if embedding_issue:
        issues.append(f"embedding: {embedding_issue}")
    return MergedMetadata(merged, issues, conflicts)


def merge_field(
    exif: dict[str, Any] | None, folder: SidecarComponent | None, sidecar: SidecarComponent | None
) -> tuple[dict[str, Any], list[str]]:
    """The merged ``field`` and ``metadata_issues`` of a single upload (per-photo sidecar > folder sidecar > EXIF)."""
    comps = {slot: c for slot, c in (("folder_sidecar", folder), ("sidecar", sidecar)) if c is not None}
    m = merge_sources(exif, {"": comps})
    return m.field, m.issues


def sources_of(item: dict[str, Any]) -> Sources:
    """The per-source components stored on a photo item.

    Items written before per-source metadata kept one ``sidecar`` and one ``folder_sidecar`` for the whole item; those
    are attributed to the first upload (``original.key``), the only attribution the old item supports.
    """
    out: Sources = {}
    raw = item.get("sources")
    if isinstance(raw, dict):
        for src, slots in raw.items():
            comps = {s: SidecarComponent.from_value(slots.get(s)) for s in SLOTS} if isinstance(slots, dict) else {}
            out[src] = {s: c for s, c in comps.items() if c is not None}
        return out
    legacy = {s: SidecarComponent.from_value(item.get(s)) for s in SLOTS}
    legacy_comps = {s: c for s, c in legacy.items() if c is not None}
    if legacy_comps:
        original = item.get("original") or {}
        owner = original.get("key") or min(item.get("source_keys") or [""])
        out[str(owner)] = legacy_comps
    return out


def _replaces(stored: SidecarComponent | None, candidate: SidecarComponent) -> bool:
    """Whether ``candidate`` should replace ``stored`` in one source's slot: nothing stored, another sidecar file
    (last applied wins), or a newer version of the same file."""
    return stored is None or stored.key != candidate.key or stored.seq < candidate.seq


def _sources_value(sources: Sources) -> dict[str, Any]:
    return {src: {s: c.to_value() for s, c in slots.items()} for src, slots in sources.items()}


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


def _version_condition(e: _Expr, item: dict[str, Any] | None) -> str:
    """The item is still the one we merged from: same ``meta_version`` (or, for items without one, still none)."""
    if not item:
        return f"attribute_not_exists({e.n('photo_id')})"
    version = item.get("meta_version")
    if version is None:
        return f"attribute_exists({e.n('photo_id')}) AND attribute_not_exists({e.n('meta_version')})"
    return f"{e.n('meta_version')} = {e.v(int(version))}"


def _metadata_sets(e: _Expr, item: dict[str, Any] | None, sources: Sources, exif: dict[str, Any] | None,
                   embedding_issue: str | None) -> list[str]:
    merged = merge_sources(exif, sources, embedding_issue)
    version = int((item or {}).get("meta_version") or 0) + 1
    return [
        f"{e.n('sources')} = {e.v(_sources_value(sources))}",
        f"{e.n('field')} = {e.v(merged.field)}",
        f"{e.n('metadata_issues')} = {e.v(merged.issues)}",
        f"{e.n('field_conflicts')} = {e.v(merged.conflicts)}",
        f"{e.n('meta_version')} = {e.v(version)}",
    ]


def _legacy_remove(e: _Expr, item: dict[str, Any] | None, *extra: str) -> str:
    """The expression's one REMOVE clause: pre-per-source sidecar slots, plus ``extra`` attribute placeholders."""
    legacy = [e.n(s) for s in SLOTS if item and s in item] + list(extra)
    return (" REMOVE " + ", ".join(legacy)) if legacy else ""


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
    stored: dict[str, Any] | None = None,
) -> UpsertResult:
    """Register an object, or add its key to the existing entry with the same photo id. One UpdateItem normally.

    Registration fields are written with ``if_not_exists`` so a redelivered event or a re-upload of identical content
    changes nothing but ``source_keys``, this key's entry in ``sources`` and ``updated_at``. The sidecars seen by the
    caller for *this key* are stored under ``sources[reg.key]`` and folded into the merged views in the same request,
    guarded by ``meta_version``; if the item changed since ``stored`` was read, it is re-read and merged again.

    Args:
        ddb: boto3 DynamoDB client.
        table: photos table name.
        reg: what intake learned about the object.
        sidecar: the per-photo sidecar found for this key, if any.
        folder: the folder sidecar found for this key, if any.
        now_iso: the current time, ISO-8601.
        stored: the item as the caller last read it (None: assumed absent; a wrong guess costs one re-read).

    Returns:
        Whether the entry was created by this call, and the entry's status.

    Raises:
        botocore.exceptions.ClientError: on DynamoDB errors other than a lost race.
        RuntimeError: after repeated lost races.
    """
    exif_value = {"fields": reg.exif_fields, "issues": reg.exif_issues}
    original = {"bucket": reg.bucket, "key": reg.key, "version_id": reg.version_id or "", "etag": reg.etag or "",
                "size": reg.size}
    item = stored
    for _ in range(_MAX_RETRIES):
        sources = sources_of(item or {})
        mine = sources.setdefault(reg.key, {})
        for slot, comp in (("sidecar", sidecar), ("folder_sidecar", folder)):
            if comp is not None and _replaces(mine.get(slot), comp):
                mine[slot] = comp
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
        removes = []
        if reg.embedding is not None and reg.embedding_model is not None:
            # Plain SET: intake computes it only when the entry has none from the current model.
            sets.append(f"{e.n('embedding')} = {e.v(reg.embedding)}")
            sets.append(f"{e.n('embedding_model')} = {e.v(reg.embedding_model)}")
            removes.append(e.n("embedding_issue"))
            embedding_issue = None
        elif reg.embedding_issue is not None:
            sets.append(f"{e.n('embedding_issue')} = {e.v(reg.embedding_issue)}")
            embedding_issue = reg.embedding_issue
        else:  # not attempted (a duplicate that has one, or embedding left to the workflow): keep what is stored
            embedding_issue = (item or {}).get("embedding_issue")
        exif = (item or {}).get("exif") or exif_value  # the stored EXIF wins (it is written once)
        sets += _metadata_sets(e, item, sources, exif, embedding_issue)
        expr = ("SET " + ", ".join(sets) + f" ADD {e.n('source_keys')} {e.v({reg.key})}"
                + _legacy_remove(e, item, *removes))
        try:
            resp = ddb.update_item(
                TableName=table,
                Key={"photo_id": {"S": reg.photo_id}},
                UpdateExpression=expr,
                ConditionExpression=_version_condition(e, item),
                ReturnValues="ALL_OLD",
                **e.kwargs(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = get_photo(ddb, table, reg.photo_id)
            continue
        old = from_item(resp.get("Attributes")) or {}
        if "status" in old:
            return UpsertResult(created=False, status=str(old["status"]))
        return UpsertResult(created=True, status=reg.status)
    raise RuntimeError(f"could not settle sidecar metadata of {reg.photo_id} after {_MAX_RETRIES} attempts")


def apply_sidecar(
    ddb: Any,
    table: str,
    photo_id: str,
    slot: str,
    comp: SidecarComponent,
    now_iso: str,
    *,
    source_keys: Iterable[str] = (),
    applies_to: Callable[[str], bool] | None = None,
) -> bool:
    """Store a sidecar component under each source key of a photo it belongs to, and refresh the merged views.

    The source keys are ``source_keys`` (uploads the caller knows are under the sidecar's stem or folder, possibly
    not registered yet) plus every key of the item's ``source_keys`` for which ``applies_to`` is true. Keys of the
    same content uploaded elsewhere are left alone: their own sidecars (or their lack of one) stay theirs. When the
    photo is not registered yet, only ``sources`` is stored (a stub without ``status``, so it appears in no index);
    registration merges it later. An older sequencer of the same sidecar never replaces a newer one.

    Args:
        ddb: boto3 DynamoDB client.
        table: photos table name.
        photo_id: the entry to update.
        slot: ``"sidecar"`` or ``"folder_sidecar"``.
        comp: the sidecar component.
        now_iso: the current time, ISO-8601.
        source_keys: uploads of this photo known to be under the sidecar.
        applies_to: predicate on a source key: is it under this sidecar's stem (or folder)?

    Returns:
        True when every targeted source now holds ``comp``, False when a newer sidecar is stored for one of them.

    Raises:
        ValueError: on an unknown slot.
        botocore.exceptions.ClientError: on DynamoDB errors other than lost races.
        RuntimeError: after repeated lost races.
    """
    if slot not in SLOTS:
        raise ValueError(f"unknown sidecar slot {slot!r}")
    item = get_photo(ddb, table, photo_id)
    for _ in range(_MAX_RETRIES):
        keys = set(source_keys)
        if applies_to is not None:
            keys |= {k for k in (item or {}).get("source_keys") or set() if applies_to(k)}
        sources = sources_of(item or {})
        changed = False
        for src in sorted(keys):
            current = sources.setdefault(src, {})
            if _replaces(current.get(slot), comp):
                current[slot] = comp
                changed = True
        if not changed:
            return all(sources[k].get(slot) == comp for k in keys)
        e = _Expr()
        registered = bool(item and "exif" in item)
        if registered:
            sets = _metadata_sets(e, item, sources, (item or {}).get("exif"), (item or {}).get("embedding_issue"))
        else:
            version = int((item or {}).get("meta_version") or 0) + 1
            sets = [f"{e.n('sources')} = {e.v(_sources_value(sources))}", f"{e.n('meta_version')} = {e.v(version)}"]
        sets.append(f"{e.n('updated_at')} = {e.v(now_iso)}")
        try:
            ddb.update_item(
                TableName=table,
                Key={"photo_id": {"S": photo_id}},
                UpdateExpression="SET " + ", ".join(sets) + _legacy_remove(e, item),
                ConditionExpression=_version_condition(e, item),
                **e.kwargs(),
            )
            return True
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = get_photo(ddb, table, photo_id)
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
