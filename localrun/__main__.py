"""``python -m localrun``: the offline demo (default) or a local emulator to upload into (``--serve``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localrun.panel import PanelSettings


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be within 0..1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _photos(text: str) -> int | Path:
    """A count of photos to generate, or a labeled folder (one sub-folder per species)."""
    if text.isdigit():
        return _positive(text)
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"neither a number of photos nor a folder: {text}")
    return path


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m localrun``."""
    p = argparse.ArgumentParser(
        prog="python -m localrun",
        description="Run the real pipeline end to end in an embedded AWS emulator (moto). Only Ground Truth and "
                    "its workers are simulated. See docs/demo.md.",
    )
    p.add_argument("--photos", type=_photos, default=1300, metavar="N|DIR",
                   help="N: leaf photos to generate (default 1300); DIR: a labeled folder, one sub-folder per "
                        "species, whose sub-folder names become the taxonomy and whose labels are the truth the "
                        "simulated taxonomists answer from (the app is synthesized again with that taxonomy)")
    p.add_argument("--limit", type=_positive, default=None,
                   help="with --photos DIR: take at most this many of the folder's photos (a random sample)")
    p.add_argument("--batches", type=_positive, default=None,
                   help="upload the photos in this many daily instalments, each labeled as its own batch once "
                        "the age threshold passes (default: 5 with labeling.engine 'model', so the engine can "
                        "learn from batch to batch; 1 with 'groundtruth')")
    p.add_argument("--seed", type=int, default=7, help="seed of the sample photos and the simulated panel")
    p.add_argument("--output", type=Path, default=Path("demo-output"), help="where photos, dataset and report go")
    p.add_argument("--cdk-out", type=Path, default=Path("cdk.out"), help="synthesized templates (make synth)")
    p.add_argument("--backend", choices=("groundtruth", "label-studio"), default="groundtruth",
                   help="label-studio: the 'studio' environment (labeling.backend 'label_studio'), synthesized into "
                        "<output>/cdk.out, with a REAL Label Studio server started on 127.0.0.1 in which the "
                        "simulated people answer (docs/demo.md, 'On Label Studio'); groundtruth: cdk.out as "
                        "synthesized by `make synth` (default)")
    p.add_argument("--serve", action="store_true",
                   help="start the emulator as a local server and keep the pipeline running, so you can upload "
                        "with `fieldlabel upload` from another terminal; Ctrl-C stops")
    p.add_argument("--port", type=int, default=5005, help="--serve: port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--batch-age-seconds", type=float, default=30.0,
                   help="--serve: a pending photo this old makes a batch due (AWS: batching.max_wait_hours)")
    panel = p.add_argument_group("simulated labelers")
    d = PanelSettings()
    panel.add_argument("--taxonomist-accuracy", type=_share, default=d.taxonomist_accuracy)
    panel.add_argument("--taxonomists-per-photo", type=_positive, default=d.taxonomists_per_photo)
    panel.add_argument("--machine-share", type=_share, default=d.machine_share,
                       help="labeling.engine 'groundtruth' only: share of an automated job's photos the simulated "
                            "Ground Truth model labels (with 'model' the real engine decides)")
    panel.add_argument("--machine-accuracy", type=_share, default=d.machine_accuracy,
                       help="labeling.engine 'groundtruth' only: how often that simulated model is right")
    panel.add_argument("--reviewer-accuracy", type=_share, default=d.reviewer_accuracy)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    panel = PanelSettings(taxonomists_per_photo=args.taxonomists_per_photo,
                          taxonomist_accuracy=args.taxonomist_accuracy, machine_share=args.machine_share,
                          machine_accuracy=args.machine_accuracy, reviewer_accuracy=args.reviewer_accuracy,
                          seed=args.seed)
    from localrun.labelstudio import LabelStudioUnavailable
    from localrun.samples import FolderError
    from localrun.wiring import TemplatesMissing
    from stacks.config import ConfigError

    try:
        if args.serve and args.backend != "groundtruth":
            sys.stderr.write("localrun: --serve runs the groundtruth backend only; drop --backend\n")
            return 2
        if args.serve:
            from localrun.serve import ServeOptions, serve

            return serve(ServeOptions(port=args.port, output=args.output, cdk_out=args.cdk_out, panel=panel,
                                      batch_age_seconds=args.batch_age_seconds,
                                      log_file=args.output / "lambda.log"))
        from localrun.demo import DemoOptions, run_demo

        folder = args.photos if isinstance(args.photos, Path) else None
        count = args.limit if folder is not None else args.photos
        run_demo(DemoOptions(photos=count, photos_dir=folder, batches=args.batches, seed=args.seed,
                             output=args.output, cdk_out=args.cdk_out, panel=panel,
                             log_file=args.output / "lambda.log", backend=args.backend))
    except TemplatesMissing as exc:
        sys.stderr.write(f"localrun: {exc}\n")
        return 2
    except FolderError as exc:
        sys.stderr.write(f"localrun: --photos: {exc}\n")
        return 2
    except ConfigError as exc:  # the folder's taxonomy did not make a valid configuration
        sys.stderr.write(f"localrun: {exc}\n")
        return 2
    except LabelStudioUnavailable as exc:
        sys.stderr.write(f"localrun: --backend label-studio: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
