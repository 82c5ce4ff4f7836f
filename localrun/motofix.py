"""Speed fixes for moto's DynamoDB that change no behaviour.

1. One table snapshot per transaction, not one per item. moto 5's ``TransactWriteItems`` snapshots a table
   (``copy.deepcopy``) for *every* item of the transaction before it applies any, to roll back on failure. The
   snapshots are identical (nothing changes in between), so a 100-item claim transaction on a 1,300-photo table
   deep-copied 130,000 items where 1,300 do. The first snapshot of each table is reused for the rest of the same
   transaction; rollback restores exactly what it restored before.
2. Parse each update expression once. moto parses the same ``UpdateExpression`` text again on every request (twice
   per UpdateItem); the parse is a pure function of the text, and every consumer that changes the tree works on a
   deep copy (``Validator.__init__``), so the parsed tree is cached by its text.
"""

from __future__ import annotations

import copy as _copy
import threading
from typing import Any

_state = threading.local()
_PARSE_CACHE_SIZE = 1024


class _CopyOncePerTransaction:
    """Stands in for the ``copy`` module inside ``moto.dynamodb.models`` (only ``deepcopy`` differs)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_copy, name)

    @staticmethod
    def deepcopy(obj: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.dynamodb.models.table import Table

        cache = getattr(_state, "tables", None)
        if cache is None or not isinstance(obj, Table) or args or kwargs:
            return _copy.deepcopy(obj, *args, **kwargs)
        if id(obj) not in cache:
            cache[id(obj)] = _copy.deepcopy(obj)
        return cache[id(obj)]


def patches() -> list[tuple[Any, str, Any]]:
    """``(target, attribute, replacement)`` to apply (and undo) with the harness's patcher."""
    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        _state.tables = {}
        try:
            return original(self, transact_items)
        finally:
            _state.tables = None

    from moto.dynamodb.parsing import expressions

    parser_cls: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    parse = parser_cls.make.__func__
    parsed: dict[str, Any] = {}
    lock = threading.Lock()

    def make(cls: Any, expression_str: str) -> Any:
        with lock:
            tree = parsed.get(expression_str)
        if tree is None:
            tree = parse(cls, expression_str)
            with lock:
                if len(parsed) >= _PARSE_CACHE_SIZE:
                    parsed.clear()
                parsed[expression_str] = tree
        return tree

    return [(models, "copy", _CopyOncePerTransaction()),
            (models.DynamoDBBackend, "transact_write_items", transact_write_items),
            (parser_cls, "make", classmethod(make))]
