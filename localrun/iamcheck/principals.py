"""Who is calling: the principal an AWS call is made as, set by the code that plays that principal.

In AWS every request is signed by a principal: a function's execution role, the state machine's role, the role
Ground Truth assumes, a scientist's credentials. In the harness everything runs in one process with one set of
fake credentials, so the harness says who it is acting as (:func:`acting_as`) around the code it runs for that
principal, and the recorder reads :func:`current`. Kept free of moto and botocore so the harness can import it
cheaply.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """A caller.

    ``kind``: ``role`` (an IAM role of the templates; ``arn`` is its ARN in the harness account), ``policy`` (an
    identity whose policy a document gives, e.g. the scientists' upload policy; ``name`` names it), ``service`` (an
    AWS service acting with its own service principal, ``name`` = ``s3.amazonaws.com``; only resource policies
    apply) or ``internal`` (the platform itself, e.g. Lambda's event source mapping invoking a function: no IAM
    check is made on it in AWS, so none is made here).
    """

    kind: str
    name: str
    arn: str | None = None
    label: str | None = None  # what plays this principal: "function PublishDataset", "state machine", ...

    def describe(self) -> str:
        what = self.label or self.name
        return f"{what} ({self.arn})" if self.arn else what


def role(arn: str, label: str | None = None) -> Principal:
    """The IAM role with ``arn`` (``arn:aws:iam::<account>:role/<logical id>`` in the harness)."""
    return Principal("role", arn.rsplit("/", 1)[-1], arn, label)


def service(name: str, label: str | None = None) -> Principal:
    """An AWS service principal such as ``s3.amazonaws.com``."""
    return Principal("service", name, None, label)


def policy(name: str, label: str | None = None) -> Principal:
    """An identity defined by a policy document outside the templates (see ``localrun.iamcheck.documented``)."""
    return Principal("policy", name, None, label)


UPLOADER = policy("uploader", "scientist uploading (docs/uploader-policy.json)")
INTERNAL = Principal("internal", "aws-internal", None, "the AWS platform (no IAM check)")

_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("iam_principal", default=None)


def current() -> Principal | None:
    """The principal the running code acts as, or None (harness set-up, test assertions: not checked)."""
    return _CURRENT.get()


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Run the block as ``principal`` (None: leave the current principal as it is)."""
    if principal is None:
        yield
        return
    token = _CURRENT.set(principal)
    try:
        yield
    finally:
        _CURRENT.reset(token)
