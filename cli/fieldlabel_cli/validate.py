"""Local checks run before anything is sent: is each photo an image intake will accept, is each sidecar valid?

Both checks delegate to the shared intake code, so the CLI rejects exactly what intake would quarantine:
photos go through :func:`fieldlabel.intake.media.inspect_image` (full decode; reason codes ``empty``,
``not_an_image``, ``undecodable``, ``too_large_bytes``, ``too_many_pixels``), sidecars through
:func:`fieldlabel.intake.sidecar.validate_sidecar` (docs/contracts.md, "Sidecar metadata"). Intake keeps a photo
whose sidecar is broken and only reports the problem; the CLI is stricter for sidecars (it does not send one with
invalid values) because the scientist can still fix it, and intake would silently drop those values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fieldlabel.intake.media import (
    EMPTY,
    NOT_AN_IMAGE,
    TOO_LARGE_BYTES,
    TOO_MANY_PIXELS,
    UNDECODABLE,
    Quarantine,
    inspect_image,
)
from fieldlabel.intake.sidecar import MAX_SIDECAR_BYTES, SIDECAR_SCHEMA, validate_sidecar

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".tif", ".tiff", ".webp"})
FOLDER_SIDECAR = "_folder.json"

# Reason codes printed by the summary (stable: they appear in --json output). Photo codes are intake's.
UNSUPPORTED_TYPE = "unsupported_type"
UNREADABLE = "unreadable"
SIDECAR_INVALID_JSON = "sidecar_invalid_json"
SIDECAR_NOT_OBJECT = "sidecar_not_object"
SIDECAR_INVALID_FIELD = "sidecar_invalid_field"
SIDECAR_TOO_LARGE = "sidecar_too_large"
SIDECAR_ORPHAN = "sidecar_orphan"

__all__ = [
    "EMPTY", "NOT_AN_IMAGE", "TOO_LARGE_BYTES", "TOO_MANY_PIXELS", "UNDECODABLE", "UNSUPPORTED_TYPE", "UNREADABLE",
    "SIDECAR_INVALID_JSON", "SIDECAR_NOT_OBJECT", "SIDECAR_INVALID_FIELD", "SIDECAR_TOO_LARGE", "SIDECAR_ORPHAN",
    "DEFAULT_LIMITS", "Limits", "PhotoVerdict", "SidecarVerdict", "classify_photo_bytes", "validate_sidecar_bytes",
]


@dataclass(frozen=True)
class Limits:
    """What a photo may weigh; the defaults are intake's (``MAX_PHOTO_BYTES``, ``MAX_PIXELS``)."""

    max_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 100_000_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class PhotoVerdict:
    """Result of checking one photo: ``reason`` is None when the photo is acceptable."""

    reason: str | None
    detail: str = ""
    format: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class SidecarVerdict:
    """Result of checking one sidecar: errors reject it, warnings (unknown fields) are only reported."""

    reason: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None


def classify_photo_bytes(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> PhotoVerdict:
    """Decide whether intake would accept ``data`` as a photo (same decoder, same reason codes).

    Args:
        data: the file's bytes.
        limits: size limits.

    Returns:
        A PhotoVerdict; never raises for bad input.
    """
    if len(data) > limits.max_bytes:
        return PhotoVerdict(TOO_LARGE_BYTES, f"{len(data)} bytes > limit {limits.max_bytes}")
    try:
        inspection = inspect_image(data, max_pixels=limits.max_pixels)
    except Quarantine as q:
        detail = {EMPTY: "the file is empty (0 bytes)", NOT_AN_IMAGE: "not a recognised image format"}.get(
            q.reason, q.detail)
        return PhotoVerdict(q.reason, detail)
    try:
        return PhotoVerdict(None, "", inspection.format, inspection.width, inspection.height)
    finally:
        inspection.image.close()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def validate_sidecar_bytes(data: bytes) -> SidecarVerdict:
    """Check a sidecar as intake will read it.

    Invalid JSON, a non-object, or a field of the wrong type/range rejects the sidecar; unknown fields are warnings.
    """
    verdict = SidecarVerdict()
    if len(data) > MAX_SIDECAR_BYTES:
        verdict.reason = SIDECAR_TOO_LARGE
        verdict.errors.append(f"{len(data)} bytes > {MAX_SIDECAR_BYTES}")
        return verdict
    try:
        # Decoded the way intake decodes it: BOM tolerated, NaN/Infinity refused.
        doc = json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        verdict.reason = SIDECAR_INVALID_JSON
        verdict.errors.append("not UTF-8 text")
        return verdict
    except json.JSONDecodeError as exc:
        verdict.reason = SIDECAR_INVALID_JSON
        verdict.errors.append(f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        return verdict
    except ValueError as exc:
        verdict.reason = SIDECAR_INVALID_JSON
        verdict.errors.append(str(exc))
        return verdict
    if not isinstance(doc, dict):
        verdict.reason = SIDECAR_NOT_OBJECT
        verdict.errors.append(f"expected a JSON object, got {type(doc).__name__}")
        return verdict
    known = SIDECAR_SCHEMA["properties"]
    _, issues = validate_sidecar(doc)
    for issue in issues:
        name = issue.split(":", 1)[0]
        if name in doc and name not in known:
            verdict.warnings.append(f"unknown field {name!r} (ignored by intake)")
        else:
            verdict.errors.append(issue)
    if verdict.errors:
        verdict.reason = SIDECAR_INVALID_FIELD
    return verdict
