"""Entry point of ``fieldlabel``: global options, subcommands, and the one place where errors become exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fieldlabel_cli import __version__
from fieldlabel_cli.commands import COMMAND_MODULES
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, translate_aws_error

DESCRIPTION = """\
Field photos of trees to expert-labeled training data.

Scientists upload folders of photos; operators manage the taxonomists who label them,
watch and start batches, report automation and cost, and export datasets.
Resource names (buckets, tables, user pool, groups, dispatcher) come from the deployed
stacks' outputs (<prefix>-Storage, -Workforce, -Pipeline), from --outputs FILE, or from
explicit options."""

EPILOG = """\
examples:
  fieldlabel upload ./survey-2026-05 --prefix site-12 --dry-run
  fieldlabel upload ./survey-2026-05 --prefix site-12 --profile field
  fieldlabel taxonomists add ana@botany.example.org --name "Ana Silva" --reviewer
  fieldlabel taxonomists list --json
  fieldlabel status
  fieldlabel flush
  fieldlabel resume b20261126t063000z-1a2b3c4d
  fieldlabel report --by month --chart automation.png
  fieldlabel export ./datasets --download
  fieldlabel cost --photos 5000 --machine-share 0.6
  fieldlabel evaluate ./labeled-photos --chart evaluate.png

exit status: 0 success, 1 failure (AWS refused, uploads failed), 2 usage error, 130 interrupted.
See docs/cli.md for details."""


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options, accepted before or after the subcommand.

    On subparsers the defaults are SUPPRESS, so a value given before the subcommand is not overwritten by the
    subparser's default.
    """
    d: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    aws = parser.add_argument_group("AWS options")
    aws.add_argument("--region", metavar="REGION", help="AWS region (default: from profile/environment)", **d)
    aws.add_argument("--profile", metavar="NAME", help="AWS profile; credentials are resolved by boto3", **d)
    aws.add_argument("--endpoint-url", metavar="URL",
                     help="send AWS requests to this endpoint (local demo, moto server)", **d)
    res = parser.add_argument_group("resource discovery")
    res.add_argument("--stack-prefix", metavar="PREFIX",
                     help="read outputs of stacks PREFIX-Storage, PREFIX-Workforce and PREFIX-Pipeline "
                          "(default: $FIELDLABEL_STACK_PREFIX or 'treelabel')", **d)
    res.add_argument("--outputs", metavar="FILE",
                     help="JSON file of outputs, e.g. {\"IntakeBucketName\": \"...\"} "
                          "(default: $FIELDLABEL_OUTPUTS); skips CloudFormation", **d)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout", **d)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by :func:`main` and by the docs test)."""
    parser = argparse.ArgumentParser(
        prog="fieldlabel",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.register(subparsers, [common])
    return parser


def run(argv: Sequence[str] | None = None, *, ctx: AppContext | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (argparse exits 2 itself on usage errors).

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        ctx: a prepared context (tests inject streams); by default built from the global options.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    context = AppContext.from_args(args)
    if ctx is not None:
        context.stdout, context.stderr, context.stdin = ctx.stdout, ctx.stderr, ctx.stdin
    try:
        return int(args.handler(args, context))
    except CliError as exc:
        context.stderr.write(f"fieldlabel: error: {exc.message}\n")
        return exc.exit_code
    except (ClientError, BotoCoreError) as exc:
        context.stderr.write(f"fieldlabel: error: {translate_aws_error(exc).message}\n")
        return 1
    except KeyboardInterrupt:
        context.stderr.write("fieldlabel: interrupted; run the same command again to resume\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `fieldlabel taxonomists list | head`
        return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    sys.exit(code)


if __name__ == "__main__":
    main()
