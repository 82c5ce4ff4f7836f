"""Which backbones and test-time views make up an embedding, and the id that names that choice.

A spec is a tuple of (backbone, views). The embedding is, per backbone, the mean of the pooled features of its views,
and the backbones' means concatenated in spec order. The id names the spec and the first 8 hex digits of a sha256
over the spec and the ONNX files' checksums (from ``models/manifest.json``, written by the export script), so two
embeddings are comparable exactly when their ids are equal.

The spec is chosen by measurement (docs/decisions.md, "Embedding model"); ``FIELDLABEL_EMBEDDING_SPEC`` selects
another one of :data:`SPECS` for a whole deployment (every function must see the same value; a photo whose stored
``embedding_model`` differs from :data:`EMBEDDING_MODEL_ID` is embedded again by the workflow).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent / "models"
MANIFEST_PATH = MODELS_DIR / "manifest.json"
SPEC_ENV = "FIELDLABEL_EMBEDDING_SPEC"
SPEC_VERSION = "v1"

# Test-time views (fieldlabel.embedding.preprocess). crop: the square centre crop EfficientNet is evaluated with;
# whole: the whole frame squeezed to a square; tight: a closer centre crop; *-flip: the same mirrored left-right.
VIEWS = ("crop", "crop-flip", "whole", "whole-flip", "tight")
FIVE_VIEWS = VIEWS
CROP_FLIP = ("crop", "crop-flip")


@dataclass(frozen=True)
class Part:
    """One backbone of a spec and the views averaged for it."""

    backbone: str
    views: tuple[str, ...]


SPECS: dict[str, tuple[Part, ...]] = {
    "lite0": (Part("lite0", ("crop",)),),
    "lite0-flip": (Part("lite0", CROP_FLIP),),
    "lite0x5": (Part("lite0", FIVE_VIEWS),),
    "lite0-flip+lite2-flip": (Part("lite0", CROP_FLIP), Part("lite2", CROP_FLIP)),
    "lite0x5+lite2-flip": (Part("lite0", FIVE_VIEWS), Part("lite2", CROP_FLIP)),
}
# Best guaranteed coverage measured on the tree photos (docs/engine.md, "Embeddings"); about 6 ms per view of Lite0
# and 35 ms per view of Lite2 on one core.
DEFAULT_SPEC = "lite0x5+lite2-flip"


@cache
def manifest() -> dict[str, Any]:
    """The committed description of the exported backbones: file, sha256, resolution, dimension, provenance."""
    data: dict[str, Any] = json.loads(MANIFEST_PATH.read_text())
    return data


def spec_name(env: dict[str, str] | None = None) -> str:
    """The selected spec's name; fails fast naming the variable when it is not one of :data:`SPECS`."""
    name = (os.environ if env is None else env).get(SPEC_ENV, "").strip() or DEFAULT_SPEC
    if name not in SPECS:
        raise ValueError(f"{SPEC_ENV}={name!r} is not one of {sorted(SPECS)}")
    for part in SPECS[name]:
        if part.backbone not in manifest()["backbones"]:
            raise ValueError(f"{SPEC_ENV}={name!r} needs backbone {part.backbone!r}, absent from {MANIFEST_PATH.name}")
    return name


def model_id(name: str) -> str:
    """``effnet-<spec>-v1-<sha8>``: the spec and a checksum over it and the ONNX files it uses."""
    parts = SPECS[name]
    h = hashlib.sha256(f"{name}|{SPEC_VERSION}".encode())
    for part in parts:
        h.update(f"|{part.backbone}:{','.join(part.views)}:{manifest()['backbones'][part.backbone]['sha256']}".encode())
    return f"effnet-{name}-{SPEC_VERSION}-{h.hexdigest()[:8]}"


def max_resolution() -> int:
    """The largest input size among the exported backbones (what decoding must keep, twice over)."""
    return max(int(b["resolution"]) for b in manifest()["backbones"].values())


def dimension(name: str) -> int:
    """Length of the concatenated embedding of spec ``name``."""
    return sum(int(manifest()["backbones"][p.backbone]["dim"]) for p in SPECS[name])
