"""``python -m localrun --serve``: the pipeline in moto behind a local endpoint, to upload into with the real CLI.

moto runs as a server on 127.0.0.1 in this same process (ThreadedMotoServer), so requests from another terminal
reach the same emulated buckets and queues the in-process pipeline works on, and the handler patches still apply.
The event pump keeps feeding the intake queue to the register function and runs the dispatcher on a compressed
schedule; the dispatcher's age threshold is shortened (``--batch-age-seconds``) so a handful of photos becomes a
(human-only) batch within seconds instead of ``max_wait_hours``. Each finished workflow is reported and its dataset
copied to ``<output>/dataset/``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from localrun.demo import Demo, DemoOptions
from localrun.harness import REGION
from localrun.panel import PanelSettings
from localrun.samples import generate

TRY_FOLDER = "try-me"
TRY_PHOTOS = 12


@dataclass
class ServeOptions:
    """What ``--serve`` takes."""

    port: int = 5005
    output: Path = Path("demo-output")
    cdk_out: Path = Path("cdk.out")
    panel: PanelSettings = field(default_factory=PanelSettings)
    batch_age_seconds: float = 30.0
    dispatch_every_seconds: float = 2.0
    poll_seconds: float = 0.5
    log_file: Path | None = None  # the functions' logs, instead of the terminal


class Server:
    """The running emulator: start, then :meth:`loop` until ``stop`` is set (or Ctrl-C)."""

    def __init__(self, options: ServeOptions, *, out: TextIO | None = None,
                 templates: dict[str, dict[str, Any]] | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.endpoint: str | None = None
        self.demo = Demo(DemoOptions(output=options.output, cdk_out=options.cdk_out, panel=options.panel,
                                     dispatch_every_seconds=options.dispatch_every_seconds,
                                     log_file=options.log_file),
                         out=self.out, templates=templates)
        self.finished: list[dict[str, Any]] = []
        self._server: Any = None

    def __enter__(self) -> Server:
        from moto.server import ThreadedMotoServer

        demo = self.demo.__enter__()
        try:
            h = demo.harness
            assert h is not None and demo.intake is not None
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.options.port, verbose=False)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.endpoint = f"http://{host}:{port}"
            # Photos uploaded by hand have no known truth: the panel answers as for an unfamiliar photo.
            demo.labels = demo._taxonomy()
            demo.configure_ground_truth({})
            h.functions[demo.intake.dispatch_function]["env"]["MAX_WAIT_SECONDS"] = str(
                int(self.options.batch_age_seconds))
            h.cold_start(demo.intake.dispatch_function)
            demo.make_pump()
            self._write_files()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.demo.__exit__(*exc)

    @property
    def outputs_path(self) -> Path:
        """The ``--outputs`` file for the CLI."""
        return self.options.output / "outputs.json"

    def _write_files(self) -> None:
        h, intake = self.demo.harness, self.demo.intake
        assert h is not None and intake is not None
        out = self.options.output
        out.mkdir(parents=True, exist_ok=True)
        outputs = {"IntakeBucketName": h.intake_bucket, "ArtifactsBucketName": h.artifacts_bucket,
                   "PhotosTableName": h.photos_table, "BatchesTableName": h.batches_table,
                   "StateMachineArn": h.state_machine_arn,
                   # The operator commands (fieldlabel flush) invoke the dispatcher by this name.
                   "DispatchFunctionName": intake.dispatch_function,
                   "EndpointUrl": self.endpoint}
        self.outputs_path.write_text(json.dumps(outputs, indent=1) + "\n")
        # Any credentials do for moto; these keep a shell's real ones out of the demo's requests.
        (out / "demo.env").write_text(
            f"AWS_ENDPOINT_URL={self.endpoint}\nAWS_ACCESS_KEY_ID=demo\nAWS_SECRET_ACCESS_KEY=demo\n"
            f"AWS_REGION={REGION}\nFIELDLABEL_OUTPUTS={self.outputs_path.resolve()}\n")
        samples = generate(TRY_PHOTOS, self.demo.labels[:-1], seed=self.options.panel.seed + 1, heic=1, rotated=1,
                           duplicates=0, broken=False)
        samples.write(out / TRY_FOLDER)

    def instructions(self) -> str:
        """What to type in another terminal."""
        out = self.options.output
        return (
            f"\nThe pipeline is running in moto at {self.endpoint} (Ctrl-C stops it).\n"
            f"In another terminal, upload a folder of photos (or the sample folder {out / TRY_FOLDER}):\n\n"
            f"  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION={REGION} \\\n"
            f"    .venv/bin/fieldlabel upload {out / TRY_FOLDER} --endpoint-url {self.endpoint} "
            f"--outputs {self.outputs_path}\n\n"
            f"A batch is due {self.options.batch_age_seconds:g} s after the oldest photo arrived (or at "
            f"the configured batch size); its dataset lands in {out / 'dataset'}.\n"
        )

    def loop(self, *, max_seconds: float | None = None) -> None:
        """Pump events, run the dispatcher, report finished workflows; until ``stop`` or ``max_seconds``."""
        demo = self.demo
        pump = demo.pump
        h = demo.harness
        assert pump is not None and h is not None
        sfn = boto3.client("stepfunctions", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        seen: set[str] = set()
        registered = 0
        end = None if max_seconds is None else time.monotonic() + max_seconds
        self.out.write(self.instructions())
        self.out.flush()
        self.ready.set()
        while not self.stop.is_set() and (end is None or time.monotonic() < end):
            n = pump.pump_once()
            if n:
                registered += n
                demo.progress.stage(f"Register: {n} upload event(s) handled ({registered} so far)")
            summary = pump.tick()
            if summary and summary.get("batches"):
                ids = [b.get("batch_id") if isinstance(b, dict) else b for b in summary["batches"]]
                demo.progress.stage(f"Dispatcher: {summary.get('decision')}; started {', '.join(map(str, ids))}")
            for e in sfn.list_executions(stateMachineArn=h.state_machine_arn)["executions"]:
                if e["status"] != "RUNNING" and e["executionArn"] not in seen:
                    seen.add(e["executionArn"])
                    self.finished.append(e)
                    dest, versions, _ = demo.copy_datasets()
                    batch = h.batch(e["name"].removeprefix("batch-"))
                    stats = batch.get("stats") or {}
                    demo.progress.stage(
                        f"Workflow {e['name']}: {e['status']}; {stats.get('photos', 0)} photos labeled "
                        f"({stats.get('machine_labeled', 0)} machine, {stats.get('human_labeled', 0)} human); "
                        f"dataset {batch.get('dataset_version') or '-'} copied to {dest}")
            if not n:
                self.stop.wait(self.options.poll_seconds)
        del ddb


def serve(options: ServeOptions) -> int:
    """Run until Ctrl-C."""
    with Server(options) as server:
        try:
            server.loop()
        except KeyboardInterrupt:
            server.out.write("\nStopped.\n")
    return 0
