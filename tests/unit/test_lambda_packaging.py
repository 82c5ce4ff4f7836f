"""What the Lambda code imports must be in its layer (or the runtime), at the versions the tests run with.

The layer is built from lambdas/requirements.txt at synth; a handler that imported a dev-only package (moto,
python-liquid, matplotlib) would pass every test here and fail on its first invocation in AWS.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
# Distribution name -> import name, for what lambdas/requirements.txt lists.
IMPORT_NAMES = {"aws-lambda-powertools": "aws_lambda_powertools", "pydantic": "pydantic", "pillow": "PIL",
                "pillow-heif": "pillow_heif", "numpy": "numpy", "onnxruntime": "onnxruntime"}
RUNTIME_PROVIDED = {"boto3", "botocore"}  # the Lambda Python runtime ships the AWS SDK
# Local tools kept next to the code they exercise; they import dev packages inside functions, never at module level.
LOCAL_TOOLS = {LAMBDAS / "fieldlabel" / "ui" / "preview.py"}


def _layer_pins() -> dict[str, str]:
    pins = {}
    for line in (LAMBDAS / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_lambda_import_is_in_the_layer_or_the_runtime() -> None:
    allowed = {IMPORT_NAMES[d] for d in _layer_pins()} | RUNTIME_PROVIDED | set(sys.stdlib_module_names)
    allowed |= {p.name for p in LAMBDAS.iterdir() if p.is_dir()}  # fieldlabel and the handler folders
    offenders = {}
    files = sorted(LAMBDAS.rglob("*.py"))
    assert len(files) > 50
    for f in files:
        missing = _imports(f, module_level_only=f in LOCAL_TOOLS) - allowed
        if missing:
            offenders[str(f.relative_to(ROOT))] = sorted(missing)
    assert offenders == {}


def test_the_layer_pins_every_package_it_needs_and_tests_run_those_versions() -> None:
    pins = _layer_pins()
    assert set(pins) == set(IMPORT_NAMES)
    for dist, pinned in pins.items():
        assert version(dist) == pinned, f"{dist}: tests run {version(dist)}, the layer ships {pinned}"


# Lambda's limit on a function's code plus all its layers, unzipped; 10 MB kept free for the difference between the
# wheels installed here and the Lambda platform's (measured: within 1 MB for CPython 3.11 vs 3.14, docs/decisions.md).
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
PLATFORM_ALLOWANCE = 10 * 1024 * 1024
EMBEDDING_MODELS = LAMBDAS / "fieldlabel" / "embedding" / "models"


def _layer_distributions() -> dict[str, Any]:
    """The layer's packages and everything they require (what pip --target installs), less the runtime's SDK."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    found: dict[str, Any] = {}
    todo = list(_layer_pins())
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found or name in RUNTIME_PROVIDED:
            continue
        found[name] = dist = distribution(name)
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _unpacked_bytes(dist: Any) -> int:
    # RECORD sizes of what the wheel installs; the layer build skips bytecode (--no-compile) and tests folders.
    return sum(f.size or 0 for f in dist.files or [] if "__pycache__" not in f.parts and "tests" not in f.parts)


def test_each_function_fits_lambdas_unzipped_limit_with_the_models_layer() -> None:
    dists = _layer_distributions()
    assert {"onnxruntime", "numpy", "pillow", "protobuf"} <= set(dists)
    dependencies = sum(_unpacked_bytes(d) for d in dists.values())
    models = sum(f.stat().st_size for f in EMBEDDING_MODELS.iterdir())
    code = sum(f.stat().st_size for f in LAMBDAS.rglob("*") if f.is_file() and "__pycache__" not in f.parts
               and f.suffix not in (".pyc", ".onnx") and f.name != "requirements.txt")
    assert models > 40e6 and dependencies > 100e6  # the figures are real sizes, not an empty sum
    total = dependencies + models + code
    assert total <= LAMBDA_UNZIPPED_LIMIT - PLATFORM_ALLOWANCE, (
        f"code {code / 1e6:.1f} MB + dependency layer {dependencies / 1e6:.1f} MB + models layer {models / 1e6:.1f} MB")
