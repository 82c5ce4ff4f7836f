"""Builders shared by the intake tests: images, S3 notifications as SQS records, and a moto environment."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import boto3
import pillow_heif
from fieldlabel.intake.settings import DispatchSettings, RegisterSettings
from fieldlabel.registry import create_registry_tables
from PIL import Image

BUCKET = "intake-bucket"
PHOTOS = "photos"
BATCHES = "batches"
STATE_MACHINE_NAME = "labeling"


def jpeg(width: int = 64, height: int = 48, *, color=(200, 30, 30), orientation: int | None = None,
         gps: tuple[float, float] | None = None, make: str | None = None, model: str | None = None,
         taken: str | None = None, quality: int = 85) -> bytes:
    """A small JPEG with optional EXIF orientation, GPS (decimal degrees), camera and capture time."""
    img = Image.new("RGB", (width, height), color)
    # a black block marks the stored top-left corner, to check the orientation was applied
    img.paste((0, 0, 0), (0, 0, max(1, width // 8), max(1, height // 8)))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if gps:
        def dms(v: float) -> tuple[float, float, float]:
            v = abs(v)
            d = int(v)
            m = int((v - d) * 60)
            s = round(((v - d) * 60 - m) * 60, 4)
            return (float(d), float(m), s)
        g = exif.get_ifd(0x8825)
        g[1] = "N" if gps[0] >= 0 else "S"
        g[2] = dms(gps[0])
        g[3] = "E" if gps[1] >= 0 else "W"
        g[4] = dms(gps[1])
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def png(width: int = 40, height: int = 30, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (10, 120, 10) if mode == "RGB" else (10, 120, 10, 128)).save(out, format="PNG")
    return out.getvalue()


def encoded(fmt: str, width: int = 40, height: int = 30) -> bytes:
    """An image in ``fmt`` (TIFF, WEBP, GIF, BMP, HEIF)."""
    img = Image.new("RGB", (width, height), (20, 20, 200))
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(img).save(out, quality=60)
    else:
        img.save(out, format=fmt)
    return out.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares ``width x height`` (a decompression bomb's calling card)."""
    raw = png(1, 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def s3_record(key: str, size: int, *, bucket: str = BUCKET, sequencer: str = "0055AED6DCD90281E5",
              version_id: str | None = None, etag: str = "e", event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": sequencer}
    if version_id:
        obj["versionId"] = version_id
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": event_name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": obj}}


def sqs_record(message_id: str, body: dict[str, Any] | str) -> dict[str, Any]:
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}",
            "body": body if isinstance(body, str) else json.dumps(body),
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "x",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:intake",
            "awsRegion": "us-east-1"}


@dataclass
class Env:
    """moto clients and names of one test's AWS world."""

    s3: Any
    ddb: Any
    sfn: Any
    lam: Any
    state_machine_arn: str

    def put(self, key: str, data: bytes, sequencer: str | None = None) -> dict[str, Any]:
        """Upload an object and return the S3 record its notification would carry."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return s3_record(key, len(data), sequencer=sequencer or "0055AED6DCD90281E5")

    def photo(self, photo_id: str) -> dict[str, Any] | None:
        from fieldlabel.registry.photos import get_photo

        return get_photo(self.ddb, PHOTOS, photo_id)

    def all_photos(self) -> list[dict[str, Any]]:
        from fieldlabel.registry.model import from_item

        items = []
        for page in self.ddb.get_paginator("scan").paginate(TableName=PHOTOS):
            items.extend(from_item(i) for i in page["Items"])
        return items

    def tags(self, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


def make_env() -> Env:
    """Create bucket, tables and a state machine in the active moto mock."""
    s3 = boto3.client("s3", region_name="us-east-1")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    lam = boto3.client("lambda", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    create_registry_tables(ddb, PHOTOS, BATCHES)
    arn = sfn.create_state_machine(
        name=STATE_MACHINE_NAME, roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    return Env(s3, ddb, sfn, lam, arn)


def register_settings(**overrides: Any) -> RegisterSettings:
    base = {"INTAKE_BUCKET": BUCKET, "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "BATCH_SIZE": "1000"}
    base.update({k: str(v) for k, v in overrides.items()})
    return RegisterSettings.from_env(base)


def dispatch_settings(env: Env, **overrides: Any) -> DispatchSettings:
    base = {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
            "BATCH_SIZE": "10", "MAX_WAIT_SECONDS": "3600"}
    base.update({k: str(v) for k, v in overrides.items()})
    return DispatchSettings.from_env(base)


_MISSING = object()


@contextlib.contextmanager
def fast_moto_transactions():
    """Make moto's TransactWriteItems snapshot only the items it touches instead of deep-copying whole tables.

    moto 5.2.5 deep-copies each table once per transaction item for rollback, which makes claiming thousands of photos
    quadratic. This keeps moto's own condition checks and writes, and does the rollback from per-item snapshots.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items

    def patched(self: Any, transact_items: list[dict[str, Any]]) -> None:
        snaps = []
        for ti in transact_items:
            _, op = next(iter(ti.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            hv = DynamoType(key[table.hash_key_attr])
            snaps.append((table, hv, copy.deepcopy(table.items[hv]) if hv in table.items else _MISSING))
        Table.__deepcopy__ = lambda self_, memo: self_  # type: ignore[attr-defined]
        try:
            return original(self, transact_items)
        except Exception:
            for table, hv, snap in reversed(snaps):
                if snap is _MISSING:
                    table.items.pop(hv, None)
                else:
                    table.items[hv] = snap
            raise
        finally:
            del Table.__deepcopy__

    DynamoDBBackend.transact_write_items = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]


class SerializedClient:
    """Runs each request of a shared moto client under one lock: moto's backends are not thread-safe, while real
    DynamoDB applies each request atomically, so request-level interleaving is the faithful model of a race."""

    def __init__(self, real: Any, lock: threading.Lock) -> None:
        self.real = real
        self.lock = lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if not callable(attr) or name in ("get_paginator",):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attr(*args, **kwargs)

        return call


@dataclass
class FakeContext:
    """Stands in for the Lambda context object Powertools reads."""

    function_name: str = "fn"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fn"
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/fn"
    log_stream_name: str = "s"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


class RequestCounter:
    """Counts API calls made through the clients it is attached to (botocore ``before-call`` event)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, *clients: Any) -> RequestCounter:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._on_call)
        return self

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)
