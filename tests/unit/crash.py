"""Crash injection at the AWS boundary: the n-th AWS write of a run happens, then the run dies.

:class:`CrashAfter` wraps boto3 clients (any number, sharing one count). Every call of a write operation that
succeeds is counted; the ``n``-th one raises :class:`Crash` right after AWS applied it, which is the worst moment for
a crash (the write is done, nothing after it is). ``n = None`` never crashes and only records the writes, so a test
first counts a clean run's writes and then crashes after each of them in turn.
"""

from __future__ import annotations

from typing import Any

# Operations that change something, across the services the pipeline calls.
WRITE_OPERATIONS = frozenset({
    "put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item",
    "put_object", "upload_fileobj", "copy_object", "delete_object", "put_object_tagging",
    "create_labeling_job", "stop_labeling_job", "start_execution", "publish",
})


class Crash(Exception):  # noqa: N818 - reads as what happened
    """The injected crash (after the write it follows was applied)."""


class CrashAfter:
    """One crash plan shared by the clients it wraps."""

    def __init__(self, n: int | None, *, operation: str | None = None) -> None:
        """Crash after the ``n``-th write, or (``operation``) after the first successful call of that operation."""
        self.n = n
        self.operation = operation
        self.writes: list[str] = []

    def wrap(self, client: Any) -> Any:
        """``client`` with its write operations counted (and the n-th one followed by a crash)."""
        return _Counted(client, self)

    def _after_write(self, name: str) -> None:
        self.writes.append(name)
        if (self.n is not None and len(self.writes) == self.n) or name == self.operation:
            raise Crash(f"crash after write {len(self.writes)} ({name})")


class _Counted:
    def __init__(self, client: Any, plan: CrashAfter) -> None:
        self._client = client
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in WRITE_OPERATIONS or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)  # a refused (conditional) write raises here and is not counted
            self._plan._after_write(name)
            return out

        return call
