"""Embedding cost per photo on one core, for every spec (not part of the test suite).

    .venv/bin/python benchmarks/embedding.py                     # 40 photos of ../shared/data/tree-species if present
    .venv/bin/python benchmarks/embedding.py --photos DIR --count 100 --threads 2

For each spec of fieldlabel.embedding.spec.SPECS it prints the median and mean milliseconds per photo of decoding the
file (``open_image``: JPEG decoded at a reduced scale) and of embedding it (shrink, views, onnxruntime with one
intra-op thread by default), then session creation time and the process's peak memory. Without a photo folder it
uses generated 4032x3024 JPEGs (timings of the model are the same; decoding noise differs from real photos).
The default spec is chosen from these figures with the coverage the engine measures (docs/engine.md, "Embeddings").
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas")]

from fieldlabel.embedding import build_embedder, open_image  # noqa: E402
from fieldlabel.embedding.runtime import _session, backbone_session  # noqa: E402
from fieldlabel.embedding.spec import DEFAULT_SPEC, SPECS, manifest  # noqa: E402
from PIL import Image  # noqa: E402

DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "tree-species"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".heic", ".webp"}


def photo_bytes(folder: Path | None, count: int, seed: int) -> tuple[list[bytes], str]:
    """``count`` photos' bytes: a seeded sample of the folder's images, or generated 12-megapixel JPEGs."""
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        chosen = random.Random(seed).sample(files, min(count, len(files)))
        return [p.read_bytes() for p in chosen], f"{len(chosen)} photos from {folder}"
    out = []
    for i in range(count):
        img = Image.merge("RGB", [Image.effect_noise((4032, 3024), 30 + 7 * ((i + c) % 5)) for c in range(3)])
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out, f"{count} generated 4032x3024 JPEGs (no photo folder)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data, source = photo_bytes(args.photos, args.count, args.seed)
    print(f"{source}; onnxruntime intra-op threads: {args.threads}")

    for backbone in manifest()["backbones"]:
        _session.cache_clear()
        start = time.perf_counter()
        backbone_session(backbone, args.threads)
        print(f"session creation {backbone}: {1000 * (time.perf_counter() - start):.0f} ms (incl. sha256 check)")

    decode_ms = []
    images = []
    for b in data:
        start = time.process_time()
        images.append(open_image(b))
        decode_ms.append(1000 * (time.process_time() - start))
    sizes = sorted(img.size for img in images)
    print(f"decode (Image.draft) CPU: median {statistics.median(decode_ms):.1f} ms,"
          f" mean {statistics.mean(decode_ms):.1f} ms per photo; decoded sizes {sizes[0]} .. {sizes[-1]}")

    # CPU time is what one core spends (wall time also counts waiting for a shared, busy machine).
    print(f"{'spec':<24}{'dim':>6}{'views':>7}{'median ms':>11}{'mean ms':>9}{'CPU ms':>8}{'photos/s (CPU)':>16}")
    for spec in SPECS:
        embedder = build_embedder(spec, n_threads=args.threads)
        embedder.embed_image(images[0])  # warm-up: first run allocates the session's buffers
        times, cpu = [], []
        for img in images:
            start, start_cpu = time.perf_counter(), time.process_time()
            embedder.embed_image(img)
            times.append(1000 * (time.perf_counter() - start))
            cpu.append(1000 * (time.process_time() - start_cpu))
        views = sum(len(p.views) for p in embedder.parts)
        mark = "  (default)" if spec == DEFAULT_SPEC else ""
        print(f"{spec:<24}{embedder.dim:>6}{views:>7}{statistics.median(times):>11.1f}{statistics.mean(times):>9.1f}"
              f"{statistics.mean(cpu):>8.1f}{1000 / statistics.mean(cpu):>16.1f}{mark}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
