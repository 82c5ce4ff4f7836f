"""The executed-IAM check: every recorded access evaluated against the templates' IAM, and the grants never used.

Typical use (the e2e tests do this through a fixture, see tests/e2e/conftest.py)::

    check = IamCheck(templates, account)
    with check.recorder() as rec:
        ... run the workflow ...
    result = check.evaluate(rec)
    assert not result.denied, result.message()
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from localrun.iamcheck.actions import AccessMapper
from localrun.iamcheck.evaluate import Decision, Statement, as_list, decide, wildcard_match
from localrun.iamcheck.policies import PolicyModel, load
from localrun.iamcheck.principals import Principal, role
from localrun.iamcheck.recorder import Access, Recorder


@dataclass
class Denied:
    access: Access
    decision: Decision
    count: int = 1


@dataclass
class Result:
    denied: list[Denied]
    checked: int  # accesses evaluated
    unattributed: int  # calls made with no principal (harness set-up, assertions): not checked
    unmapped: list[str]  # calls with no action mapping (checked against resource "*")
    model: PolicyModel = field(repr=False)

    def message(self) -> str:
        lines = [f"executed IAM: {len(self.denied)} distinct access(es) the deployed IAM would deny "
                 f"({self.checked} accesses checked):"]
        for d in self.denied:
            a = d.access
            lines.append(f"- caller:   {describe(a.principal, self.model)}")
            if a.call is not None:
                args = {k: v for k, v in a.call.params.items() if isinstance(v, str | int)}
                lines.append(f"  call:     {a.call.service}.{a.call.operation} {json.dumps(args)[:300]}"
                             f" -> {a.call.status or '?'}{' x' + str(d.count) if d.count > 1 else ''}")
            lines.append(f"  needs:    {a.action} on {a.resource}")
            if a.why:
                lines.append(f"  why:      {a.why}")
            lines.append(f"  decision: {d.decision.reason}")
            for s in d.decision.denied_by:
                lines.append(f"  denied by {s.source}: {json.dumps(s.doc)}")
            lines.append(f"  allow it with: {json.dumps(suggested_statement(a))}")
            close = closest(a, self.model)
            if close:
                lines.append(f"  closest grant of the caller: {close}")
        return "\n".join(lines)


def describe(p: Principal, model: PolicyModel) -> str:
    if p.kind == "role" and p.arn:
        return f"{p.label or 'role'} = {model.role_label(p.arn)} ({p.arn})"
    return p.describe()


def suggested_statement(a: Access) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Effect": "Allow", "Action": a.action, "Resource": a.resource}
    if a.principal.kind == "service":
        stmt["Principal"] = {"Service": a.principal.name}
    return stmt


def closest(a: Access, model: PolicyModel) -> str | None:
    """The caller's statement that grants this action elsewhere, or else its grants of the same service on the
    same resource or inside it (a bucket's objects), to show what the new statement sits next to."""
    stmts = [s for s in identity_of(a.principal, model) if s.effect == "Allow"]
    prefix = a.action.split(":")[0] + ":"
    for s in stmts:
        if any(wildcard_match(str(p), a.action, case_sensitive=False) for p in as_list(s.doc.get("Action"))):
            return f"{s.source}: {json.dumps(s.doc)}"
    base = resource_key(a.resource)
    for s in stmts:
        if any(str(p).lower().startswith(prefix) for p in as_list(s.doc.get("Action"))) and any(
                str(r) == base or str(r).startswith(base + "/") for r in as_list(s.doc.get("Resource"))):
            return f"{s.source}: {json.dumps(s.doc)}"
    return None


def identity_of(p: Principal, model: PolicyModel) -> list[Statement]:
    if p.kind == "role" and p.arn:
        info = model.roles.get(p.arn)
        return info.statements if info else []
    if p.kind == "policy":
        return model.documented.get(p.name, [])
    return []


def resource_key(resource: str) -> str:
    if resource.startswith("arn:aws:s3:::"):
        return "arn:aws:s3:::" + resource[len("arn:aws:s3:::"):].split("/", 1)[0]
    if ":function:" in resource:
        head, tail = resource.split(":function:", 1)
        return f"{head}:function:{tail.split(':')[0]}"
    return resource


class IamCheck:
    """The templates' IAM for one harness account, and the check of recorded calls against it."""

    def __init__(self, templates: dict[str, dict[str, Any]], account: str) -> None:
        self.model = load(templates, account)
        self.mapper = AccessMapper(self.model)
        # (principal key, statement source, action pattern, resource pattern) pairs that allowed something
        self.exercised: set[tuple[str, str, str, str]] = set()
        self.principals_seen: set[str] = set()

    # -- principals the harness acts as ----------------------------------------------------------------------

    def state_machine(self) -> Principal | None:
        arn = self.model.state_machine_role
        return role(arn, "state machine") if arn else None

    def recorder(self) -> Recorder:
        return Recorder(state_machine=self.state_machine())

    # -- evaluation --------------------------------------------------------------------------------------------

    def evaluate(self, rec: Recorder) -> Result:
        accesses: list[Access] = []
        unattributed = 0
        unmapped: list[str] = []
        for call in rec.calls:
            if call.principal is None:
                unattributed += 1
                continue
            got = self.mapper.accesses(call)
            unmapped += [f"{call.service}.{call.operation}" for a in got if a.why.startswith("no mapping")]
            accesses += got
        accesses += rec.extra
        denied: dict[tuple[str, str, str], Denied] = {}
        for a in accesses:
            d = self.decide(a)
            key = (a.principal.arn or a.principal.name, a.action, a.resource)
            if d.allowed:
                self._note_exercised(a, d)
            elif key in denied:
                denied[key].count += 1
            else:
                denied[key] = Denied(a, d)
        return Result(list(denied.values()), len(accesses), unattributed, sorted(set(unmapped)), self.model)

    def decide(self, a: Access) -> Decision:
        res_key = resource_key(a.resource)
        is_key = a.action.startswith("kms:")
        if is_key and res_key not in self.model.kms_keys:
            return Decision(False, f"{res_key} is not a key the templates define")
        return decide(a.principal, a.action, a.resource, a.context,
                      identity=identity_of(a.principal, self.model),
                      resource_policy=self.model.resource_policies.get(res_key, []),
                      account=self.model.account, kms_key=is_key)

    def _note_exercised(self, a: Access, d: Decision) -> None:
        pkey = a.principal.arn or a.principal.name
        self.principals_seen.add(pkey)
        for s in d.allowed_by:
            acts = [str(p) for p in as_list(s.doc.get("Action")) if wildcard_match(str(p), a.action,
                                                                                  case_sensitive=False)]
            ress = [str(r) for r in as_list(s.doc.get("Resource")) if wildcard_match(str(r), a.resource)]
            for act in acts or ["NotAction"]:
                for r in ress or ["NotResource"]:
                    self.exercised.add((pkey, s.source, act.lower(), r))

    # -- the report of grants never used ---------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        """Every granted (principal, statement, action, resource) and which were exercised, as JSON-able data, so
        that ledgers of several test processes (pytest-xdist workers) can be merged with :func:`unexercised`."""
        grants: list[list[str]] = []
        named = [(arn, info.statements, self.model.role_label(arn)) for arn, info in sorted(self.model.roles.items())]
        named += [(name, stmts, f"docs: {name} policy") for name, stmts in sorted(self.model.documented.items())]
        for key, stmts, label in named:
            for st in stmts:
                if st.effect != "Allow":
                    continue
                for act in as_list(st.doc.get("Action")):
                    for r in as_list(st.doc.get("Resource")):
                        grants.append([key, label, st.source, str(act), str(r)])
        return {"grants": grants, "exercised": sorted(list(x) for x in self.exercised),
                "principals_seen": sorted(self.principals_seen)}


def unexercised(ledgers: list[dict[str, Any]]) -> list[str]:
    """One line per (action, resource) an Allow statement of an exercised principal grants that nothing used."""
    exercised = {tuple(x) for led in ledgers for x in led["exercised"]}
    seen = {p for led in ledgers for p in led["principals_seen"]}
    grants = {tuple(g) for led in ledgers for g in led["grants"]}
    lines: list[str] = []
    never: set[str] = set()
    for key, label, source, act, res in sorted(grants, key=lambda g: (g[1], g[2], g[3], g[4])):
        if key not in seen:
            never.add(label)
        elif (key, source, act.lower(), res) not in exercised:
            lines.append(f"{label}: {act} on {res}  [{source}]")
    roles = Counter(line.split(":")[0] for line in lines)
    head = [f"Grants never exercised by these tests: {len(lines)} (action, resource) pairs in {len(roles)} roles; "
            f"roles never exercised: {len(never)}",
            "(Not a failure: X-Ray, logs and DynamoDB's use of the table key are not modeled; some paths are not "
            "covered by the e2e tests. Review each line.)", ""]
    return head + lines + ([""] + [f"never exercised: {n}" for n in sorted(never)] if never else [])
