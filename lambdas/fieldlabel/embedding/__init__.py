"""Image embeddings for the labeling engine: ImageNet EfficientNet-Lite backbones exported to ONNX, run by onnxruntime.

Public interface (docs/engine.md, "Embeddings"): :data:`EMBEDDING_MODEL_ID`, :data:`EMBEDDING_DIM`,
:func:`load_embedder` (``Embedder.embed_image`` / ``embed_images``), :func:`open_image` (bytes -> RGB image, decoded at
a reduced scale), :func:`encode_embedding` / :func:`decode_embedding` (float16 little-endian).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fieldlabel.embedding.preprocess import open_image
from fieldlabel.embedding.runtime import (
    Embedder,
    ModelFileError,
    build_embedder,
    decode_embedding,
    encode_embedding,
    load_embedder,
)
from fieldlabel.embedding.spec import SPECS, dimension, model_id, spec_name

if TYPE_CHECKING:
    EMBEDDING_SPEC: str
    EMBEDDING_MODEL_ID: str
    EMBEDDING_DIM: int


def __getattr__(name: str) -> str | int:
    # Computed on first use from the committed manifest (not at import, so the export script that writes the manifest
    # can import this package); an unknown FIELDLABEL_EMBEDDING_SPEC fails here, naming the variable.
    if name == "EMBEDDING_SPEC":
        return spec_name()
    if name == "EMBEDDING_MODEL_ID":
        return model_id(spec_name())
    if name == "EMBEDDING_DIM":
        return dimension(spec_name())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EMBEDDING_DIM",
    "EMBEDDING_MODEL_ID",
    "EMBEDDING_SPEC",
    "SPECS",
    "Embedder",
    "ModelFileError",
    "build_embedder",
    "decode_embedding",
    "encode_embedding",
    "load_embedder",
    "open_image",
]
