"""Procedurally drawn leaf photos whose species a model can learn from the pixels.

The demo's default photos have to make the real engine learn (issue 10, item 7) without any download, so each
species gets a leaf *archetype*: a family (simple blade, lobed, palmate, pinnate compound, needle bundles, needle
brush), a blade outline (where the blade is widest, how long and narrow it is, a heart-shaped base or not), lobe
count and depth, serration (teeth, double teeth), vein pattern and a colour range. Every photo then varies what a
field photo varies: the archetype's parameters within the species' range, rotation, scale, position, lighting,
background texture, a second partial leaf, blur and JPEG quality. The result is not separable by one pixel
statistic (hues overlap, backgrounds are shared), but an ImageNet feature extractor plus a linear head learns it
(``tests/unit/localrun/test_leaves_learnable.py`` checks that with the project's own embedder).

The nine species of the dev taxonomy get hand-made archetypes modelled on the real leaves (oak lobes, beech's
wavy ovate blade, sycamore's five palmate lobes, birch's double-toothed triangle, pine's needle pairs, spruce's
needle brush, ash's pinnate leaflets, lime's heart shape, sweet chestnut's long bristle-toothed blade). Any other
label gets a archetype derived from its position in the taxonomy and a hash of its name, spread over the families
and hues so that neighbours differ. Everything is a pure function of (label, species index, seed).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FAMILIES = ("simple", "lobed", "palmate", "compound", "needle_bundles", "needle_brush")
SUPERSAMPLE = 2  # drawn at twice the size and reduced, so edges are antialiased like a photo's


@dataclass(frozen=True)
class LeafArchetype:
    """What makes one species' leaves look like that species. Ranges are (low, high) drawn per photo."""

    family: str
    aspect: tuple[float, float] = (0.45, 0.55)  # blade width / length
    widest_at: float = 0.45  # 0 = base, 1 = tip (ovate < 0.5 < obovate)
    base_lobes: float = 0.0  # > 0: heart-shaped (cordate) base
    lobes: tuple[int, int] = (0, 0)  # lobes per side (lobed), lobes in all (palmate), leaflet pairs (compound)
    lobe_depth: float = 0.0  # 0..1, how deep the sinuses cut
    teeth: int = 0  # serration teeth per side over the blade's length (0 = entire margin)
    tooth_depth: float = 0.0  # relative to the blade's width
    double_teeth: bool = False
    wavy: float = 0.0  # a slow wave along the margin (beech)
    veins: str = "pinnate"  # "pinnate" | "palmate" | "none"
    vein_count: tuple[int, int] = (6, 8)  # secondary veins per side
    hue: tuple[float, float] = (0.22, 0.28)  # HSV hue range
    saturation: tuple[float, float] = (0.45, 0.70)
    value: tuple[float, float] = (0.40, 0.62)
    needles: tuple[int, int] = (0, 0)  # needles per bundle / per brush side
    needle_length: tuple[float, float] = (0.0, 0.0)  # relative to the frame's height


# Hand-made archetypes for the dev taxonomy's species (cdk.json), keyed by label.
KNOWN: dict[str, LeafArchetype] = {
    "quercus-robur": LeafArchetype("lobed", aspect=(0.50, 0.60), widest_at=0.62, base_lobes=0.15, lobes=(4, 6),
                                   lobe_depth=0.55, veins="pinnate", vein_count=(4, 6), hue=(0.20, 0.26),
                                   saturation=(0.45, 0.65), value=(0.32, 0.50)),
    "fagus-sylvatica": LeafArchetype("simple", aspect=(0.55, 0.65), widest_at=0.42, wavy=0.06, veins="pinnate",
                                     vein_count=(7, 9), hue=(0.24, 0.30), saturation=(0.55, 0.80),
                                     value=(0.45, 0.65)),
    "acer-pseudoplatanus": LeafArchetype("palmate", aspect=(0.95, 1.05), lobes=(5, 5), lobe_depth=0.45, teeth=22,
                                         tooth_depth=0.05, veins="palmate", hue=(0.24, 0.30),
                                         saturation=(0.50, 0.70), value=(0.30, 0.46)),
    "betula-pendula": LeafArchetype("simple", aspect=(0.75, 0.90), widest_at=0.22, teeth=11, tooth_depth=0.10,
                                    double_teeth=True, veins="pinnate", vein_count=(5, 7), hue=(0.17, 0.22),
                                    saturation=(0.50, 0.75), value=(0.55, 0.75)),
    "pinus-sylvestris": LeafArchetype("needle_bundles", needles=(2, 2), needle_length=(0.30, 0.42), lobes=(5, 8),
                                      veins="none", hue=(0.36, 0.44), saturation=(0.35, 0.55),
                                      value=(0.30, 0.48)),
    "picea-abies": LeafArchetype("needle_brush", needles=(18, 26), needle_length=(0.07, 0.10), veins="none",
                                 hue=(0.30, 0.36), saturation=(0.55, 0.80), value=(0.22, 0.38)),
    "fraxinus-excelsior": LeafArchetype("compound", aspect=(0.26, 0.34), widest_at=0.45, lobes=(4, 6), teeth=9,
                                        tooth_depth=0.10, veins="pinnate", vein_count=(4, 5), hue=(0.23, 0.28),
                                        saturation=(0.50, 0.70), value=(0.42, 0.60)),
    "tilia-cordata": LeafArchetype("simple", aspect=(0.85, 1.00), widest_at=0.30, base_lobes=0.35, teeth=16,
                                   tooth_depth=0.05, veins="palmate", vein_count=(4, 6), hue=(0.21, 0.27),
                                   saturation=(0.40, 0.60), value=(0.50, 0.70)),
    "castanea-sativa": LeafArchetype("simple", aspect=(0.24, 0.32), widest_at=0.50, teeth=16, tooth_depth=0.20,
                                     veins="pinnate", vein_count=(14, 18), hue=(0.15, 0.20),
                                     saturation=(0.55, 0.80), value=(0.45, 0.62)),
}


def archetype(label: str, index: int) -> LeafArchetype:
    """The archetype of one species: hand-made for a known label, otherwise derived from its index and name.

    Derived archetypes take the family by index (so consecutive species differ in kind) and spread the hue over the
    green-yellow-blue-red range by index; the name's hash varies the rest.
    """
    if label in KNOWN:
        return KNOWN[label]
    rng = random.Random(int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big"))
    family = FAMILIES[index % len(FAMILIES)]
    # Hues from yellow-green through blue-green, with every 5th species autumn-red/orange: a wide but leaf-like set.
    hue_mid = 0.13 + 0.30 * ((index * 0.618034) % 1.0) if index % 5 != 4 else 0.02 + 0.08 * rng.random()
    hue = (hue_mid - 0.025, hue_mid + 0.025)
    aspect_mid = rng.uniform(0.25, 0.95)
    lobe_n = rng.randint(2, 7)
    teeth = rng.choice((0, 0, rng.randint(8, 24)))
    return LeafArchetype(
        family,
        aspect=(aspect_mid * 0.92, aspect_mid * 1.08),
        widest_at=rng.uniform(0.25, 0.70),
        base_lobes=rng.choice((0.0, 0.0, rng.uniform(0.1, 0.4))),
        lobes=(lobe_n, lobe_n + rng.randint(0, 1)) if family != "palmate" else (2 * (lobe_n // 2) + 1,) * 2,
        lobe_depth=rng.uniform(0.25, 0.7),
        teeth=teeth,
        tooth_depth=rng.uniform(0.04, 0.16) if teeth else 0.0,
        double_teeth=rng.random() < 0.3,
        wavy=rng.choice((0.0, rng.uniform(0.02, 0.08))),
        veins=rng.choice(("pinnate", "palmate")) if family in ("simple", "lobed") else
        ("palmate" if family == "palmate" else ("none" if family.startswith("needle") else "pinnate")),
        vein_count=(v := rng.randint(4, 14), v + 2),
        hue=hue,
        saturation=(lo := rng.uniform(0.35, 0.65), lo + 0.2),
        value=(lv := rng.uniform(0.28, 0.55), lv + 0.18),
        needles=(2, 3) if family == "needle_bundles" and rng.random() < 0.5 else
        ((n := rng.randint(2, 5)), n) if family == "needle_bundles" else ((m := rng.randint(12, 28)), m + 6),
        needle_length=(0.25, 0.40) if family == "needle_bundles" else (0.05, 0.12),
    )


# --------------------------------------------------------------------------------------------------- geometry

Point = tuple[float, float]


def _blade_halfwidth(t: np.ndarray, a: LeafArchetype, aspect: float, wavy_phase: float) -> np.ndarray:
    """Half-width of a simple blade along its midrib (t = 0 at the base, 1 at the tip), before teeth."""
    p = min(max(a.widest_at, 0.08), 0.92)
    # t^k (1-t)^m peaks at k / (k + m) = p; k + m sets how round the blade is.
    k, m = 1.6 * p / 0.5, 1.6 * (1 - p) / 0.5
    peak = p**k * (1 - p) ** m
    w = (t**k) * (1 - t) ** m / peak * aspect / 2
    if a.base_lobes:
        # A heart-shaped base: the blade already has width at t=0 and bulges back past the petiole.
        w = w + a.base_lobes * aspect * np.exp(-((t / 0.12) ** 2))
    if a.wavy:
        w = w * (1 + a.wavy * np.sin(2 * np.pi * 5 * t + wavy_phase))
    return np.asarray(w)


def _teeth(t: np.ndarray, a: LeafArchetype, teeth: int) -> np.ndarray:
    """Serration as a factor on the half-width (sawtooth, optionally doubled; none near base and tip)."""
    if not teeth or not a.tooth_depth:
        return np.ones_like(t)
    saw = (t * teeth) % 1.0
    f = a.tooth_depth * (saw - 0.5)
    if a.double_teeth:
        f = f + 0.5 * a.tooth_depth * (((t * teeth * 3) % 1.0) - 0.5)
    fade = np.clip(np.minimum(t / 0.12, (1 - t) / 0.08), 0, 1)
    return np.asarray(1 + f * fade)


def _lobes(t: np.ndarray, lobes: int, depth: float) -> np.ndarray:
    """Rounded lobes along a blade (oak): deep sinuses between ``lobes`` bulges per side."""
    if not lobes or not depth:
        return np.ones_like(t)
    wave = 0.5 - 0.5 * np.cos(2 * np.pi * lobes * t)  # 0 at sinuses, 1 at lobe tips
    return np.asarray(1 - depth * (1 - wave**0.6))


def _simple_outline(a: LeafArchetype, rng: random.Random, *, lobed: bool) -> tuple[list[Point], list[list[Point]]]:
    """Outline and veins of one blade in leaf coordinates (base at (0, 0), tip at (0, 1))."""
    aspect = rng.uniform(*a.aspect)
    n = 220
    t = np.linspace(0.0, 1.0, n)
    w = _blade_halfwidth(t, a, aspect, rng.uniform(0, 2 * np.pi))
    teeth = max(a.teeth + rng.randint(-1, 1), 0) if a.teeth else 0
    w = w * _teeth(t, a, teeth)
    if lobed:
        lobes = rng.randint(*a.lobes)
        w = w * _lobes(t, lobes, a.lobe_depth * rng.uniform(0.85, 1.1))
    bend = rng.uniform(-0.06, 0.06)  # a slightly curved midrib
    mid_x = bend * np.sin(np.pi * t)
    right = [(float(mid_x[i] + w[i]), float(t[i])) for i in range(n)]
    left = [(float(mid_x[i] - w[i]), float(t[i])) for i in range(n - 1, -1, -1)]
    outline = right + left
    veins: list[list[Point]] = [[(float(mid_x[i]), float(t[i])) for i in range(0, n, 11)] + [(float(mid_x[-1]), 1.0)]]
    if a.veins == "pinnate":
        count = rng.randint(*a.vein_count)
        for j in range(count):
            t0 = 0.08 + 0.82 * (j + 0.5) / count
            i0 = int(t0 * (n - 1))
            t1 = min(t0 + 0.10 + 0.25 * aspect, 0.97)
            i1 = int(t1 * (n - 1))
            for side in (-1, 1):
                veins.append([(float(mid_x[i0]), float(t[i0])), (float(mid_x[i1] + side * 0.85 * w[i1]), float(t[i1]))])
    elif a.veins == "palmate":
        count = rng.randint(*a.vein_count)
        for j in range(count):
            t1 = 0.15 + 0.55 * (j + 1) / count
            i1 = int(t1 * (n - 1))
            for side in (-1, 1):
                veins.append([(0.0, 0.02), (float(mid_x[i1] + side * 0.9 * w[i1]), float(t[i1]))])
    return outline, veins


def _palmate_outline(a: LeafArchetype, rng: random.Random) -> tuple[list[Point], list[list[Point]]]:
    """A palmate leaf (maple): ``lobes`` pointed lobes around the petiole's end, in leaf coordinates."""
    lobes = rng.randint(*a.lobes)
    depth = a.lobe_depth * rng.uniform(0.85, 1.1)
    spread = math.radians(rng.uniform(250, 290))  # the fan of lobes, opening away from the petiole
    n = 360
    outline: list[Point] = []
    teeth = max(a.teeth + rng.randint(-2, 2), 0)
    centre = (0.0, 0.38)
    for i in range(n):
        theta = -spread / 2 + spread * i / (n - 1)  # 0 = along the midrib, towards the tip
        # |cos| lobes peaking at each lobe's direction; the middle lobe is longest.
        phase = (theta + spread / 2) / spread * lobes
        bump = abs(math.sin(math.pi * phase)) ** 0.7
        length = 0.62 * (1 - 0.25 * abs(theta) / (spread / 2))
        r = length * (1 - depth + depth * bump)
        if teeth and a.tooth_depth:
            r *= 1 + a.tooth_depth * (((i * teeth * lobes / n) % 1.0) - 0.5)
        outline.append((centre[0] + r * math.sin(theta), centre[1] + r * math.cos(theta)))
    outline.append(centre)
    veins: list[list[Point]] = [[(0.0, 0.0), centre]]
    for j in range(lobes):
        theta = -spread / 2 + spread * (j + 0.5) / lobes
        length = 0.62 * (1 - 0.25 * abs(theta) / (spread / 2)) * 0.92
        veins.append([centre, (centre[0] + length * math.sin(theta), centre[1] + length * math.cos(theta))])
    return outline, veins


# --------------------------------------------------------------------------------------------------- drawing


class _Canvas:
    """Leaf coordinates -> pixels: rotation about the leaf's middle, scale and position."""

    def __init__(self, img: Image.Image, cx: float, cy: float, scale: float, angle: float) -> None:
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.cx, self.cy, self.scale = cx, cy, scale
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def px(self, p: Point, origin: Point = (0.0, 0.0), rot: float = 0.0, size: float = 1.0) -> Point:
        # Local transform first (a leaflet or needle's own place), then the photo's.
        x, y = p[0] * size, (p[1] - 0.5) * size
        if rot:
            c, s = math.cos(rot), math.sin(rot)
            x, y = x * c - y * s, x * s + y * c
        x, y = x + origin[0], y + origin[1]
        return (self.cx + self.scale * (x * self.cos - y * self.sin),
                self.cy - self.scale * (x * self.sin + y * self.cos))

    def polygon(self, pts: list[Point], fill: tuple[int, int, int], **kw: Any) -> None:
        self.draw.polygon([self.px(p, **kw) for p in pts], fill=(*fill, 255))

    def line(self, pts: list[Point], fill: tuple[int, int, int], width: float, **kw: Any) -> None:
        w = max(int(round(width * self.scale)), 1)
        self.draw.line([self.px(p, **kw) for p in pts], fill=(*fill, 255), width=w, joint="curve")


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _background(rng: random.Random, nprng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Soil, leaf litter, grass, stone or a paper sheet: smooth blotches plus grain, shared by all species.

    Mostly brightness variation with a little colour, as in a real out-of-focus ground. Returns float32 (h, w, 3).
    """
    kinds = {
        "soil": ((0.07, 0.10), (0.35, 0.60), (0.25, 0.45)),
        "litter": ((0.05, 0.12), (0.45, 0.75), (0.30, 0.55)),
        "grass": ((0.20, 0.30), (0.30, 0.55), (0.25, 0.45)),
        "stone": ((0.05, 0.60), (0.03, 0.12), (0.45, 0.70)),
        "paper": ((0.08, 0.15), (0.02, 0.10), (0.78, 0.95)),
    }
    hr, sr, vr = kinds[rng.choice(list(kinds))]
    base = np.array(_rgb(rng.uniform(*hr), rng.uniform(*sr), rng.uniform(*vr)), dtype=np.float32)
    cells = rng.choice((4, 8, 16))
    shape = (cells * 3 // 4 + 1, cells + 1)
    coarse = nprng.standard_normal(shape, dtype=np.float32) * rng.uniform(10, 35)
    chroma = nprng.standard_normal((*shape, 3), dtype=np.float32) * rng.uniform(2, 8)
    blotches = coarse[..., None] + chroma
    smooth = np.asarray(Image.fromarray(np.clip(blotches + 128, 0, 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BILINEAR), dtype=np.float32) - 128
    grain = nprng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(3, 12)
    return base + smooth + grain


def _draw_blade(c: _Canvas, outline: list[Point], veins: list[list[Point]], colour: tuple[int, int, int],
                vein_colour: tuple[int, int, int], **kw: Any) -> None:
    c.polygon(outline, colour, **kw)
    size = kw.get("size", 1.0)
    for i, vein in enumerate(veins):
        c.line(vein, vein_colour, (0.012 if i == 0 else 0.006) * size, **kw)


def draw_leaf(a: LeafArchetype, rng: random.Random, width: int, height: int, *, leaves: bool = True) -> Image.Image:
    """One photo of a leaf of archetype ``a``: RGB, ``width`` x ``height``, drawn from ``rng``.

    ``leaves=False`` draws the same photo without its leaves (the photo-level draws come first), for tests.
    """
    ss = SUPERSAMPLE
    W, H = width * ss, height * ss
    nprng = np.random.default_rng(rng.getrandbits(64))
    background = _background(rng, nprng, width, height)
    hue = rng.uniform(*a.hue)
    sat = rng.uniform(*a.saturation)
    val = rng.uniform(*a.value)
    colour = _rgb(hue, sat, val)
    vein_colour = _rgb(hue + rng.uniform(-0.02, 0.03), sat * rng.uniform(0.4, 0.7), min(val * 1.35, 1.0))
    stalk_colour = _rgb(hue - 0.05, sat * 0.8, val * 0.85)
    scale = min(W, H) * rng.uniform(0.70, 0.95)
    cx = W / 2 + rng.uniform(-0.12, 0.12) * W
    cy = H / 2 + rng.uniform(-0.12, 0.12) * H
    angle = rng.uniform(0, 2 * math.pi)
    # Lighting: a brightness gradient across the frame (sun from one side), an exposure and a white balance; and
    # focus. Drawn before the leaves so that the leaves' own draws never change them.
    direction = rng.uniform(0, 2 * math.pi)
    gradient = rng.uniform(0.0, 0.30)
    tint = np.array([rng.uniform(0.93, 1.07) for _ in range(3)], dtype=np.float32) * rng.uniform(0.80, 1.15)
    blur = rng.choice((0.0, 0.0, rng.uniform(0.3, 1.2)))
    second = rng.random() < 0.35  # a second leaf of the same species, partly out of frame, as in many real photos
    leaf_rng = random.Random(rng.getrandbits(64))

    arr = background
    if leaves:
        # The leaves are drawn on a transparent layer at SUPERSAMPLE x and reduced (antialiased edges), then laid
        # on the background at the photo's size.
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        if second:
            other = _Canvas(layer, leaf_rng.choice((0.05, 0.95)) * W, leaf_rng.uniform(0.1, 0.9) * H,
                            scale * leaf_rng.uniform(0.6, 0.9), leaf_rng.uniform(0, 2 * math.pi))
            _draw_family(other, a, leaf_rng, _rgb(hue, sat * 0.9, val * 0.85), vein_colour, stalk_colour)
        canvas = _Canvas(layer, cx, cy, scale, angle)
        _draw_family(canvas, a, leaf_rng, colour, vein_colour, stalk_colour)
        leaf = np.asarray(layer.reduce(ss), dtype=np.float32)
        alpha = leaf[..., 3:4] / 255.0
        arr = background * (1 - alpha) + leaf[..., :3] * alpha

    gx, gy = np.meshgrid(np.linspace(-1, 1, width, dtype=np.float32), np.linspace(-1, 1, height, dtype=np.float32))
    light = 1 + gradient * (gx * math.cos(direction) + gy * math.sin(direction))
    arr = arr * light[..., None] * tint
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(blur)) if blur else out


def _draw_family(c: _Canvas, a: LeafArchetype, rng: random.Random, colour: tuple[int, int, int],
                 vein_colour: tuple[int, int, int], stalk_colour: tuple[int, int, int]) -> None:
    if a.family in ("simple", "lobed"):
        outline, veins = _simple_outline(a, rng, lobed=a.family == "lobed")
        c.line([(0.0, 0.0), (0.0, -rng.uniform(0.04, 0.14))], stalk_colour, 0.014)
        _draw_blade(c, outline, veins, colour, vein_colour)
    elif a.family == "palmate":
        outline, veins = _palmate_outline(a, rng)
        c.line([(0.0, 0.0), (0.0, -rng.uniform(0.15, 0.30))], stalk_colour, 0.016)
        _draw_blade(c, outline, veins, colour, vein_colour)
    elif a.family == "compound":
        pairs = rng.randint(*a.lobes)
        c.line([(0.0, -0.55), (0.0, 0.55)], stalk_colour, 0.012)  # the rachis
        size = rng.uniform(0.30, 0.38)
        for j in range(pairs):
            y = -0.45 + 0.95 * j / max(pairs, 1)
            for side in (-1, 1):
                outline, veins = _simple_outline(a, rng, lobed=False)
                rot = side * rng.uniform(1.05, 1.35)
                # The leaflet's base sits on the rachis: its centre is half its length along its own axis.
                origin = (-size / 2 * math.sin(rot), y + size / 2 * math.cos(rot))
                _draw_blade(c, outline, veins, colour, vein_colour, origin=origin, rot=rot, size=size)
        outline, veins = _simple_outline(a, rng, lobed=False)
        _draw_blade(c, outline, veins, colour, vein_colour, origin=(0.0, 0.55 + size / 2), size=size)
    elif a.family == "needle_bundles":
        # A twig with bundles of long needles (pine): each bundle fans out from one point.
        bundles = rng.randint(*a.lobes)
        c.line([(0.0, -0.6), (0.0, 0.6)], _rgb(0.07, 0.5, 0.35), 0.03)
        length = rng.uniform(*a.needle_length) * 2.2
        for j in range(bundles):
            y = -0.5 + 1.0 * j / max(bundles - 1, 1)
            side = 1 if j % 2 else -1
            base_angle = side * rng.uniform(0.4, 1.0)
            per = rng.randint(*a.needles)
            for k in range(per):
                ang = base_angle + (k - (per - 1) / 2) * rng.uniform(0.10, 0.22)
                tip = (math.sin(ang) * length, y + math.cos(ang) * length)
                mid = ((tip[0]) * 0.5 + rng.uniform(-0.02, 0.02), (y + tip[1]) * 0.5)
                c.line([(0.0, y), mid, tip], colour, 0.018)
    elif a.family == "needle_brush":
        # A twig with many short needles all round it (spruce): a bottle-brush.
        c.line([(0.0, -0.6), (0.0, 0.6)], _rgb(0.08, 0.55, 0.40), 0.025)
        count = rng.randint(*a.needles)
        length = rng.uniform(*a.needle_length) * 1.6
        for j in range(count * 2):
            y = -0.55 + 1.1 * j / (count * 2 - 1)
            side = 1 if j % 2 else -1
            ang = side * rng.uniform(0.6, 1.2)
            c.line([(0.0, y), (math.sin(ang) * length, y + math.cos(ang) * length)], colour, 0.013)
    else:
        raise ValueError(f"unknown leaf family {a.family!r}")


def with_family(a: LeafArchetype, family: str) -> LeafArchetype:
    """A copy of ``a`` in another family (tests draw every family)."""
    return replace(a, family=family)
