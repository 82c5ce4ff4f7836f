"""Intake benchmark against moto, in-process (not part of the test suite).

For N uploads with 20 % duplicate deliveries it runs the register Lambda handler over SQS batches of 10 and then the
dispatcher, and prints registered photos per second, AWS requests per photo (counted with a botocore ``before-call``
hook on the clients the code uses: S3, DynamoDB, Step Functions, Lambda), and peak memory. It does this twice: photos
that Ground Truth can use as they are, and photos that need a labeling copy (EXIF-rotated). The handler computes each
photo's image embedding with the deployment's spec (fieldlabel.embedding; FIELDLABEL_EMBEDDING_SPEC selects another)
inside the registration's write, so it adds CPU time and no request. Then it claims 100,000 pending photos in one
dispatcher run and prints the time and requests.

    .venv/bin/python benchmarks/intake.py                # 10,000 uploads per case, 100,000-photo claim
    .venv/bin/python benchmarks/intake.py --photos 1000 --claim 20000

moto's own latency is not DynamoDB's: request counts carry over to AWS, wall-clock times do not (see docs/intake.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT / "tests" / "unit" / "intake")]
for _k, _v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "POWERTOOLS_TRACE_DISABLED": "true",
               "POWERTOOLS_METRICS_NAMESPACE": "FieldLabel", "POWERTOOLS_SERVICE_NAME": "bench",
               "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)

from fieldlabel.common.clock import iso  # noqa: E402
from fieldlabel.embedding import EMBEDDING_MODEL_ID, load_embedder  # noqa: E402
from fieldlabel.intake.dispatch import run_dispatch  # noqa: E402
from fieldlabel.intake.settings import DispatchSettings  # noqa: E402
from intake_helpers import (  # noqa: E402
    BATCHES,
    BUCKET,
    PHOTOS,
    FakeContext,
    RequestCounter,
    fast_moto_transactions,
    make_env,
    sqs_record,
)
from moto import mock_aws  # noqa: E402
from PIL import Image  # noqa: E402


def small_photo(i: int, rotated: bool) -> bytes:
    """A distinct 24x16 JPEG: the index's 24 bits as 4x4 black/white blocks; EXIF orientation 6 if ``rotated``."""
    img = Image.new("RGB", (24, 16), (128, 128, 128))
    for bit in range(24):
        x, y = (bit % 6) * 4, (bit // 6) * 4
        img.paste((255, 255, 255) if (i >> bit) & 1 else (0, 0, 0), (x, y, x + 4, y + 4))
    exif = Image.Exif()
    if rotated:
        exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def register_case(n: int, *, rotated: bool, dup_rate: float, sqs_batch: int, seed: int) -> dict[str, Any]:
    """Upload n photos, deliver their notifications (+dup_rate duplicates, shuffled) to the handler, then dispatch."""
    with mock_aws(), fast_moto_transactions():
        env = make_env()
        rng = random.Random(seed)
        records = []
        for i in range(n):
            key = f"uploads/site-{i % 50}/IMG_{i:06d}.jpg"
            records.append(env.put(key, small_photo(i, rotated), sequencer=f"{i + 1:08X}"))
        deliveries = records + rng.sample(records, int(n * dup_rate))
        rng.shuffle(deliveries)
        os.environ.update({"INTAKE_BUCKET": BUCKET, "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES,
                           "BATCH_SIZE": str(n), "DISPATCH_FUNCTION_NAME": "dispatch"})
        from register import handler

        handler.settings.cache_clear()
        counter = RequestCounter().attach(env.s3, env.ddb, env.lam)

        class AsyncInvoke:  # moto has no function to invoke; count the request the way AWS would see it
            def invoke(self, **kwargs: Any) -> dict[str, Any]:
                counter.calls.append("Invoke")
                return {"StatusCode": 202}

        handler.clients = lambda: {"s3": env.s3, "ddb": env.ddb, "lambda": AsyncInvoke()}  # type: ignore[assignment]
        events = [{"Records": [sqs_record(f"m{b}-{j}", {"Records": [r]})
                               for j, r in enumerate(deliveries[b : b + sqs_batch])]}
                  for b in range(0, len(deliveries), sqs_batch)]
        failures = 0
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            for event in events:
                failures += len(handler.lambda_handler(event, FakeContext())["batchItemFailures"])
        elapsed = time.perf_counter() - start
        register_calls = Counter(counter.calls)

        counter.calls.clear()
        counter.attach(env.sfn)
        settings = DispatchSettings.from_env({
            "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
            "BATCH_SIZE": str(n), "MAX_BATCH_SIZE": str(min(n, 100_000)), "MAX_WAIT_SECONDS": "0"})
        report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=datetime.now(UTC))
        dispatch_calls = Counter(counter.calls)
        total = sum(register_calls.values()) + sum(dispatch_calls.values())
        distinct = sum(1 for p in env.all_photos() if p.get("status"))
        embedded = sum(1 for p in env.all_photos() if p.get("embedding"))
        return {"photos": n, "distinct": distinct, "embedded": embedded, "deliveries": len(deliveries),
                "failures": failures,
                "seconds": elapsed,
                "claimed": report.photos_claimed, "register_calls": register_calls, "dispatch_calls": dispatch_calls,
                "per_photo": total / n}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux clear_refs 5) and return the current RSS in MB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def large_case(n: int) -> dict[str, Any]:
    """One SQS batch of n 12-megapixel (4032x3024) EXIF-rotated noisy JPEGs: seconds per photo and the growth of peak
    RSS, an upper bound of what the register function needs per batch (it includes moto holding the uploads)."""
    with mock_aws(), fast_moto_transactions():
        env = make_env()
        noise = Image.merge("RGB", [Image.effect_noise((4032, 3024), 40 + 10 * c) for c in range(3)])
        records = []
        for i in range(n):
            exif = Image.Exif()
            exif[0x0112] = 6
            out = io.BytesIO()
            noise.rotate(i, fillcolor=(i, 0, 0)).save(out, format="JPEG", quality=85, exif=exif.tobytes())
            records.append(env.put(f"uploads/large/IMG_{i:04d}.jpg", out.getvalue()))
        del noise
        from fieldlabel.intake.register import SqsMessage, register_messages
        from intake_helpers import register_settings

        before = _reset_peak_rss()
        start = time.perf_counter()
        report = register_messages([SqsMessage(f"m{i}", json.dumps({"Records": [r]})) for i, r in enumerate(records)],
                                   s3=env.s3, ddb=env.ddb, lambda_client=None, settings=register_settings(),
                                   now=datetime.now(UTC), embedder=load_embedder)
        elapsed = time.perf_counter() - start
        return {"photos": n, "copies": report.copies_made, "embedded": report.embedded, "seconds": elapsed,
                "rss_before": before,
                "rss_after": _status_mb("VmHWM"), "bytes": sum(r["s3"]["object"]["size"] for r in records)}


def claim_case(n: int) -> dict[str, Any]:
    """Seed n PENDING photos straight into moto's table, then time one dispatcher run that claims them all."""
    with mock_aws(), fast_moto_transactions():
        env = make_env()
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends["123456789012"]["us-east-1"]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(n):
            backend.put_item(PHOTOS, {"photo_id": {"S": f"sha256:{i:064x}"}, "status": {"S": "PENDING"},
                                      "registered_at": {"S": iso(t0 + timedelta(milliseconds=i))},
                                      "attempts": {"N": "0"}})
        counter = RequestCounter().attach(env.ddb, env.sfn)
        settings = DispatchSettings.from_env({
            "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
            "BATCH_SIZE": str(n), "MAX_BATCH_SIZE": str(n), "MAX_WAIT_SECONDS": "3600"})
        start = time.perf_counter()
        report = run_dispatch(ddb=env.ddb, sfn=env.sfn, settings=settings, now=datetime.now(UTC))
        elapsed = time.perf_counter() - start
        calls = Counter(counter.calls)
        return {"photos": n, "claimed": report.photos_claimed, "seconds": elapsed, "calls": calls,
                "batches": report.batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000, help="uploads per register case (default 10000; 0 skips)")
    parser.add_argument("--dup-rate", type=float, default=0.2, help="extra duplicate deliveries (default 0.2)")
    parser.add_argument("--sqs-batch", type=int, default=10, help="SQS batch size (default 10)")
    parser.add_argument("--large", type=int, default=0,
                        help="also register one SQS batch of this many 12-MP photos (memory sizing; default 0)")
    parser.add_argument("--claim", type=int, default=100_000, help="pending photos to claim (default 100000; 0 skips)")
    args = parser.parse_args()

    for label, rotated in (("no labeling copy needed", False), ("labeling copy needed (EXIF-rotated)", True)):
        if args.photos <= 0:
            break
        r = register_case(args.photos, rotated=rotated, dup_rate=args.dup_rate, sqs_batch=args.sqs_batch, seed=7)
        print(f"== register + claim, {label}: {r['photos']} photos, {r['deliveries']} deliveries "
              f"({args.dup_rate:.0%} duplicates), SQS batches of {args.sqs_batch}")
        print(f"registered per second (register handler, moto): {r['photos'] / r['seconds']:.1f} "
              f"({r['seconds']:.1f} s, failures {r['failures']}, registry entries {r['distinct']}, "
              f"claimed {r['claimed']})")
        print(f"embedded: {r['embedded']} of {r['distinct']} entries ({EMBEDDING_MODEL_ID}, in the registration write)")
        print(f"register requests: {dict(sorted(r['register_calls'].items()))}")
        print(f"dispatch requests: {dict(sorted(r['dispatch_calls'].items()))}")
        print(f"requests per photo: {r['per_photo']:.2f}  [{label}; target <= 5 including the embedding]")
        print(f"peak memory (process max RSS, includes moto): {peak_rss_mb():.0f} MB")
    if args.large > 0:
        g = large_case(args.large)
        size = g["bytes"] / g["photos"] / 1e6
        print(f"== one SQS batch of {g['photos']} 12-MP EXIF-rotated JPEGs ({size:.1f} MB each)")
        print(f"copies: {g['copies']}; embedded: {g['embedded']}; {g['seconds'] / g['photos']:.2f} s per photo; "
              f"RSS {g['rss_before']:.0f} MB "
              f"before the batch, {g['rss_after']:.0f} MB peak during it")
    if args.claim <= 0:
        return
    c = claim_case(args.claim)
    txn = c["calls"].get("TransactWriteItems", 0)
    print(f"== claim of {c['photos']} pending photos in one dispatcher run")
    print(f"claimed: {c['claimed']} in {len(c['batches'])} batch(es); time (moto): {c['seconds']:.1f} s")
    print(f"requests: {sum(c['calls'].values())} {dict(sorted(c['calls'].items()))}; "
          f"per photo: {sum(c['calls'].values()) / max(1, c['photos']):.4f}")
    print(f"estimate on DynamoDB at 50 ms per 100-item transaction (assumption, not measured): {txn * 0.05:.0f} s "
          f"of a 900 s Lambda invocation")
    print(f"peak memory (process max RSS, includes moto): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
