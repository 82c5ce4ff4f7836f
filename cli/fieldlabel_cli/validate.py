"""Local checks run before anything is sent: is each photo a decodable image within limits, is each sidecar valid?

The photo check is a pure function of the bytes (:func:`classify_photo_bytes`) so that it can be swapped for the
shared intake validator (``lambdas/fieldlabel/intake``) once that exposes one; the reason codes are the ones the
upload summary prints. Sidecar rules follow docs/contracts.md, "Sidecar metadata".
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".tif", ".tiff", ".webp"})
# Pillow names some camera JPEGs "MPO" (multi-picture); pillow-heif names HEIC/HEIF "HEIF".
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "HEIF", "TIFF", "WEBP"})
FOLDER_SIDECAR = "_folder.json"
MAX_SIDECAR_BYTES = 64 * 1024

# Reason codes (stable: they appear in --json output).
EMPTY = "empty"
NOT_AN_IMAGE = "not-an-image"
UNDECODABLE = "undecodable"
TOO_LARGE = "too-large"
TOO_MANY_PIXELS = "too-many-pixels"
UNSUPPORTED_FORMAT = "unsupported-format"
UNSUPPORTED_TYPE = "unsupported-type"
SIDECAR_INVALID_JSON = "sidecar-invalid-json"
SIDECAR_NOT_OBJECT = "sidecar-not-object"
SIDECAR_INVALID_FIELD = "sidecar-invalid-field"
SIDECAR_TOO_LARGE = "sidecar-too-large"
SIDECAR_ORPHAN = "sidecar-orphan"

SPECIMEN_PARTS = ("leaf", "bark", "fruit", "flower", "habit", "other")
_STRING_LIMITS = {"site_id": 64, "collector": 128, "notes": 2000, "suspected_species": 128, "habitat": 256}
SIDECAR_FIELDS = frozenset({*_STRING_LIMITS, "captured_at", "latitude", "longitude", "specimen_part"})


@dataclass(frozen=True)
class Limits:
    """What a photo may weigh. Defaults: 50 MiB and 100 M pixels (Ground Truth's non-AL pixel limit, facts §10);
    larger originals are better downscaled by the photographer than rejected later by intake."""

    max_bytes: int = 50 * 1024 * 1024
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


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except ImportError:  # HEIC then shows up as not-an-image, which is the truth on this machine
            pass
        _heif_registered = True


def classify_photo_bytes(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> PhotoVerdict:
    """Decide whether ``data`` is a photo intake can use.

    The header gives format and size cheaply; the pixels are then decoded in full (JPEGs in draft mode, which
    still reads every scan) so a truncated file is caught here rather than in the labeling job.

    Args:
        data: the file's bytes.
        limits: size limits.

    Returns:
        A PhotoVerdict; never raises for bad input.
    """
    if len(data) == 0:
        return PhotoVerdict(EMPTY, "the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        return PhotoVerdict(TOO_LARGE, f"{len(data)} bytes > limit {limits.max_bytes}")
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombWarning | Image.DecompressionBombError):
            return PhotoVerdict(TOO_MANY_PIXELS, str(exc))
        return PhotoVerdict(NOT_AN_IMAGE, "not a recognised image format")
    except Exception as exc:  # Pillow raises assorted errors on garbage headers
        return PhotoVerdict(NOT_AN_IMAGE, f"cannot read image header: {exc}")
    if fmt not in ACCEPTED_FORMATS:
        return PhotoVerdict(UNSUPPORTED_FORMAT, f"{fmt} is not accepted (use JPEG, PNG, HEIC, TIFF or WebP)", fmt)
    if width * height > limits.max_pixels:
        detail = f"{width}x{height} = {width * height} pixels > limit {limits.max_pixels}"
        return PhotoVerdict(TOO_MANY_PIXELS, detail, fmt, width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if fmt in ("JPEG", "MPO"):
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, ValueError depending on the codec
        return PhotoVerdict(UNDECODABLE, f"image data is corrupt or truncated: {exc}", fmt, width, height)
    finally:
        img.close()
    return PhotoVerdict(None, "", fmt, width, height)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def validate_sidecar_bytes(data: bytes) -> SidecarVerdict:
    """Check a sidecar against the contract (docs/contracts.md, "Sidecar metadata").

    Invalid JSON, a non-object, or a field of the wrong type/range rejects the sidecar; unknown fields are warnings.
    """
    verdict = SidecarVerdict()
    if len(data) > MAX_SIDECAR_BYTES:
        verdict.reason = SIDECAR_TOO_LARGE
        verdict.errors.append(f"{len(data)} bytes > {MAX_SIDECAR_BYTES}")
        return verdict
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        verdict.reason = SIDECAR_INVALID_JSON
        verdict.errors.append("not UTF-8 text")
        return verdict
    except json.JSONDecodeError as exc:
        verdict.reason = SIDECAR_INVALID_JSON
        verdict.errors.append(f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        return verdict
    if not isinstance(doc, dict):
        verdict.reason = SIDECAR_NOT_OBJECT
        verdict.errors.append(f"expected a JSON object, got {type(doc).__name__}")
        return verdict
    for key, value in doc.items():
        if key not in SIDECAR_FIELDS:
            verdict.warnings.append(f"unknown field {key!r} (ignored by intake)")
        elif key in _STRING_LIMITS:
            if not isinstance(value, str):
                verdict.errors.append(f"{key}: must be a string")
            elif len(value) > _STRING_LIMITS[key]:
                verdict.errors.append(f"{key}: longer than {_STRING_LIMITS[key]} characters")
        elif key == "latitude":
            if not _is_number(value) or not -90 <= value <= 90:
                verdict.errors.append("latitude: must be a number between -90 and 90")
        elif key == "longitude":
            if not _is_number(value) or not -180 <= value <= 180:
                verdict.errors.append("longitude: must be a number between -180 and 180")
        elif key == "specimen_part":
            if value not in SPECIMEN_PARTS:
                verdict.errors.append(f"specimen_part: must be one of {', '.join(SPECIMEN_PARTS)}")
        elif key == "captured_at":
            try:
                if not isinstance(value, str):
                    raise ValueError
                datetime.fromisoformat(value)
            except ValueError:
                verdict.errors.append("captured_at: must be an ISO-8601 date-time, e.g. 2026-05-14T09:30:00Z")
    if verdict.errors:
        verdict.reason = SIDECAR_INVALID_FIELD
    return verdict
