"""Control items in the batches table: the pending counter, the dispatch lease, and sidecar stem/folder items."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.registry.model import (
    DISPATCH_LEASE_KEY,
    FOLDER_PREFIX,
    PENDING_COUNTER_KEY,
    STEM_PREFIX,
    error_code,
    from_item,
    to_attr,
)
from fieldlabel.registry.photos import SidecarComponent

_TRANSACT_LIMIT = 100
_BATCH_GET_LIMIT = 100


def stem_item_key(bucket: str, stem: str) -> str:
    """Control key of a per-photo sidecar: ``#sidecar-stem#<bucket>/<key without extension>``."""
    return f"{STEM_PREFIX}{bucket}/{stem}"


def folder_item_key(bucket: str, folder: str) -> str:
    """Control key of a folder sidecar: ``#sidecar-folder#<bucket>/<folder prefix ending in />``."""
    return f"{FOLDER_PREFIX}{bucket}/{folder}"


# --- pending counter -------------------------------------------------------------------------------------------


def add_pending(ddb: Any, table: str, delta: int, now_iso: str) -> tuple[int, int]:
    """Atomically add ``delta`` to the pending counter; returns ``(before, after)``."""
    resp = ddb.update_item(
        TableName=table,
        Key={"batch_id": {"S": PENDING_COUNTER_KEY}},
        UpdateExpression="ADD #p :d SET #u = :now",
        ExpressionAttributeNames={"#p": "pending", "#u": "updated_at"},
        ExpressionAttributeValues={":d": {"N": str(delta)}, ":now": {"S": now_iso}},
        ReturnValues="UPDATED_NEW",
    )
    after = int(resp["Attributes"]["pending"]["N"])
    return after - delta, after


def set_pending(ddb: Any, table: str, value: int, now_iso: str) -> None:
    """Reset the pending counter to a counted value (the dispatcher does this each run, so drift self-corrects)."""
    ddb.put_item(
        TableName=table,
        Item={"batch_id": {"S": PENDING_COUNTER_KEY}, "pending": {"N": str(value)}, "updated_at": {"S": now_iso}},
    )


# --- dispatch lease ---------------------------------------------------------------------------------------------


def acquire_lease(ddb: Any, table: str, owner: str, now_epoch: float, lease_seconds: int) -> bool:
    """Take or renew the dispatch lease; False when another owner holds an unexpired one."""
    try:
        ddb.put_item(
            TableName=table,
            Item={
                "batch_id": {"S": DISPATCH_LEASE_KEY},
                "owner": {"S": owner},
                "expires_at": {"N": f"{now_epoch + lease_seconds:.3f}"},
            },
            ConditionExpression="attribute_not_exists(batch_id) OR expires_at < :now OR #o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":now": {"N": f"{now_epoch:.3f}"}, ":me": {"S": owner}},
        )
        return True
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise


def release_lease(ddb: Any, table: str, owner: str) -> None:
    """Give the lease back if still ours (a lease taken over after expiry is left alone)."""
    try:
        ddb.delete_item(
            TableName=table,
            Key={"batch_id": {"S": DISPATCH_LEASE_KEY}},
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": {"S": owner}},
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise


# --- sidecar control items ---------------------------------------------------------------------------------------


def photo_source_entry(photo_id: str, source_key: str) -> str:
    """One element of a stem item's ``photo_sources`` set: which upload (source key) of which photo is there."""
    return json.dumps([photo_id, source_key], separators=(",", ":"))


def photo_sources_of(control: dict[str, Any]) -> dict[str, set[str]]:
    """photo_id -> source keys under a stem control item (``photo_ids`` alone, from older items, give no keys)."""
    out: dict[str, set[str]] = {pid: set() for pid in control.get("photo_ids") or set()}
    for entry in control.get("photo_sources") or set():
        try:
            photo_id, source_key = json.loads(entry)
        except (ValueError, TypeError):
            continue
        out.setdefault(str(photo_id), set()).add(str(source_key))
    return out


def register_stems(ddb: Any, table: str, triples: Iterable[tuple[str, str, str]], now_iso: str) -> int:
    """Record ``(photo_id, source key)`` under each stem control key, one TransactWriteItems per 100 stems.

    This is the photo's half of the sidecar handshake: it happens before the photo reads the sidecar items, and the
    sidecar handler writes the sidecar before it reads the stem's photos, so one of the two always sees the other.
    The source key tells the sidecar handler which upload of a (deduplicated) photo the sidecar belongs to.

    Args:
        ddb: boto3 DynamoDB client.
        table: the batches table.
        triples: ``(stem control key, photo_id, source key)``.
        now_iso: the current time.

    Returns:
        The number of requests made.
    """
    by_stem: dict[str, set[str]] = defaultdict(set)
    sources: dict[str, set[str]] = defaultdict(set)
    for stem_key, photo_id, source_key in triples:
        by_stem[stem_key].add(photo_id)
        sources[stem_key].add(photo_source_entry(photo_id, source_key))
    keys = sorted(by_stem)
    requests = 0
    for start in range(0, len(keys), _TRANSACT_LIMIT):
        chunk = keys[start : start + _TRANSACT_LIMIT]
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"batch_id": {"S": k}},
                        "UpdateExpression": "ADD #ids :ids, #src :src SET #u = :now",
                        "ExpressionAttributeNames": {"#ids": "photo_ids", "#src": "photo_sources", "#u": "updated_at"},
                        "ExpressionAttributeValues": {
                            ":ids": to_attr(by_stem[k]), ":src": to_attr(sources[k]), ":now": {"S": now_iso}
                        },
                    }
                }
                for k in chunk
            ]
        )
        requests += 1
    return requests


def batch_get(ddb: Any, wanted: dict[str, tuple[str, Iterable[str]]]) -> tuple[dict[str, dict[str, Any]], int]:
    """Strongly consistent BatchGetItem over several tables.

    Args:
        ddb: boto3 DynamoDB client.
        wanted: ``{table: (partition-key attribute, keys)}``.

    Returns:
        ``({key: item}, requests made)``; keys must be unique across the tables (they are: photo ids never start
        with ``#``).
    """
    pending = [(table, attr, k) for table, (attr, keys) in wanted.items() for k in sorted(set(keys))]
    found: dict[str, dict[str, Any]] = {}
    requests = 0
    for start in range(0, len(pending), _BATCH_GET_LIMIT):
        request: dict[str, Any] = {}
        for table, attr, k in pending[start : start + _BATCH_GET_LIMIT]:
            request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append({attr: {"S": k}})
        while request:
            resp = ddb.batch_get_item(RequestItems=request)
            requests += 1
            for table, items in resp.get("Responses", {}).items():
                attr = wanted[table][0]
                for raw in items:
                    item = from_item(raw) or {}
                    found[item[attr]] = item
            request = resp.get("UnprocessedKeys") or {}
    return found, requests


def put_sidecar(ddb: Any, table: str, control_key: str, comp: SidecarComponent, now_iso: str) -> dict[str, Any]:
    """Store a sidecar on its stem/folder control item unless a newer version of it is already there.

    Returns:
        The control item after the write (or as found, when the stored sidecar is newer or the same); its
        ``sidecar`` is the one to apply and, for a stem, ``photo_ids`` are the photos registered under it so far.
    """
    try:
        resp = ddb.update_item(
            TableName=table,
            Key={"batch_id": {"S": control_key}},
            UpdateExpression="SET #s = :c, #u = :now",
            ConditionExpression="attribute_not_exists(#s) OR #s.#seq < :seq",
            ExpressionAttributeNames={"#s": "sidecar", "#u": "updated_at", "#seq": "seq"},
            ExpressionAttributeValues={":c": to_attr(comp.to_value()), ":now": {"S": now_iso},
                                       ":seq": {"S": comp.seq}},
            ReturnValues="ALL_NEW",
        )
        return from_item(resp["Attributes"]) or {}
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        resp = ddb.get_item(TableName=table, Key={"batch_id": {"S": control_key}}, ConsistentRead=True)
        return from_item(resp.get("Item")) or {}
