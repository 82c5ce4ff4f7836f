"""``fieldlabel upload FOLDER``: send a folder of photos (and sidecars) to the intake bucket."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_FAILURE, EXIT_OK, UsageError
from fieldlabel_cli.progress import Progress
from fieldlabel_cli.upload import (
    STATE_FILE,
    UploadState,
    check_bucket,
    dry_run_summary,
    execute_upload,
    normalise_prefix,
    plan_upload,
)
from fieldlabel_cli.validate import Limits

HELP = "upload a folder of photos to the intake bucket (resumable)"
DESCRIPTION = f"""\
Upload every photo under FOLDER (any sub-folders) to s3://<intake bucket>/uploads/[PREFIX/]<relative path>.

Photos (.jpg .jpeg .png .heic .heif .tif .tiff .webp) are checked locally first: empty, not an image,
corrupt/truncated, or too large files are rejected and listed with the reason. Optional metadata:
<photo stem>.json next to a photo, or _folder.json for every photo of a folder (docs/contracts.md).

Re-running is cheap: {STATE_FILE} in FOLDER remembers what was uploaded, and files already in the
bucket with the same size and SHA-256 are skipped. Identical photos within FOLDER are uploaded once."""

EPILOG = """\
examples:
  fieldlabel upload ./survey --prefix site-12 --dry-run     check everything, send nothing
  fieldlabel upload ./survey --prefix site-12               upload (resumes if interrupted)
  fieldlabel upload ./survey --endpoint-url http://127.0.0.1:5005 --outputs demo-output/outputs.json
                                                            into the local demo (make demo-serve)"""


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``upload`` subcommand."""
    p = subparsers.add_parser(
        "upload", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", metavar="FOLDER", type=Path, help="folder of photos")
    p.add_argument("--prefix", default="", help="sub-folder under uploads/, e.g. a site or survey name")
    p.add_argument("--bucket", help="intake bucket name (default: IntakeBucketName output)")
    p.add_argument("--workers", type=_positive, default=8, help="parallel uploads (default: 8)")
    p.add_argument("--dry-run", action="store_true", help="validate locally and list what would be sent; send nothing")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any file is rejected")
    p.add_argument("--max-bytes", type=_positive, default=Limits().max_bytes,
                   help=f"largest accepted photo in bytes (default: {Limits().max_bytes})")
    p.add_argument("--max-pixels", type=_positive, default=Limits().max_pixels,
                   help=f"largest accepted photo in pixels (default: {Limits().max_pixels})")
    p.add_argument("--progress-every", type=_positive, default=100, metavar="N",
                   help="when stderr is not a terminal, print a progress line every N files (default: 100)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``upload``."""
    folder: Path = args.folder.expanduser()
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    prefix = normalise_prefix(args.prefix)
    limits = Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels)
    state = UploadState(folder / STATE_FILE)

    def checking(total: int) -> Progress:
        return Progress(total, stream=ctx.stderr, label="files checked", every=args.progress_every)

    if args.dry_run:
        # Nothing is sent, so no bucket is resolved and no credentials are needed.
        plan = plan_upload(folder, prefix=prefix, limits=limits, state=state, workers=args.workers,
                           progress=checking)
        summary = dry_run_summary(plan, bucket=None)
    else:
        bucket = ctx.resolver.get("IntakeBucketName")
        s3 = ctx.client("s3", max_pool_connections=args.workers + 4)
        check_bucket(s3, bucket)
        plan = plan_upload(folder, prefix=prefix, limits=limits, state=state, bucket=bucket, workers=args.workers,
                           progress=checking)
        progress = Progress(len(plan.to_upload), stream=ctx.stderr, label="files sent", every=args.progress_every)
        summary = execute_upload(plan, s3=s3, bucket=bucket, state=state, workers=args.workers, progress=progress)
    ctx.emit(summary.to_dict(), summary.render)
    if summary.failed or (args.strict and summary.rejected):
        return EXIT_FAILURE
    return EXIT_OK
