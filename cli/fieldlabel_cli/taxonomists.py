"""Managing the private workforce's members in Cognito: invite, remove, list.

A taxonomist is a Cognito user in the taxonomists group (the work team's group); a senior reviewer is additionally in
the reviewers group. Users are created with their e-mail as username, so they sign in with it, and Cognito e-mails
the invitation with a temporary password (facts §6, "Inviting workers").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel_cli.errors import CliError, UsageError, error_code

# Deliberately simple: one @, a dot in the domain, no spaces. Cognito does its own stricter check.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")


def validate_email(email: str) -> str:
    """Return ``email`` trimmed and lower-cased.

    Raises:
        UsageError: ``email`` is not of the form name@domain.tld.
    """
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise UsageError(f"not a valid e-mail address: {email!r} (expected something like name@institute.org)")
    return value


@dataclass(frozen=True)
class Groups:
    """Names of the Cognito groups (from the Workforce stack's outputs)."""

    taxonomists: str
    reviewers: str


@dataclass
class AddResult:
    """What :func:`add_taxonomist` did."""

    email: str
    created: bool
    groups: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "created": self.created, "groups": self.groups}


def _find_username(cognito: Any, pool_id: str, email: str) -> str | None:
    """The Cognito username of the user with this e-mail, or None (handles pools where username != e-mail)."""
    try:
        cognito.admin_get_user(UserPoolId=pool_id, Username=email)
        return email
    except ClientError as exc:
        if error_code(exc) != "UserNotFoundException":
            raise
    users = cognito.list_users(UserPoolId=pool_id, Filter=f'email = "{email}"', Limit=2).get("Users", [])
    return users[0]["Username"] if users else None


def add_taxonomist(
    cognito: Any, *, pool_id: str, groups: Groups, email: str, name: str | None = None, reviewer: bool = False
) -> AddResult:
    """Invite ``email`` (AdminCreateUser, invitation by e-mail) and put them in the taxonomists group, plus the
    reviewers group with ``reviewer``. Idempotent: an existing user is only added to the groups.

    Raises:
        ClientError: Cognito refused (e.g. the pool or a group does not exist).
    """
    email = validate_email(email)
    attributes = [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]
    if name:
        attributes.append({"Name": "name", "Value": name})
    created = True
    username = email
    try:
        cognito.admin_create_user(
            UserPoolId=pool_id, Username=email, UserAttributes=attributes, DesiredDeliveryMediums=["EMAIL"]
        )
    except ClientError as exc:
        if error_code(exc) != "UsernameExistsException":
            raise
        created = False
        username = _find_username(cognito, pool_id, email) or email
    wanted = [groups.taxonomists] + ([groups.reviewers] if reviewer else [])
    for group in wanted:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return AddResult(email=email, created=created, groups=wanted)


def remove_taxonomist(
    cognito: Any, *, pool_id: str, groups: Groups, email: str, reviewer_only: bool = False
) -> dict[str, Any]:
    """Take ``email`` off the reviewers group (``reviewer_only``), or off both groups and delete the user.

    Raises:
        CliError: no user has this e-mail.
        ClientError: Cognito refused.
    """
    email = validate_email(email)
    username = _find_username(cognito, pool_id, email)
    if username is None:
        raise CliError(f"no user with e-mail {email} in user pool {pool_id}")
    removed_from: list[str] = []
    for group in [groups.reviewers] if reviewer_only else [groups.reviewers, groups.taxonomists]:
        member_of = _groups_of(cognito, pool_id, username)
        if group in member_of:
            cognito.admin_remove_user_from_group(UserPoolId=pool_id, Username=username, GroupName=group)
            removed_from.append(group)
    deleted = False
    if not reviewer_only:
        cognito.admin_delete_user(UserPoolId=pool_id, Username=username)
        deleted = True
    return {"email": email, "removed_from": removed_from, "deleted": deleted}


def _groups_of(cognito: Any, pool_id: str, username: str) -> set[str]:
    names: set[str] = set()
    paginator = cognito.get_paginator("admin_list_groups_for_user")
    for page in paginator.paginate(UserPoolId=pool_id, Username=username):
        names.update(g["GroupName"] for g in page.get("Groups", []))
    return names


def _attr(user: dict[str, Any], name: str) -> str:
    for a in user.get("Attributes", []) or user.get("UserAttributes", []):
        if a["Name"] == name:
            return str(a["Value"])
    return ""


def _members(cognito: Any, pool_id: str, group: str) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    paginator = cognito.get_paginator("list_users_in_group")
    for page in paginator.paginate(UserPoolId=pool_id, GroupName=group):
        users.extend(page.get("Users", []))
    return users


def list_taxonomists(cognito: Any, *, pool_id: str, groups: Groups) -> list[dict[str, Any]]:
    """Members of the taxonomists group, each with ``reviewer`` telling whether they are in the reviewers group.

    Reviewers outside the taxonomists group are listed too (``taxonomist: false``): the Workforce stack's config
    may name senior reviewers who do not label.
    """
    reviewers = {u["Username"]: u for u in _members(cognito, pool_id, groups.reviewers)}
    taxonomists = {u["Username"]: u for u in _members(cognito, pool_id, groups.taxonomists)}
    rows: list[dict[str, Any]] = []
    for username in sorted(set(taxonomists) | set(reviewers)):
        user = taxonomists.get(username) or reviewers[username]
        created = user.get("UserCreateDate")
        rows.append({
            "email": _attr(user, "email") or username,
            "name": _attr(user, "name"),
            "status": user.get("UserStatus", ""),
            "enabled": bool(user.get("Enabled", True)),
            "taxonomist": username in taxonomists,
            "reviewer": username in reviewers,
            "created": created.isoformat() if isinstance(created, datetime) else str(created or ""),
        })
    return sorted(rows, key=lambda r: r["email"])


def render_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`list_taxonomists` rows."""
    if not rows:
        return "No taxonomists yet. Invite one with: fieldlabel taxonomists add EMAIL"
    headers = ["EMAIL", "NAME", "STATUS", "ROLE"]
    table = [
        [r["email"], r["name"], r["status"] + ("" if r["enabled"] else " (disabled)"),
         ("taxonomist+reviewer" if r["reviewer"] else "taxonomist") if r["taxonomist"] else "reviewer"]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines)
