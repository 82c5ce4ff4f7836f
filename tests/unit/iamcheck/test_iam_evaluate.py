"""The policy evaluator of the executed-IAM check: statements, conditions and the same-account decision rules."""

from __future__ import annotations

from typing import Any

import pytest

from localrun.iamcheck.evaluate import Statement, condition_holds, decide, wildcard_match
from localrun.iamcheck.principals import policy, role, service

ACCOUNT = "111111111111"
ROLE = role(f"arn:aws:iam::{ACCOUNT}:role/Publish", "function publish")
BUCKET = "arn:aws:s3:::art"
TLS = {"aws:SecureTransport": "true"}


def stmts(*docs: dict[str, Any]) -> list[Statement]:
    return [Statement(f"test#{i}", d) for i, d in enumerate(docs)]


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_wildcards_follow_iam() -> None:
    assert wildcard_match("s3:Get*", "s3:getobject", case_sensitive=False)
    assert wildcard_match(f"{BUCKET}/datasets/*", f"{BUCKET}/datasets/v1/x.json")
    assert not wildcard_match(f"{BUCKET}/datasets/*", f"{BUCKET}/jobs/x")
    assert wildcard_match("arn:aws:s3:::a?t", BUCKET)
    assert not wildcard_match(f"{BUCKET}/Datasets/*", f"{BUCKET}/datasets/x")  # resources are case-sensitive
    assert wildcard_match("a.b", "a.b") and not wildcard_match("a.b", "axb")  # "." is not a regex


@pytest.mark.parametrize(("operator", "key", "values", "context", "expected"), [
    ("StringLikeIfExists", "s3:prefix", ["datasets/*"], {}, True),  # absent: skipped
    ("StringLikeIfExists", "s3:prefix", ["datasets/*"], {"s3:prefix": ""}, False),
    ("StringLikeIfExists", "s3:prefix", ["datasets/*"], {"s3:prefix": "datasets/"}, True),
    ("StringLike", "s3:prefix", ["datasets/*"], {}, False),  # absent: a positive operator fails
    ("StringNotEquals", "aws:SourceAccount", [ACCOUNT], {}, True),  # absent: a negated operator matches
    ("StringEquals", "aws:SourceAccount", [ACCOUNT], {"aws:sourceaccount": ACCOUNT}, True),  # keys ignore case
    ("StringEqualsIfExists", "aws:SourceAccount", [ACCOUNT], {"aws:SourceAccount": "222222222222"}, False),
    ("Bool", "aws:SecureTransport", ["false"], TLS, False),
    ("Null", "s3:prefix", ["true"], {}, True),
    ("Null", "s3:prefix", ["false"], {}, False),
    ("NumericLessThan", "s3:TlsVersion", ["1.2"], {"s3:TlsVersion": "1.2"}, False),
    ("NumericLessThan", "s3:TlsVersion", ["1.2"], {"s3:TlsVersion": "1.0"}, True),
    ("ArnLike", "aws:SourceArn", ["arn:aws:s3:::art*"], {"aws:SourceArn": BUCKET}, True),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["b", "a"]}, True),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["b", "a"]}, False),
])
def test_condition_operators(operator: str, key: str, values: list[str], context: dict[str, Any],
                             expected: bool) -> None:
    assert condition_holds(operator, key, values, context) is expected


def test_an_unknown_operator_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="DateGreaterThan"):
        condition_holds("DateGreaterThan", "aws:CurrentTime", ["2020-01-01"], {"aws:CurrentTime": "x"})


def test_identity_allow_and_explicit_deny() -> None:
    identity = stmts(allow(["s3:GetObject", "s3:PutObject"], f"{BUCKET}/datasets/*"))
    tls_deny = stmts({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                      "Resource": [BUCKET, f"{BUCKET}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    ok = decide(ROLE, "s3:GetObject", f"{BUCKET}/datasets/LATEST", TLS, identity=identity, resource_policy=tls_deny,
                account=ACCOUNT)
    assert ok.allowed and ok.allowed_by == identity
    plain = decide(ROLE, "s3:GetObject", f"{BUCKET}/datasets/LATEST", {"aws:SecureTransport": "false"},
                   identity=identity, resource_policy=tls_deny, account=ACCOUNT)
    assert not plain.allowed and plain.denied_by == tls_deny
    other = decide(ROLE, "s3:ListBucket", BUCKET, TLS, identity=identity, resource_policy=tls_deny, account=ACCOUNT)
    assert not other.allowed and "no identity policy" in other.reason


def test_not_action_and_not_resource() -> None:
    identity = stmts({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{BUCKET}/*"},
                     {"Effect": "Deny", "Action": "s3:PutObject", "NotResource": f"{BUCKET}/datasets/*"})
    assert decide(ROLE, "s3:PutObject", f"{BUCKET}/datasets/x", TLS, identity=identity, resource_policy=[],
                  account=ACCOUNT).allowed
    assert not decide(ROLE, "s3:PutObject", f"{BUCKET}/jobs/x", TLS, identity=identity, resource_policy=[],
                      account=ACCOUNT).allowed
    assert not decide(ROLE, "s3:DeleteObject", f"{BUCKET}/datasets/x", TLS, identity=identity, resource_policy=[],
                      account=ACCOUNT).allowed


def test_resource_policy_grants_a_named_role_but_the_account_root_only_delegates() -> None:
    named = stmts({"Effect": "Allow", "Principal": {"AWS": ROLE.arn}, "Action": "sqs:SendMessage", "Resource": "*"})
    root = stmts({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sqs:SendMessage",
                  "Resource": "*"})
    q = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
    assert decide(ROLE, "sqs:SendMessage", q, TLS, identity=[], resource_policy=named, account=ACCOUNT).allowed
    assert not decide(ROLE, "sqs:SendMessage", q, TLS, identity=[], resource_policy=root, account=ACCOUNT).allowed


def test_kms_needs_the_key_policy_to_allow_or_delegate() -> None:
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k"
    identity = stmts(allow("kms:Decrypt", key))
    delegate = stmts({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                      "Action": ["kms:Decrypt"], "Resource": "*"})
    names_other = stmts({"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "kms:Decrypt",
                         "Resource": "*"})
    assert decide(ROLE, "kms:Decrypt", key, TLS, identity=identity, resource_policy=delegate, account=ACCOUNT,
                  kms_key=True).allowed
    refused = decide(ROLE, "kms:Decrypt", key, TLS, identity=identity, resource_policy=names_other, account=ACCOUNT,
                     kms_key=True)
    assert not refused.allowed and "does not delegate" in refused.reason
    assert not decide(ROLE, "kms:Decrypt", key, TLS, identity=[], resource_policy=delegate, account=ACCOUNT,
                      kms_key=True).allowed


def test_a_service_principal_needs_the_resource_policy_with_its_conditions() -> None:
    q = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
    s3 = service("s3.amazonaws.com")
    queue_policy = stmts({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                          "Resource": q, "Condition": {"ArnLike": {"aws:SourceArn": BUCKET}}})
    assert decide(s3, "sqs:SendMessage", q, {"aws:SourceArn": BUCKET}, identity=[], resource_policy=queue_policy,
                  account=ACCOUNT).allowed
    assert not decide(s3, "sqs:SendMessage", q, {"aws:SourceArn": "arn:aws:s3:::other"}, identity=[],
                      resource_policy=queue_policy, account=ACCOUNT).allowed


def test_a_documented_policy_is_an_identity_too() -> None:
    uploader = policy("uploader")
    identity = stmts(allow("s3:PutObject", "arn:aws:s3:::intake/uploads/*"))
    assert decide(uploader, "s3:PutObject", "arn:aws:s3:::intake/uploads/a.jpg", TLS, identity=identity,
                  resource_policy=[], account=ACCOUNT).allowed
    assert not decide(uploader, "s3:PutObject", "arn:aws:s3:::intake/labeling-copies/a.jpg", TLS, identity=identity,
                      resource_policy=[], account=ACCOUNT).allowed
