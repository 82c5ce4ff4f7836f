"""How long `fieldlabel upload` spends checking photos before sending anything (the --dry-run cost).

Generates N camera-sized JPEGs (default 40 x 12 MP) in a temp folder, then times `plan_upload` (SHA-256 + intake's
full decode of every photo) with 1 and 2 worker threads. Run:

    .venv/bin/python benchmarks/bench_cli_upload_plan.py [N] [WIDTH] [HEIGHT]
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fieldlabel_cli.upload import plan_upload
from PIL import Image


def make_corpus(folder: Path, n: int, width: int, height: int) -> int:
    rng = np.random.default_rng(0)
    # Smooth gradients plus noise compress like a photo (a few MB at quality 90), unlike pure noise.
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    total = 0
    for i in range(n):
        noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
        arr = np.clip(base + noise + i, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
    return total


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    height = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        total = make_corpus(folder, n, width, height)
        print(f"{n} JPEGs of {width}x{height}, {total / n / 1e6:.1f} MB each")
        for workers in (1, 2):
            t0 = time.perf_counter()
            plan = plan_upload(folder, workers=workers)
            dt = time.perf_counter() - t0
            assert len(plan.to_upload) == n and not plan.rejected
            print(f"workers={workers}: {dt:.2f} s, {dt / n * 1000:.0f} ms per photo, {n / dt:.1f} photos/s")


if __name__ == "__main__":
    main()
