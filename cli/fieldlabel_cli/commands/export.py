"""``fieldlabel export``: a dataset version in the layouts training code expects (manifest, CSV, per species)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_FAILURE, EXIT_OK, UsageError
from fieldlabel_cli.export import export_version, resolve_version, validate_version

HELP = "export a dataset version: augmented manifest, CSV, per-species listings (and the photos)"
DESCRIPTION = """\
Export a published dataset version (default: the latest) from the artifacts bucket to a
local folder OUT/<version>/:

  dataset.manifest      the augmented manifest, as published (SageMaker training input)
  dataset.csv           one row per photo: id, S3 URIs, label, confidence, human/machine,
                        review outcome, and the field metadata (field.* columns)
  species/<label>.txt   the S3 URIs of each species' photos, one per line
  statistics.json, lineage.json   as published
  images/<label>/       with --download: the photos, one folder per species

Rerunning resumes a download: photos already in place are skipped."""

EPILOG = """\
examples:
  fieldlabel export ./datasets
  fieldlabel export ./datasets --version v000012-b20261126t063000z-1a2b3c4d --download
  fieldlabel export ./datasets --download --originals --json"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser("export", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", type=Path, help="local folder; the version goes to OUT/<version>/")
    p.add_argument("--version", dest="dataset_version", default="LATEST", metavar="VERSION",
                   help="LATEST (default) or a version name like v000012-b20261126t063000z-1a2b3c4d")
    p.add_argument("--download", action="store_true", help="also download the photos into images/<label>/")
    p.add_argument("--originals", action="store_true",
                   help="with --download: the original uploads instead of the labeling copies")
    p.add_argument("--workers", type=int, default=8, metavar="N", help="parallel downloads (default 8)")
    g = p.add_argument_group("resources (default: from the Storage stack outputs)")
    g.add_argument("--artifacts-bucket", metavar="NAME", help="artifacts bucket (output ArtifactsBucketName)")
    p.set_defaults(handler=handle)


def _render(result: dict[str, Any], download: bool) -> str:
    lines = [f"Exported dataset {result['version']} to {result['folder']}: {result['photos']:,} photo(s), "
             f"{len(result['species'])} species"]
    width = max((len(s) for s in result["species"]), default=0)
    for label, n in sorted(result["species"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {label.ljust(width)}  {n:>7,}")
    if result["bad_lines"]:
        lines.append(f"  manifest lines that are not photos (skipped in the CSV): {result['bad_lines']}")
    if download:
        lines.append(f"Downloaded {result['downloaded']:,} photo(s); already there: {result['skipped_existing']:,}; "
                     f"failed: {len(result['download_failed'])}")
        for f in result["download_failed"][:10]:
            lines.append(f"  {f['uri']}: {f['error']}")
    return "\n".join(lines)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``export``."""
    version = validate_version(args.dataset_version)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.originals and not args.download:
        raise UsageError("--originals only makes sense with --download")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"not a folder: {args.out}")
    bucket = ctx.resolver.get("ArtifactsBucketName")
    s3 = ctx.client("s3", max_pool_connections=max(10, args.workers))
    dv = resolve_version(s3, bucket, version)
    ctx.info(f"Exporting s3://{bucket}/{dv.prefix} ...")
    total = {"n": 0}

    def progress(done: int) -> None:
        total["n"] = done
        if done % 500 == 0:
            ctx.info(f"{done:,} photo(s) downloaded or checked")

    result = export_version(s3, dv, args.out, download=args.download, originals=args.originals,
                            workers=args.workers, progress=progress).as_dict()
    ctx.emit(result, lambda: _render(result, args.download))
    return EXIT_FAILURE if result["download_failed"] else EXIT_OK
