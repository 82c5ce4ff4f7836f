"""IAM policy evaluation for one account: statements, conditions, identity plus resource policies.

Covers what the project's templates use: Allow and Deny, Action/NotAction, Resource/NotResource with ``*`` and
``?`` wildcards, Principal matching in resource policies, and the condition operators String*, Arn*, Bool,
Numeric*, Null, with ``IfExists`` and ``ForAnyValue:``/``ForAllValues:``. Same-account logic: an explicit Deny in
any applicable policy wins; otherwise an Allow in the caller's identity policies or a resource policy that names
the caller (its role ARN, ``*``, or its service) grants. A resource policy that names the account root only
delegates to IAM. KMS is stricter: the key policy must allow the caller, directly or by delegating to the account
root (and then an identity policy must allow too). Not covered: permission boundaries, SCPs, session policies,
policy variables, cross-account access (none of them is in the templates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from localrun.iamcheck.principals import Principal


@dataclass(frozen=True)
class Statement:
    """One policy statement, with where it comes from (for messages and the unexercised-grants report)."""

    source: str  # "pipeline/PublishRoleDefaultPolicy#3", "storage/IntakeBucketPolicy#0", ...
    doc: dict[str, Any] = field(hash=False, compare=False)

    @property
    def effect(self) -> str:
        return str(self.doc.get("Effect", "Allow"))


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters (including "/" and ":"), ? one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    return bool(_wildcard(pattern, case_sensitive).match(value))


def action_matches(statement: dict[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(wildcard_match(p, action, case_sensitive=False) for p in as_list(statement["Action"]))
    if "NotAction" in statement:
        return not any(wildcard_match(p, action, case_sensitive=False) for p in as_list(statement["NotAction"]))
    return False


def resource_matches(statement: dict[str, Any], resource: str) -> bool:
    if "Resource" in statement:
        return any(wildcard_match(str(p), resource) for p in as_list(statement["Resource"]))
    if "NotResource" in statement:
        return not any(wildcard_match(str(p), resource) for p in as_list(statement["NotResource"]))
    return True  # resource policies may omit Resource? (IAM requires it; treat as "this resource")


# -------------------------------------------------------------------------------------------------- conditions


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _op_result(base: str, policy_value: str, request_value: Any) -> bool:
    rv = str(request_value)
    pv = str(policy_value)
    if base == "StringEquals":
        return rv == pv
    if base == "StringEqualsIgnoreCase":
        return rv.lower() == pv.lower()
    if base == "StringLike":
        return wildcard_match(pv, rv)
    if base == "ArnEquals":
        return rv == pv
    if base == "ArnLike":
        return wildcard_match(pv, rv)
    if base == "Bool":
        return rv.lower() == pv.lower()
    if base.startswith("Numeric"):
        a, b = _num(rv), _num(pv)
        if a is None or b is None:
            return False
        return {"NumericEquals": a == b, "NumericLessThan": a < b, "NumericLessThanEquals": a <= b,
                "NumericGreaterThan": a > b, "NumericGreaterThanEquals": a >= b}[base]
    raise ValueError(f"condition operator {base} is not supported by the evaluator")


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
            "NumericNotEquals": "NumericEquals"}


def condition_holds(operator: str, key: str, policy_values: Any, context: dict[str, Any]) -> bool:
    """One ``{operator: {key: values}}`` entry against the request context (keys are case-insensitive)."""
    qualifier = ""
    if ":" in operator and operator.split(":", 1)[0] in ("ForAnyValue", "ForAllValues"):
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    ctx = {k.lower(): v for k, v in context.items()}
    present = key.lower() in ctx and ctx[key.lower()] is not None
    pvs = [str(v) for v in as_list(policy_values)]
    if operator == "Null":
        want_null = pvs[0].lower() == "true"
        return want_null != present
    if not present:
        # Missing key: a negated operator matches, a positive one does not (IfExists: the condition is skipped).
        return if_exists or operator in _NEGATED or qualifier == "ForAllValues"
    values = as_list(ctx[key.lower()])
    negated = operator in _NEGATED
    base = _NEGATED.get(operator, operator)

    def one(v: Any) -> bool:
        hit = any(_op_result(base, pv, v) for pv in pvs)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def conditions_hold(statement: dict[str, Any], context: dict[str, Any]) -> bool:
    for operator, entries in (statement.get("Condition") or {}).items():
        for key, values in entries.items():
            if not condition_holds(operator, key, values, context):
                return False
    return True


# ------------------------------------------------------------------------------------------------- principals


def principal_matches(statement: dict[str, Any], who: Principal, account: str) -> str | None:
    """How a resource-policy statement's Principal covers ``who``: "direct", "account" (root: delegates) or None."""
    if "NotPrincipal" in statement:
        raise ValueError("NotPrincipal is not supported by the evaluator")
    p = statement.get("Principal")
    if p == "*":
        return "direct"
    if not isinstance(p, dict):
        return None
    for kind, values in p.items():
        for v in as_list(values):
            v = str(v)
            if kind == "AWS":
                if v == "*":
                    return "direct"
                if who.kind == "role" and who.arn and v == who.arn:
                    return "direct"
                if v in (account, f"arn:aws:iam::{account}:root") and who.kind in ("role", "policy"):
                    return "account"
            elif kind == "Service" and who.kind == "service" and v == who.name:
                return "direct"
    return None


# --------------------------------------------------------------------------------------------------- decisions


@dataclass
class Decision:
    allowed: bool
    reason: str
    allowed_by: list[Statement] = field(default_factory=list)
    denied_by: list[Statement] = field(default_factory=list)


def _applies(stmt: Statement, action: str, resource: str, context: dict[str, Any]) -> bool:
    d = stmt.doc
    return action_matches(d, action) and resource_matches(d, resource) and conditions_hold(d, context)


def decide(
    who: Principal,
    action: str,
    resource: str,
    context: dict[str, Any],
    *,
    identity: list[Statement],
    resource_policy: list[Statement],
    account: str,
    kms_key: bool = False,
) -> Decision:
    """Is ``who`` allowed ``action`` on ``resource``? ``identity``: the caller's identity statements;
    ``resource_policy``: the statements of the resource's policy (bucket, key, queue, topic), if any."""
    id_hits = [s for s in identity if _applies(s, action, resource, context)]
    res_hits: list[tuple[Statement, str]] = []
    for s in resource_policy:
        how = principal_matches(s.doc, who, account)
        if how and _applies(s, action, resource, context):
            res_hits.append((s, how))
    denies = [s for s in id_hits if s.effect == "Deny"] + [s for s, _ in res_hits if s.effect == "Deny"]
    if denies:
        return Decision(False, "explicitly denied", denied_by=denies)
    id_allows = [s for s in id_hits if s.effect == "Allow"]
    res_direct = [s for s, how in res_hits if s.effect == "Allow" and how == "direct"]
    res_account = [s for s, how in res_hits if s.effect == "Allow" and how == "account"]
    if kms_key:
        if res_direct:
            return Decision(True, "the key policy allows the caller", allowed_by=res_direct)
        if res_account and id_allows:
            return Decision(True, "the key policy delegates to IAM and an identity policy allows",
                            allowed_by=id_allows + res_account)
        if not res_account and id_allows:
            return Decision(False, "an identity policy allows, but the key policy does not delegate to IAM")
        return Decision(False, "no identity policy allows it")
    if who.kind == "service":
        if res_direct:
            return Decision(True, "the resource policy allows the service", allowed_by=res_direct)
        return Decision(False, "no resource policy allows the service")
    if id_allows or res_direct:
        return Decision(True, "allowed", allowed_by=id_allows + res_direct)
    return Decision(False, "no identity policy allows it" + (
        "" if not resource_policy else " and the resource policy does not name the caller"))

