"""Procedurally drawn images the exported models are checked on (no photo from anywhere is committed).

The export script computes torch's features of these images and stores them as the reference fixture; the tests
recompute them with onnxruntime. Drawing uses only Pillow primitives with fixed coordinates, so the pixels are the
same on every machine with the pinned Pillow.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

N_REFERENCE = 4


def reference_image(i: int) -> Image.Image:
    """Image ``i``: a leaf-like shape of a per-index colour, lobes and size on a textured background, 320x240."""
    w, h = 320, 240
    img = Image.new("RGB", (w, h), (200 - 30 * (i % 3), 190, 150 + 20 * (i % 4)))
    draw = ImageDraw.Draw(img)
    for k in range(0, w, 8 + 2 * i):  # background stripes: something for the early layers to respond to
        draw.line([(k, 0), (k - 60, h)], fill=(150 + (k * 7 + i * 31) % 80, 160, 120), width=2)
    lobes = 3 + 2 * i
    cx, cy, radius = w / 2 + 10 * (i - 1.5), h / 2, 70 + 8 * i
    points = []
    for step in range(360):
        t = math.radians(step)
        r = radius * (0.65 + 0.35 * abs(math.cos(lobes * t / 2)))
        points.append((cx + r * math.cos(t) * 1.2, cy + r * math.sin(t) * 0.8))
    draw.polygon(points, fill=(40 + 40 * i, 120 + 25 * (i % 3), 40), outline=(20, 60, 20))
    draw.line([(cx - radius * 1.2, cy), (cx + radius * 1.2, cy)], fill=(90, 140, 60), width=3)
    return img


def reference_images() -> list[Image.Image]:
    """The :data:`N_REFERENCE` reference images."""
    return [reference_image(i) for i in range(N_REFERENCE)]
