"""Connects the taxonomists' Cognito user pool to the Ground Truth labeling portal, after both exist.

The portal's address (the work team's sub-domain) is only known once the workforce exists, yet the app client's
callback URLs and the invitation e-mail need it (facts §6). This runs as a deploy-time custom resource: it reads the
sub-domain, points the client at the portal, puts the portal URL into the invitation message, and creates the
configured taxonomists so their invitations carry that URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INVITE_SUBJECT = "Your invitation to the {project} tree-labeling portal"
INVITE_BODY = (
    "You have been invited to label tree photos for {project} in the Amazon SageMaker Ground Truth labeling portal: "
    "{portal_url} . Sign in with user name {{username}} and temporary password {{####}} ; you will be asked to choose "
    "a new password and to set up an authenticator app (multi-factor authentication is required)."
)


@dataclass(frozen=True)
class PortalSettings:
    """What one deployment asks of the portal set-up (the custom resource's properties)."""

    project: str
    user_pool_id: str
    client_id: str
    workteam_name: str
    manage_client: bool
    manage_invitation: bool
    members: dict[str, list[str]] = field(default_factory=dict)  # e-mail -> groups

    @classmethod
    def from_properties(cls, props: dict[str, Any]) -> PortalSettings:
        def flag(name: str) -> bool:
            return str(props.get(name, "false")).lower() == "true"

        return cls(
            project=props["Project"],
            user_pool_id=props["UserPoolId"],
            client_id=props["ClientId"],
            workteam_name=props["WorkteamName"],
            manage_client=flag("ManageClient"),
            manage_invitation=flag("ManageInvitation"),
            members={m["Email"]: list(m["Groups"]) for m in props.get("Members", [])},
        )


def portal_url(sagemaker: Any, workteam_name: str) -> str:
    """The worker portal's sign-in URL, from the work team's sub-domain."""
    sub = sagemaker.describe_workteam(WorkteamName=workteam_name)["Workteam"]["SubDomain"]
    return sub if sub.startswith("https://") else f"https://{sub}"


def _copy_for_update(cognito: Any, operation: str, described: dict[str, Any]) -> dict[str, Any]:
    """Keep only what ``operation`` accepts: Update* calls reset every omitted field to its default (facts §6)."""
    accepted = cognito.meta.service_model.operation_model(operation).input_shape.members
    return {k: v for k, v in described.items() if k in accepted}


def point_client_at_portal(cognito: Any, user_pool_id: str, client_id: str, url: str) -> None:
    """Set the OAuth settings the portal signs in with, keeping every other client setting as it is."""
    client = cognito.describe_user_pool_client(UserPoolId=user_pool_id, ClientId=client_id)["UserPoolClient"]
    update = _copy_for_update(cognito, "UpdateUserPoolClient", client)
    update.update(
        CallbackURLs=[f"{url}/oauth2/idpresponse"],
        LogoutURLs=[f"{url}/logout"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["email", "openid", "profile"],
        SupportedIdentityProviders=["COGNITO"],
    )
    cognito.update_user_pool_client(**update)


def put_portal_in_invitation(cognito: Any, user_pool_id: str, project: str, url: str) -> None:
    """Make the invitation e-mail name the labeling portal and link to it, keeping the rest of the pool as it is."""
    pool = cognito.describe_user_pool(UserPoolId=user_pool_id)["UserPool"]
    update = _copy_for_update(cognito, "UpdateUserPool", pool)
    admin = dict(update.get("AdminCreateUserConfig") or {})
    admin["AllowAdminCreateUserOnly"] = True
    admin["InviteMessageTemplate"] = {
        **(admin.get("InviteMessageTemplate") or {}),
        "EmailSubject": INVITE_SUBJECT.format(project=project),
        "EmailMessage": INVITE_BODY.format(project=project, portal_url=url),
    }
    update["AdminCreateUserConfig"] = admin
    update["UserPoolId"] = user_pool_id
    cognito.update_user_pool(**update)


def ensure_members(cognito: Any, user_pool_id: str, members: dict[str, list[str]]) -> dict[str, str]:
    """Create each configured person once (Cognito e-mails the invitation) and add them to their groups.

    Returns:
        e-mail -> ``created`` or ``existing``.
    """
    outcome: dict[str, str] = {}
    for email, groups in sorted(members.items()):
        try:
            cognito.admin_get_user(UserPoolId=user_pool_id, Username=email)
            outcome[email] = "existing"
        except cognito.exceptions.UserNotFoundException:
            cognito.admin_create_user(
                UserPoolId=user_pool_id,
                Username=email,
                UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
                DesiredDeliveryMediums=["EMAIL"],
            )
            outcome[email] = "created"
        for group in groups:
            cognito.admin_add_user_to_group(UserPoolId=user_pool_id, Username=email, GroupName=group)
    return outcome


def set_up_portal(cognito: Any, sagemaker: Any, settings: PortalSettings) -> dict[str, str]:
    """Run the whole set-up; idempotent, so CloudFormation updates may call it again.

    Returns:
        ``{"PortalUrl": ...}`` for the custom resource's attributes.
    """
    url = portal_url(sagemaker, settings.workteam_name)
    if settings.manage_client:
        point_client_at_portal(cognito, settings.user_pool_id, settings.client_id, url)
    if settings.manage_invitation:
        put_portal_in_invitation(cognito, settings.user_pool_id, settings.project, url)
    ensure_members(cognito, settings.user_pool_id, settings.members)
    return {"PortalUrl": url}
