"""onnxruntime sessions of the exported backbones, and the embedder that averages views and joins backbones.

The ONNX files are looked up in ``FIELDLABEL_EMBEDDING_MODELS`` when set, then beside this module (a checkout), then
in ``/opt/fieldlabel-models`` (the Lambda layer that ships them; docs/decisions.md, "Embedding model"). Each file's
sha256 is checked against the manifest when its session is created, so the id stored with an embedding always names
the bytes that computed it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from fieldlabel.embedding.preprocess import shrink, view_batch
from fieldlabel.embedding.spec import MODELS_DIR, SPECS, Part, dimension, manifest, model_id, spec_name

MODELS_ENV = "FIELDLABEL_EMBEDDING_MODELS"
THREADS_ENV = "FIELDLABEL_EMBEDDING_THREADS"
LAYER_MODELS_DIR = Path("/opt/fieldlabel-models")


class ModelFileError(RuntimeError):
    """An ONNX file is missing or its bytes differ from the manifest."""


def models_dir() -> Path:
    """Where the ONNX files are (see the module docstring for the search order)."""
    configured = os.environ.get(MODELS_ENV, "").strip()
    if configured:
        return Path(configured)
    files = [b["file"] for b in manifest()["backbones"].values()]
    for candidate in (MODELS_DIR, LAYER_MODELS_DIR):
        if all((candidate / f).is_file() for f in files):
            return candidate
    return MODELS_DIR


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def threads() -> int:
    """Intra-op threads per session: 1 by default (one photo per vCPU scales better than one photo on two)."""
    raw = os.environ.get(THREADS_ENV, "").strip() or "1"
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{THREADS_ENV}={raw!r} is not an integer") from exc
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r} must be at least 1")
    return value


def backbone_session(backbone: str, n_threads: int = 1) -> ort.InferenceSession:
    """A CPU session of one backbone from :func:`models_dir`, its file verified against the manifest's sha256."""
    meta = manifest()["backbones"][backbone]
    return _session(str(models_dir() / meta["file"]), meta["sha256"], n_threads)


@cache
def _session(path_str: str, sha256: str, n_threads: int) -> ort.InferenceSession:
    path = Path(path_str)
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist ({MODELS_ENV} or the models layer must provide it)")
    digest = _sha256(path)
    if digest != sha256:
        raise ModelFileError(f"{path} has sha256 {digest}, the manifest says {sha256}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Embedder:
    """Embeds RGB images with the backbones and views of one spec (see fieldlabel.embedding.spec)."""

    spec: str
    parts: tuple[Part, ...]
    sessions: tuple[ort.InferenceSession, ...]
    resolutions: tuple[int, ...]
    model_id: str
    dim: int

    def embed_image(self, img: Image.Image) -> np.ndarray:
        """float32 (dim,): per backbone the mean pooled features over its views, backbones concatenated; raw."""
        return self.embed_images([img])[0]

    def embed_images(self, imgs: Sequence[Image.Image]) -> np.ndarray:
        """float32 (len(imgs), dim), one row per image as :meth:`embed_image` computes it.

        One onnxruntime call per image and backbone (its views as the batch): joining images in one call was slower
        and grew the process from ~300 MB to ~700 MB peak for 20 photos (measured, default spec).
        """
        out = np.empty((len(imgs), self.dim), dtype=np.float32)
        largest = max(self.resolutions)
        for row, original in enumerate(imgs):
            img = shrink(original, largest)
            col = 0
            for part, session, res in zip(self.parts, self.sessions, self.resolutions, strict=True):
                features = session.run(["embedding"], {"image": view_batch(img, part.views, res)})[0]
                out[row, col:col + features.shape[1]] = features.mean(axis=0)
                col += features.shape[1]
        return out


def build_embedder(spec: str, *, n_threads: int = 1) -> Embedder:
    """An embedder of spec ``spec`` (one of :data:`~fieldlabel.embedding.spec.SPECS`)."""
    parts = SPECS[spec]
    backbones = manifest()["backbones"]
    return Embedder(
        spec=spec,
        parts=parts,
        sessions=tuple(backbone_session(p.backbone, n_threads) for p in parts),
        resolutions=tuple(int(backbones[p.backbone]["resolution"]) for p in parts),
        model_id=model_id(spec),
        dim=dimension(spec),
    )


def load_embedder() -> Embedder:
    """The deployment's embedder (spec from ``FIELDLABEL_EMBEDDING_SPEC``), created once per process and spec.

    Keyed by the spec read now, not only the first one: a process whose environment names another spec later (tests,
    the offline demo) must never get an embedder whose vectors disagree with ``EMBEDDING_MODEL_ID``.
    """
    return _embedder_for(spec_name(), threads())


@cache
def _embedder_for(spec: str, n_threads: int) -> Embedder:
    return build_embedder(spec, n_threads=n_threads)


def encode_embedding(v: np.ndarray) -> bytes:
    """float16 little-endian bytes of a 1-d embedding (2 bytes per value, what the photo item stores)."""
    arr = np.asarray(v)
    if arr.ndim != 1:
        raise ValueError(f"an embedding is 1-d, got shape {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, refused just below
        half = arr.astype("<f2")
    if not np.all(np.isfinite(half)):
        raise ValueError("an embedding must be finite within float16's range")
    return half.tobytes()


def decode_embedding(b: bytes) -> np.ndarray:
    """float32 array of the values :func:`encode_embedding` stored."""
    if len(b) % 2:
        raise ValueError(f"{len(b)} bytes is not a whole number of float16 values")
    return np.frombuffer(b, dtype="<f2").astype(np.float32)
