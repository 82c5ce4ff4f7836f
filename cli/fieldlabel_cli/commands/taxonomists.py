"""``fieldlabel taxonomists {add,remove,list}``: the private workforce's members (Cognito only)."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, CliError, UsageError, error_code, translate_aws_error
from fieldlabel_cli.labelstudio import account_text, ensure_account
from fieldlabel_cli.taxonomists import (
    Groups,
    add_taxonomist,
    list_taxonomists,
    remove_taxonomist,
    render_table,
    validate_email,
)

HELP = "invite, remove and list the taxonomists who label photos"
DESCRIPTION = """\
Manage the taxonomists of the private workforce (Cognito users in the taxonomists group;
senior reviewers are also in the reviewers group). New users receive an e-mail invitation
with a temporary password. When the deployment labels in Label Studio, `add` also creates
the person's Label Studio account (through the deployment's accounts function) and prints its
one-time password once."""


def _pool_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Cognito (default: from the Workforce stack outputs)")
    g.add_argument("--user-pool-id", help="user pool id (output UserPoolId)")
    g.add_argument("--taxonomists-group", help="taxonomists group name (output TaxonomistsGroup)")
    g.add_argument("--reviewers-group", help="senior reviewers group name (output ReviewersGroup)")


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``taxonomists`` and its subcommands."""
    p = subparsers.add_parser("taxonomists", help=HELP, description=DESCRIPTION, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(title="actions", dest="action", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", parents=parents, help="invite a taxonomist by e-mail",
                         description="Create the user (Cognito sends the invitation e-mail) and add them to the "
                                     "taxonomists group; with --reviewer also to the reviewers group. Running it "
                                     "again for an existing user only adds the groups.",
                         epilog="example:\n  fieldlabel taxonomists add ana@botany.example.org --name 'Ana Silva'",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", help="display name")
    add.add_argument("--reviewer", action="store_true", help="also make them a senior reviewer")
    _pool_options(add)
    g = add.add_argument_group("Label Studio (default: from the stack outputs; only with labeling.backend "
                               "label_studio)")
    g.add_argument("--label-studio-accounts-function",
                   help="the function that makes accounts inside the VPC (output LabelStudioAccountsFunctionName)")
    g.add_argument("--label-studio-url",
                   help="talk to this server directly instead (the local demo's server, or a tunnel); needs the "
                        "admin API token")
    g.add_argument("--label-studio-token-secret",
                   help="with --label-studio-url: secret holding the admin API token (output "
                        "LabelStudioTokenSecretArn; FIELDLABEL_LABEL_STUDIO_TOKEN overrides it)")
    add.set_defaults(handler=handle_add)

    rm = sub.add_parser("remove", parents=parents, help="remove a taxonomist (asks for confirmation)",
                        description="Remove the user from both groups and delete them from the user pool. With "
                                    "--reviewer-only, only take away the senior-reviewer role.",
                        epilog="example:\n  fieldlabel taxonomists remove ana@botany.example.org --yes",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rm.add_argument("email", metavar="EMAIL")
    rm.add_argument("--reviewer-only", action="store_true", help="keep the user; remove only the reviewer role")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _pool_options(rm)
    rm.set_defaults(handler=handle_remove)

    ls = sub.add_parser("list", parents=parents, help="list taxonomists and reviewers",
                        description="List the members of the taxonomists and reviewers groups.")
    _pool_options(ls)
    ls.set_defaults(handler=handle_list)


def _pool(ctx: AppContext) -> tuple[str, Groups]:
    pool_id = ctx.resolver.get("UserPoolId")
    groups = Groups(taxonomists=ctx.resolver.get("TaxonomistsGroup"), reviewers=ctx.resolver.get("ReviewersGroup"))
    return pool_id, groups


def _cognito_error(exc: ClientError, pool_id: str, groups: Groups) -> CliError:
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        return CliError(f"user pool {pool_id!r} or group {groups.taxonomists!r}/{groups.reviewers!r} not found "
                        "(check --user-pool-id, the group options, --outputs or --stack-prefix)")
    if code == "InvalidParameterException":
        return CliError(f"Cognito rejected the request: {exc.response.get('Error', {}).get('Message', '')}")
    return translate_aws_error(exc, what=f"user pool {pool_id!r}")


def handle_add(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``taxonomists add``."""
    email = validate_email(args.email)  # before any AWS call, so a typo costs nothing
    pool_id, groups = _pool(ctx)
    cognito = ctx.client("cognito-idp")
    try:
        result = add_taxonomist(cognito, pool_id=pool_id, groups=groups, email=email, name=args.name,
                                reviewer=args.reviewer)
    except ClientError as exc:
        raise _cognito_error(exc, pool_id, groups) from exc
    verb = "Invited" if result.created else "Already a user:"
    text = f"{verb} {result.email}; groups: {', '.join(result.groups)}" + (
        " (invitation e-mail sent)" if result.created else "")
    out = result.as_dict()
    # Label Studio has no single sign-on in its community edition: the person needs an account there too.
    account = ensure_account(ctx, result.email, args.name, direct_url=args.label_studio_url)
    if account is not None:
        out["label_studio"] = account
        text += "\n" + account_text(account)
    ctx.emit(out, text)
    return EXIT_OK


def _confirm(ctx: AppContext, question: str) -> bool:
    if not getattr(ctx.stdin, "isatty", lambda: False)():
        raise UsageError("refusing to remove without confirmation: not an interactive terminal; pass --yes")
    ctx.stderr.write(f"{question} [y/N] ")
    ctx.stderr.flush()
    answer = ctx.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def handle_remove(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``taxonomists remove``."""
    email = validate_email(args.email)
    pool_id, groups = _pool(ctx)
    what = "remove the reviewer role of" if args.reviewer_only else "remove and delete the user"
    if not args.yes and not _confirm(ctx, f"Really {what} {email}?"):
        ctx.info("Nothing changed.")
        return EXIT_OK
    cognito = ctx.client("cognito-idp")
    try:
        result = remove_taxonomist(cognito, pool_id=pool_id, groups=groups, email=email,
                                   reviewer_only=args.reviewer_only)
    except ClientError as exc:
        raise _cognito_error(exc, pool_id, groups) from exc
    text = f"Removed {email} from {', '.join(result['removed_from']) or 'no group'}"
    if result["deleted"]:
        text += "; user deleted"
    ctx.emit(result, text)
    return EXIT_OK


def handle_list(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``taxonomists list``."""
    pool_id, groups = _pool(ctx)
    cognito = ctx.client("cognito-idp")
    try:
        rows = list_taxonomists(cognito, pool_id=pool_id, groups=groups)
    except ClientError as exc:
        raise _cognito_error(exc, pool_id, groups) from exc
    ctx.emit(rows, lambda: render_table(rows))
    return EXIT_OK
