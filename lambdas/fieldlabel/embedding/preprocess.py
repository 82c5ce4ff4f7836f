"""Image -> model input: RGB, test-time views resized to the backbone's resolution, (pixels - 127) / 128, NCHW.

The EfficientNet-Lite checkpoints were trained with the TF-Lite convention (pixels - 127) / 128; ImageNet mean/std
normalisation silently costs accuracy (docs/engine.md, "Embeddings"). Each view is cut and resized in one
``Image.resize(box=...)`` call from an image first shrunk to at most twice the largest resolution, so a 12-megapixel
photo costs a few milliseconds here, not a full-size resample per view.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from fieldlabel.embedding import spec

# TF EfficientNet evaluation: a centre crop of image_size / (image_size + 32) of the shorter side.
CROP_PADDING = 32
TIGHT_FRACTION = 0.7
RESAMPLE = Image.Resampling.BICUBIC
_PREVIEW_FACTOR = 2


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white (as the labeling copy does), so both paths see the same pixels."""
    if img.mode == "RGB":
        return img
    if "A" in img.getbands() or img.mode == "P" or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def open_image(data: bytes, *, max_resolution: int | None = None) -> Image.Image:
    """Decode encoded image bytes for embedding: JPEG decodes at a reduced scale (``Image.draft``), EXIF orientation
    applied, RGB. ``max_resolution`` is the largest backbone input (default: the manifest's); the decoder keeps at
    least twice that."""
    img = Image.open(io.BytesIO(data))
    side = _PREVIEW_FACTOR * (max_resolution or spec.max_resolution())
    if img.format == "JPEG":
        img.draft("RGB", (side, side))
    img.load()
    return to_rgb(ImageOps.exif_transpose(img))


def shrink(img: Image.Image, max_resolution: int) -> Image.Image:
    """An RGB copy whose shorter side is at most twice ``max_resolution`` (unchanged when already smaller)."""
    img = to_rgb(img)
    limit = _PREVIEW_FACTOR * max_resolution
    short = min(img.size)
    if short <= limit:
        return img
    scale = limit / short
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, RESAMPLE, reducing_gap=3.0)


def _box(view: str, width: int, height: int, resolution: int) -> tuple[float, float, float, float]:
    short = min(width, height)
    if view.startswith("crop"):
        side = short * resolution / (resolution + CROP_PADDING)
    elif view.startswith("tight"):
        side = short * TIGHT_FRACTION
    elif view.startswith("whole"):
        return (0.0, 0.0, float(width), float(height))
    else:
        raise ValueError(f"unknown view {view!r}")
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def view_pixels(img: Image.Image, view: str, resolution: int) -> np.ndarray:
    """One view of an RGB image as uint8 HWC of ``resolution`` square."""
    out = img.resize((resolution, resolution), RESAMPLE, box=_box(view, img.width, img.height, resolution))
    arr = np.asarray(out, dtype=np.uint8)
    if view.endswith("-flip"):
        arr = arr[:, ::-1, :]
    return arr


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) with (pixels - 127) / 128."""
    x = (pixels.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def view_batch(img: Image.Image, views: tuple[str, ...], resolution: int) -> np.ndarray:
    """The model input for ``views`` of an RGB image: float32 (len(views), 3, resolution, resolution)."""
    return normalise(np.stack([view_pixels(img, v, resolution) for v in views]))
