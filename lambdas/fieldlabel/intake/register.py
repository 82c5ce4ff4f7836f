"""Register uploads: one pass over an SQS batch of S3 notifications, with per-message failure isolation.

Requests per photo (common case): GetObject, PutObject of the labeling copy when one is needed, one UpdateItem (which
also stores the photo's image embedding); plus, per SQS batch, one TransactWriteItems (sidecar stems), one
BatchGetItem (sidecars and known photos) and one UpdateItem of the pending counter. See docs/intake.md for the sidecar
handshake that makes arrival order irrelevant.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image

from fieldlabel.common.clock import iso
from fieldlabel.common.ids import content_photo_id, object_photo_id, safe_photo_id
from fieldlabel.common.s3uri import s3_uri
from fieldlabel.embedding import Embedder, encode_embedding, open_image
from fieldlabel.embedding.preprocess import shrink
from fieldlabel.embedding.spec import max_resolution
from fieldlabel.intake.events import ObjectEvent, folder_of, parse_message_body, stem_of
from fieldlabel.intake.exif import read_exif
from fieldlabel.intake.media import (
    EMPTY,
    TOO_LARGE_BYTES,
    Quarantine,
    inspect_image,
    make_labeling_copy,
)
from fieldlabel.intake.settings import RegisterSettings
from fieldlabel.intake.sidecar import MAX_SIDECAR_BYTES, parse_sidecar
from fieldlabel.registry.control import (
    add_pending,
    batch_get,
    folder_item_key,
    photo_sources_of,
    put_sidecar,
    register_stems,
    stem_item_key,
)
from fieldlabel.registry.model import PENDING, QUARANTINED, error_code
from fieldlabel.registry.photos import PhotoRegistration, SidecarComponent, apply_sidecar, upsert_photo

LABELING_COPY_PREFIX = "labeling-copies/"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class SqsMessage:
    """The parts of an SQS record intake uses."""

    message_id: str
    body: str


@dataclass
class RegisterReport:
    """What one SQS batch did: failed message ids (to retry) and the counts behind the metrics."""

    failures: dict[str, str] = field(default_factory=dict)
    registered: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    copies_made: int = 0
    embedded: int = 0
    embedding_failures: int = 0
    sidecars: int = 0
    skipped: int = 0
    pending_after: int | None = None
    dispatch_invoked: bool = False
    counter_error: str | None = None


@dataclass
class _Prepared:
    message_id: str
    event: ObjectEvent
    reg: PhotoRegistration
    copy: bytes | None = None
    copy_key: str | None = None
    # The labeling image decoded for embedding (small: at most twice the model's resolution), or why it could not be.
    embed_image: Image.Image | None = None
    embed_issue: str | None = None


def _embedding_input(data: bytes) -> tuple[Image.Image | None, str | None]:
    """The image the workflow would embed from ``labeling_ref``'s bytes (decoded at a reduced scale, oriented, RGB,
    shrunk), so intake's embedding equals a later recomputation; or the reason it cannot be decoded."""
    try:
        largest = max_resolution()  # kept at twice the largest model input until it is embedded
        return shrink(open_image(data, max_resolution=largest), largest), None
    except Exception as exc:  # noqa: BLE001 - a photo that cannot be embedded is still registered
        return None, f"{type(exc).__name__}: {exc}"


def _photo_id(settings: RegisterSettings, ev: ObjectEvent, sha256_hex: str | None) -> str:
    if settings.dedupe_mode == "object" or sha256_hex is None:
        return object_photo_id(ev.bucket, ev.key, ev.version_id)
    return content_photo_id(sha256_hex)


def _quarantined(settings: RegisterSettings, ev: ObjectEvent, sha: str | None, size: int, reason: str,
                 media: dict[str, Any] | None = None) -> PhotoRegistration:
    return PhotoRegistration(
        photo_id=_photo_id(settings, ev, sha), bucket=ev.bucket, key=ev.key, version_id=ev.version_id,
        etag=ev.etag, size=size, status=QUARANTINED, quarantine_reason=reason, media=media,
    )


def prepare_photo(s3: Any, settings: RegisterSettings, message_id: str, ev: ObjectEvent, *,
                  embed: bool = False) -> _Prepared | None:
    """Read and judge one uploaded object; None when the object no longer exists (nothing to register).

    With ``embed``, a usable photo also carries the small image its embedding is computed from: the labeling copy's
    bytes when one was made, the original's otherwise (what ``labeling_ref`` points to).

    Objects that are too large are judged from the event's size (or GetObject's Content-Length) without reading them;
    their photo id is the object identity because hashing them would mean downloading them.
    """
    if ev.size is not None and ev.size > settings.max_photo_bytes:
        return _Prepared(message_id, ev, _quarantined(settings, ev, None, ev.size, TOO_LARGE_BYTES))
    if ev.size == 0:
        return _Prepared(message_id, ev, _quarantined(settings, ev, _EMPTY_SHA256, 0, EMPTY))
    kwargs: dict[str, Any] = {"Bucket": ev.bucket, "Key": ev.key}
    if ev.version_id:
        kwargs["VersionId"] = ev.version_id
    try:
        resp = s3.get_object(**kwargs)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
            return None
        raise
    length = int(resp.get("ContentLength", 0))
    if length > settings.max_photo_bytes:
        resp["Body"].close()
        return _Prepared(message_id, ev, _quarantined(settings, ev, None, length, TOO_LARGE_BYTES))
    data = resp["Body"].read()
    sha = hashlib.sha256(data).hexdigest()
    etag = ev.etag or str(resp.get("ETag", "")).strip('"') or None
    ev_version = ev.version_id or resp.get("VersionId")
    if ev_version and ev_version != "null" and not ev.version_id:
        ev = ObjectEvent(ev.bucket, ev.key, ev.size, etag, ev_version, ev.sequencer, ev.event_name)
    try:
        inspection = inspect_image(data, max_pixels=settings.max_pixels)
    except Quarantine as q:
        return _Prepared(message_id, ev, _quarantined(settings, ev, sha, len(data), q.reason))
    exif_fields, exif_issues = read_exif(inspection.image)
    photo_id = _photo_id(settings, ev, sha)
    copy: bytes | None = None
    copy_key: str | None = None
    if inspection.needs_copy:
        copy = make_labeling_copy(inspection)
        copy_key = f"{LABELING_COPY_PREFIX}{safe_photo_id(photo_id)}.jpg"
        ref = s3_uri(settings.intake_bucket, copy_key)
    else:
        ref = s3_uri(ev.bucket, ev.key)
    reg = PhotoRegistration(
        photo_id=photo_id, bucket=ev.bucket, key=ev.key, version_id=ev.version_id, etag=etag, size=len(data),
        status=PENDING, labeling_ref=ref, media=inspection.media(copy_made=copy is not None),
        exif_fields=exif_fields, exif_issues=exif_issues,
    )
    inspection.image.close()
    prepared = _Prepared(message_id, ev, reg, copy, copy_key)
    if embed:
        prepared.embed_image, prepared.embed_issue = _embedding_input(copy if copy is not None else data)
    return prepared


def attach_embeddings(todo: list[_Prepared], known: dict[str, dict[str, Any]],
                      embedder: Callable[[], Embedder], report: RegisterReport) -> None:
    """Set each usable photo's embedding (or the reason it has none) on its registration, before its one write.

    A photo whose entry already holds an embedding of the current model (a duplicate) is not embedded again. The
    photos are embedded together; if that fails they are embedded one by one so one bad image cannot cost the others
    theirs. No failure here stops a registration: the reason goes to ``embedding_issue`` / ``metadata_issues`` and
    the workflow embeds the photo from ``labeling_ref`` later.
    """
    if not todo:
        return

    def fail(p: _Prepared, reason: str) -> None:
        p.reg.embedding_issue = reason
        report.embedding_failures += 1

    try:
        model = embedder()
    except Exception as exc:  # noqa: BLE001 - e.g. the models layer is missing: register anyway
        for p in todo:
            fail(p, f"model unavailable: {type(exc).__name__}: {exc}")
        return
    need: list[tuple[_Prepared, Image.Image]] = []
    for p in todo:
        stored = known.get(p.reg.photo_id) or {}
        if stored.get("embedding") and stored.get("embedding_model") == model.model_id:
            continue
        if p.embed_image is None:
            fail(p, p.embed_issue or "no image to embed")
        else:
            need.append((p, p.embed_image))
    results: list[tuple[_Prepared, Any]] = []
    try:
        results = list(zip([p for p, _ in need], model.embed_images([img for _, img in need]), strict=True))
    except Exception:  # noqa: BLE001 - isolate the photo that broke the joint call
        for p, img in need:
            try:
                results.append((p, model.embed_image(img)))
            except Exception as exc:  # noqa: BLE001
                fail(p, f"{type(exc).__name__}: {exc}")
    for p, vector in results:
        try:
            p.reg.embedding = encode_embedding(vector)
        except ValueError as exc:
            fail(p, str(exc))
            continue
        p.reg.embedding_model = model.model_id
        report.embedded += 1
    for p in todo:
        p.embed_image = None  # only needed until now; a batch of full-size images would not fit in memory


def tag_quarantined(s3: Any, ev: ObjectEvent, reason: str) -> None:
    """Add ``quarantine=true`` and ``quarantine-reason=<reason>`` to the original, keeping its other tags."""
    kwargs: dict[str, Any] = {"Bucket": ev.bucket, "Key": ev.key}
    if ev.version_id:
        kwargs["VersionId"] = ev.version_id
    try:
        existing = s3.get_object_tagging(**kwargs).get("TagSet", [])
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
            return
        raise
    ours = {"quarantine": "true", "quarantine-reason": reason}
    if all(any(t["Key"] == k and t["Value"] == v for t in existing) for k, v in ours.items()):
        return
    others = [t for t in existing if t["Key"] not in ours][:8]  # S3 allows 10 tags per object
    s3.put_object_tagging(Tagging={"TagSet": others + [{"Key": k, "Value": v} for k, v in ours.items()]}, **kwargs)


def _read_sidecar_bytes(s3: Any, ev: ObjectEvent) -> bytes | None:
    kwargs: dict[str, Any] = {"Bucket": ev.bucket, "Key": ev.key}
    if ev.version_id:
        kwargs["VersionId"] = ev.version_id
    if ev.size is not None and ev.size > MAX_SIDECAR_BYTES:
        return b"x" * (MAX_SIDECAR_BYTES + 1)
    try:
        return s3.get_object(**kwargs)["Body"].read(MAX_SIDECAR_BYTES + 1)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
            return None
        raise


def _folder_photo_sources(
    s3: Any, ddb: Any, settings: RegisterSettings, bucket: str, folder: str
) -> dict[str, set[str]]:
    """Photos registered so far under the direct children of ``folder`` (photo_id -> their source keys there), via
    the stems' control items."""
    stems: set[str] = set()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=folder, Delimiter="/"):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.lower().endswith(".json") and not key.endswith("/"):
                stems.add(stem_item_key(bucket, stem_of(key)))
    items, _ = batch_get(ddb, {settings.batches_table: ("batch_id", stems)})
    out: dict[str, set[str]] = {}
    for item in items.values():
        for pid, keys in photo_sources_of(item).items():
            out.setdefault(pid, set()).update(keys)
    return out


def handle_sidecar(s3: Any, ddb: Any, settings: RegisterSettings, ev: ObjectEvent, now_iso: str) -> int:
    """Store a sidecar on its control item, then apply it to every photo already registered under it.

    Returns:
        The number of photos the sidecar was applied to.
    """
    data = _read_sidecar_bytes(s3, ev)
    if data is None:
        return 0
    fields, issues = parse_sidecar(data)
    comp = SidecarComponent(ev.key, ev.sequencer, fields, issues)
    folder, stem = folder_of(ev.key), stem_of(ev.key)
    if ev.is_folder_sidecar:
        control = put_sidecar(ddb, settings.batches_table, folder_item_key(ev.bucket, folder), comp, now_iso)
        photos = _folder_photo_sources(s3, ddb, settings, ev.bucket, folder)
        slot = "folder_sidecar"

        def applies_to(source_key: str) -> bool:
            return folder_of(source_key) == folder
    else:
        control = put_sidecar(ddb, settings.batches_table, stem_item_key(ev.bucket, stem), comp, now_iso)
        photos = photo_sources_of(control)
        slot = "sidecar"

        def applies_to(source_key: str) -> bool:
            return stem_of(source_key) == stem
    current = SidecarComponent.from_value(control.get("sidecar")) or comp
    # Only the uploads under this sidecar's stem (or folder) get it; the same content uploaded elsewhere keeps its own.
    for photo_id in sorted(photos):
        apply_sidecar(ddb, settings.photos_table, photo_id, slot, current, now_iso,
                      source_keys=sorted(photos[photo_id]), applies_to=applies_to)
    return len(photos)


def register_messages(
    messages: list[SqsMessage],
    *,
    s3: Any,
    ddb: Any,
    lambda_client: Any | None,
    settings: RegisterSettings,
    now: datetime,
    embedder: Callable[[], Embedder] | None = None,
) -> RegisterReport:
    """Register every object named in an SQS batch of S3 notifications.

    A message whose processing raises is listed in ``failures`` (the handler reports it as a batch item failure, so
    SQS redelivers only that message); every step is idempotent, so a redelivery converges. Quarantine never fails a
    message. The pending counter is updated once for the whole batch, and the dispatcher is invoked asynchronously
    when the counter crosses ``batch_size``.

    Args:
        messages: the SQS records (id and body).
        s3: boto3 S3 client.
        ddb: boto3 DynamoDB client.
        lambda_client: boto3 Lambda client, used only to invoke the dispatcher; None disables the invocation.
        settings: the register function's settings.
        now: the current time.
        embedder: returns the image embedder (called once, when a photo needs an embedding); None, or
            ``settings.embed_at_intake`` false, leaves embeddings to the workflow.

    Returns:
        Failures and counts.
    """
    report = RegisterReport()
    now_iso = iso(now)
    embedding = embedder is not None and settings.embed_at_intake
    prepared: list[_Prepared] = []
    sidecars: list[tuple[str, ObjectEvent]] = []
    for msg in messages:
        try:
            events = parse_message_body(msg.body)
            mine = []
            for ev in events:
                if ev.is_sidecar:
                    sidecars.append((msg.message_id, ev))
                    continue
                item = prepare_photo(s3, settings, msg.message_id, ev, embed=embedding)
                if item is None:
                    report.skipped += 1
                else:
                    mine.append(item)
            prepared.extend(mine)
        except Exception as exc:  # noqa: BLE001 - isolate the message; SQS redelivers it, then the DLQ keeps it
            report.failures[msg.message_id] = f"{type(exc).__name__}: {exc}"

    usable = [p for p in prepared if p.reg.status == PENDING]
    try:
        register_stems(
            ddb, settings.batches_table,
            [(stem_item_key(p.event.bucket, stem_of(p.event.key)), p.reg.photo_id, p.event.key) for p in usable],
            now_iso,
        )
        control_keys = {stem_item_key(p.event.bucket, stem_of(p.event.key)) for p in usable}
        control_keys |= {folder_item_key(p.event.bucket, folder_of(p.event.key)) for p in usable}
        known, _ = batch_get(ddb, {
            settings.batches_table: ("batch_id", control_keys),
            settings.photos_table: ("photo_id", {p.reg.photo_id for p in usable}),
        })
    except Exception as exc:  # noqa: BLE001 - without the handshake no photo of the batch may be written
        for p in usable:
            report.failures[p.message_id] = f"{type(exc).__name__}: {exc}"
        known = {}
    if embedder is not None and embedding:
        attach_embeddings([p for p in usable if p.message_id not in report.failures], known, embedder, report)

    for p in prepared:
        if p.message_id in report.failures:
            continue
        try:
            ev, reg = p.event, p.reg
            sidecar = folder = None
            if reg.status == QUARANTINED:
                tag_quarantined(s3, ev, reg.quarantine_reason or "")
            else:
                stored = known.get(reg.photo_id)
                if p.copy is not None and not (stored and stored.get("labeling_ref")):
                    s3.put_object(Bucket=settings.intake_bucket, Key=p.copy_key, Body=p.copy,
                                  ContentType="image/jpeg")
                    report.copies_made += 1
                sidecar = SidecarComponent.from_value(
                    known.get(stem_item_key(ev.bucket, stem_of(ev.key)), {}).get("sidecar"))
                folder = SidecarComponent.from_value(
                    known.get(folder_item_key(ev.bucket, folder_of(ev.key)), {}).get("sidecar"))
            result = upsert_photo(ddb, settings.photos_table, reg, sidecar=sidecar, folder=folder, now_iso=now_iso,
                                  stored=known.get(reg.photo_id))
            if not result.created:
                report.duplicates += 1
            elif reg.status == QUARANTINED:
                report.quarantined[reg.quarantine_reason or "unknown"] += 1
            else:
                report.registered += 1
        except Exception as exc:  # noqa: BLE001
            report.failures[p.message_id] = f"{type(exc).__name__}: {exc}"

    for message_id, ev in sidecars:
        if message_id in report.failures:
            continue
        try:
            handle_sidecar(s3, ddb, settings, ev, now_iso)
            report.sidecars += 1
        except Exception as exc:  # noqa: BLE001
            report.failures[message_id] = f"{type(exc).__name__}: {exc}"

    if report.registered:
        try:
            before, after = add_pending(ddb, settings.batches_table, report.registered, now_iso)
            report.pending_after = after
            if before < settings.batch_size <= after and lambda_client is not None and settings.dispatch_function_name:
                lambda_client.invoke(
                    FunctionName=settings.dispatch_function_name,
                    InvocationType="Event",
                    Payload=json.dumps({"trigger": "pending-threshold", "pending": after}).encode(),
                )
                report.dispatch_invoked = True
        except Exception as exc:  # noqa: BLE001 - the counter is advisory; the scheduled dispatcher recounts
            report.counter_error = f"{type(exc).__name__}: {exc}"
    return report
