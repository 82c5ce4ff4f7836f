"""Records every AWS call the code makes, with the principal it is made as, through botocore's event hooks.

Every botocore client created while the hook is installed gets two handlers: ``before-parameter-build`` (the
operation and its parameters, as the caller passed them) and ``after-call`` (the HTTP status and error code, which
decide S3's missing-key semantics). The principal is :func:`localrun.iamcheck.principals.current`; a call made by
moto's Step Functions interpreter (a service integration of the state machine) with no principal set is the state
machine's. Calls with no principal (harness set-up, test assertions) are kept but not checked.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from localrun.iamcheck.principals import Principal, current

_SFN_INTERPRETER = "moto.stepfunctions.parser"
_DROP_PARAMS = {"Body"}


@dataclass
class Call:
    """One AWS API call as the code made it."""

    principal: Principal | None
    service: str  # botocore service name (``s3``, ``dynamodb``, ``stepfunctions``, ...)
    prefix: str  # the IAM action prefix, from the service model's signing name (``states`` for stepfunctions)
    operation: str  # API operation (``GetObject``)
    params: dict[str, Any]
    status: int | None = None
    error_code: str | None = None


@dataclass
class Access:
    """One permission a call needs: the principal, the IAM action, the resource ARN and the request context."""

    principal: Principal
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)
    call: Call | None = None
    why: str = ""  # why this access is needed, when it is not the call's own action (S3 404, SSE-KMS, ...)


class Recorder:
    """Collects :class:`Call` records (and synthetic :class:`Access` records) while it is active."""

    def __init__(self, *, state_machine: Principal | None = None) -> None:
        self.calls: list[Call] = []
        self.extra: list[Access] = []
        self.state_machine = state_machine
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> Recorder:
        _install_hook()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)

    # -- recording ------------------------------------------------------------------------------------------

    def record_call(self, call: Call) -> None:
        """A call the simulation stands for without making it (e.g. Ground Truth's workers reading photos)."""
        with self._lock:
            self.calls.append(call)

    def record_access(self, access: Access) -> None:
        """An access the simulation makes without an API call of its own (e.g. Ground Truth's workers)."""
        with self._lock:
            self.extra.append(access)

    def _principal(self) -> Principal | None:
        who = current()
        if who is not None:
            return who
        if self.state_machine is not None and _in_sfn_interpreter():
            return self.state_machine
        return None

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        sm = model.service_model
        call = Call(self._principal(), sm.service_name, sm.signing_name or sm.endpoint_prefix, model.name,
                    {k: v for k, v in (params or {}).items() if k not in _DROP_PARAMS})
        context.setdefault("iamcheck_calls", []).append(call)
        with self._lock:
            self.calls.append(call)

    def _after(self, http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
        for call in context.get("iamcheck_calls", []):
            call.status = getattr(http_response, "status_code", None)
            error = (parsed or {}).get("Error") or {}
            call.error_code = error.get("Code")


def _in_sfn_interpreter() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(_SFN_INTERPRETER):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def record_access(access: Access) -> None:
    """Give ``access`` to every active recorder (no-op when none is active)."""
    for rec in list(_ACTIVE):
        rec.record_access(access)


def record_call(call: Call) -> None:
    """Give a simulated ``call`` to every active recorder (no-op when none is active)."""
    for rec in list(_ACTIVE):
        rec.record_call(call)


def active() -> bool:
    """Whether a recorder is listening (the harness skips synthetic accesses otherwise)."""
    return bool(_ACTIVE)


# ------------------------------------------------------------------------------------------------ botocore hook

_ACTIVE: list[Recorder] = []
_HOOK_LOCK = threading.Lock()
_HOOKED = False


def _before_any(**kwargs: Any) -> None:
    for rec in list(_ACTIVE):
        rec._before(**kwargs)


def _after_any(**kwargs: Any) -> None:
    for rec in list(_ACTIVE):
        rec._after(**kwargs)


def register(client: Any) -> Any:
    """Give ``client`` the recording handlers (idempotent); returns the client."""
    events = client.meta.events
    if not getattr(client, "_iamcheck_hooked", False):
        events.register("before-parameter-build", _before_any, unique_id="iamcheck-before")
        events.register("after-call", _after_any, unique_id="iamcheck-after")
        client._iamcheck_hooked = True
    return client


def _install_hook() -> None:
    """Make every botocore client created from now on record (once per process; inert with no active recorder)."""
    global _HOOKED
    with _HOOK_LOCK:
        if _HOOKED:
            return
        from botocore.client import ClientCreator

        original = ClientCreator.create_client

        def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
            return register(original(self, *args, **kwargs))

        ClientCreator.create_client = create_client

        # boto3's transfer manager (upload_fileobj, download_file) makes its S3 calls from worker threads, which
        # do not inherit the caller's context: submitted work runs in a copy of the submitter's context, so those
        # calls keep the principal of the code that started the transfer.
        from concurrent.futures import ThreadPoolExecutor

        submit = ThreadPoolExecutor.submit

        def submit_in_context(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

        ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign]
        _HOOKED = True
