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
