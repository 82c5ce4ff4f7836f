"""Judge an upload by its bytes, and make the JPEG labeling copy Ground Truth can use.

Reason codes of quarantine (docs/intake.md): ``empty``, ``not_an_image``, ``undecodable``, ``too_large_bytes``,
``too_many_pixels``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
UNDECODABLE = "undecodable"
TOO_LARGE_BYTES = "too_large_bytes"
TOO_MANY_PIXELS = "too_many_pixels"
QUARANTINE_REASONS = (EMPTY, NOT_AN_IMAGE, UNDECODABLE, TOO_LARGE_BYTES, TOO_MANY_PIXELS)

# Ground Truth's limits for automated labeling of images (groundtruth-facts.md section 10): 40 MB, 3840x2160.
LABELING_MAX_WIDTH = 3840
LABELING_MAX_HEIGHT = 2160
LABELING_MAX_BYTES = 40 * 1024 * 1024
# Formats the worker portal shows as they are.
PORTAL_FORMATS = frozenset({"JPEG", "PNG"})
DEFAULT_MAX_PIXELS = 100_000_000
COPY_QUALITY = 90
_ORIENTATION_TAG = 0x0112


class Quarantine(Exception):
    """The object cannot be used; ``reason`` is one of :data:`QUARANTINE_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Inspection:
    """What the bytes are: format, stored size, EXIF orientation, and the decoded image (kept for the copy)."""

    format: str
    width: int
    height: int
    orientation: int
    size_bytes: int
    image: Image.Image

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown once the EXIF orientation is applied (5-8 swap the axes)."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)

    @property
    def needs_copy(self) -> bool:
        """Whether Ground Truth needs a JPEG labeling copy instead of the original."""
        w, h = self.display_size
        return (
            self.format not in PORTAL_FORMATS
            or self.orientation not in (0, 1)
            or w > LABELING_MAX_WIDTH
            or h > LABELING_MAX_HEIGHT
            or self.size_bytes > LABELING_MAX_BYTES
        )

    def media(self, copy_made: bool) -> dict[str, Any]:
        """The ``media`` map of the photo item (docs/contracts.md)."""
        return {"format": self.format, "width": self.width, "height": self.height,
                "orientation": self.orientation, "copy_made": copy_made}


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Inspection:
    """Decode ``data`` fully and describe it.

    Args:
        data: the object's bytes.
        max_pixels: width x height above which the image is treated as a decompression bomb.

    Returns:
        The inspection, holding the decoded image.

    Raises:
        Quarantine: with reason ``empty``, ``not_an_image``, ``too_many_pixels`` or ``undecodable``.
    """
    if not data:
        raise Quarantine(EMPTY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Quarantine(TOO_MANY_PIXELS, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise Quarantine(NOT_AN_IMAGE, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure on the header means the bytes are not an image
        raise Quarantine(NOT_AN_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    if width * height > max_pixels:
        raise Quarantine(TOO_MANY_PIXELS, f"{width}x{height} > {max_pixels} pixels")
    if width <= 0 or height <= 0:
        raise Quarantine(UNDECODABLE, f"{width}x{height}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Quarantine(TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data raises OSError, SyntaxError, ValueError...
        raise Quarantine(UNDECODABLE, f"{type(exc).__name__}: {exc}") from exc
    try:
        orientation = int(img.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is a metadata problem, not a reason to quarantine
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    return Inspection(fmt, width, height, orientation, len(data), img)


def make_labeling_copy(inspection: Inspection) -> bytes:
    """A JPEG of the image with its orientation applied, shrunk to fit 3840x2160, without metadata.

    The copy carries no EXIF (GPS stays with the untouched original, out of the worker portal).
    """
    img = ImageOps.exif_transpose(inspection.image)
    if img.mode not in ("RGB", "L"):
        if "A" in img.getbands() or img.mode == "P":
            rgba = img.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            img = background
        else:
            img = img.convert("RGB")
    if img.width > LABELING_MAX_WIDTH or img.height > LABELING_MAX_HEIGHT:
        img = img.copy()
        img.thumbnail((LABELING_MAX_WIDTH, LABELING_MAX_HEIGHT), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=COPY_QUALITY, optimize=False)
    return out.getvalue()
