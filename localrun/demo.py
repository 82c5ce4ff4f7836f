"""The offline demo: the real pipeline, end to end, in moto, from the synthesized templates in cdk.out.

Stages: create the resources the templates define -> generate sample photos (or read a labeled folder) -> upload
them under ``uploads/`` in daily instalments (the intake bucket's notification puts an event on the intake queue for
each) -> the event pump feeds the queue to the real register function and runs the real dispatcher on a compressed
schedule -> the dispatcher starts the real state machine, whose Lambdas prepare the job (with ``labeling.engine:
model``: the engine labels what it can certify, the rest goes to the taxonomists), record the stand-in Ground
Truth's output, select and apply the expert review, train the next model and publish a dataset version -> the
dataset is copied to a local folder -> the report. See docs/demo.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3
from fieldlabel.registry.model import PENDING
from fieldlabel.registry.photos import count_status

from localrun.harness import REGION, WorkflowHarness, cdk_context, synth_templates
from localrun.iamcheck.principals import UPLOADER, acting_as
from localrun.panel import PanelSettings, custom_job_workers, labeling_plan, review_plan
from localrun.pump import EventPump
from localrun.report import (
    Report,
    batch_figures,
    dataset_figures,
    read_statistics,
    registry_figures,
    reviewer_figures,
    scan_table,
)
from localrun.samples import FolderSpecies, SampleSet, from_folder, generate
from localrun.wiring import IntakeWiring, create_intake, load_templates

UPLOAD_PREFIX = "uploads/demo/"
# The environment of cdk.json that runs on Label Studio (labeling.backend 'label_studio').
STUDIO_ENV = "studio"
# Lambda settings the demo changes, and why (docs/demo.md): no X-Ray daemon here, and quieter logs.
ENV_OVERRIDES = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR", "LOG_LEVEL": "ERROR",
                 "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass
class DemoOptions:
    """What ``python -m localrun`` takes."""

    photos: int | None = 1300  # photos to generate; with ``photos_dir``, at most this many of the folder's (None: all)
    photos_dir: Path | None = None  # a labeled folder (one sub-folder per species) instead of generated photos
    batches: int | None = None  # upload in this many daily instalments (None: 5 with engine "model", else 1)
    seed: int = 7
    output: Path = Path("demo-output")
    cdk_out: Path = Path("cdk.out")
    panel: PanelSettings = field(default_factory=PanelSettings)
    dispatch_every_seconds: float = 10.0  # the schedule's rate, compressed (AWS: every few minutes)
    age_out_leftovers: bool = True  # let the age threshold pass for photos left under the count threshold
    timeout_seconds: float = 3600.0  # a guard against a hung run, not a target (docs/demo.md, Performance)
    log_file: Path | None = None  # where the functions' logs (and moto's warnings) go instead of the terminal
    # "label-studio": the 'studio' environment (labeling.backend 'label_studio') with a REAL local Label Studio server
    backend: str = "groundtruth"

    @property
    def label_studio(self) -> bool:
        return self.backend == "label-studio"


class Progress:
    """Stage lines with the elapsed time, and a counter that rewrites its line on a terminal."""

    def __init__(self, out: TextIO, start: float) -> None:
        self.out = out
        self.start = start
        self.tty = out.isatty()
        self._last_pct = -1

    def stage(self, message: str) -> None:
        """A line for a stage."""
        self.out.write(f"[{time.monotonic() - self.start:6.1f}s] {message}\n")
        self.out.flush()

    def count(self, label: str, done: int, total: int) -> None:
        """A running counter (every 10 % when not a terminal)."""
        pct = int(100 * done / total) if total else 100
        if self.tty:
            self.out.write(f"\r          {label}: {done}/{total} ({pct} %)")
            if done >= total:
                self.out.write("\n")
        elif pct // 10 != self._last_pct // 10 or done >= total:
            self.out.write(f"          {label}: {done}/{total} ({pct} %)\n")
        self._last_pct = pct
        self.out.flush()


class Demo:
    """One demo run inside an embedded moto. Use as a context manager; :meth:`run` returns the report.

    Inside the ``with`` block the moto resources stay up, so callers (the tests) can read the registry and
    buckets the run left behind.
    """

    def __init__(self, options: DemoOptions | None = None, *, out: TextIO | None = None,
                 templates: dict[str, dict[str, Any]] | None = None, label_studio: Any | None = None) -> None:
        self.options = options or DemoOptions()
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self.progress = Progress(self.out, self.started)
        self._templates = templates
        self.harness: WorkflowHarness | None = None
        self.intake: IntakeWiring | None = None
        self.samples: SampleSet | None = None
        self.pump: EventPump | None = None
        self.labels: list[str] = []
        self.label_attribute = "species"
        self._reported: set[str] = set()
        self._saved_streams: tuple[TextIO, TextIO] | None = None
        self._log: TextIO | None = None
        self.engine = "groundtruth"  # labeling.engine of the synthesized config
        self.unknown_label = ""
        self.folder_species: list[FolderSpecies] = []
        self._reported_upload = False
        self._folder_samples: SampleSet | None = None
        # labeling.backend 'label_studio': the local server, the panel answering in it, the stages it answered.
        # A running server may be handed in (the tests share one); otherwise --backend label-studio starts one.
        self.label_studio_server: Any = label_studio
        self._own_server = label_studio is None
        self.studio_panel: Any = None
        self._answered_stages: set[tuple[str, str, str]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> Demo:
        p = self.progress
        if self.options.log_file is not None:
            # Powertools binds stdout when its logger is made (at the first handler import, after this), so the
            # functions' JSON logs land in the file while the progress lines keep the terminal.
            self.options.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.options.log_file.open("w", encoding="utf-8")
            self._saved_streams = (sys.stdout, sys.stderr)
            sys.stdout = sys.stderr = self._log
        templates = self._templates
        assets_dir = None
        source = str(self.options.cdk_out)
        try:
            if templates is None and (self.options.photos_dir is not None or self.options.label_studio):
                templates, assets_dir = self._synth_for_folder(self.options.photos_dir)
                source = (f"{assets_dir}, synthesized for {self.options.photos_dir}" if self.options.photos_dir
                          else f"{assets_dir}, synthesized")
            elif templates is None:
                templates = load_templates(self.options.cdk_out)
                assets_dir = self.options.cdk_out
        except BaseException:
            self.__exit__(*sys.exc_info())  # give the terminal back before the error is reported
            raise
        p.stage(f"Synthesized templates: {', '.join(sorted(templates))} (from {source})")
        if self.options.label_studio and self.label_studio_server is None:
            try:
                self._start_label_studio()
            except BaseException:
                self.__exit__(*sys.exc_info())
                raise
        # Warm handlers: each function keeps its module between calls, as a warm Lambda container does.
        self.harness = WorkflowHarness(templates, env_overrides=ENV_OVERRIDES, assets_dir=assets_dir,
                                       warm_handlers=True, label_studio=self.label_studio_server).__enter__()
        try:
            self.intake = create_intake(self.harness)
        except Exception:
            self.harness.__exit__(*sys.exc_info())
            raise
        h = self.harness
        self.engine, self.unknown_label = self._labeling_settings()
        p.stage(f"Created in moto: buckets {h.intake_bucket}, {h.artifacts_bucket}; tables {h.photos_table}, "
                f"{h.batches_table}, {h.reviewers_table}; {len(h.functions)} functions; the state machine; "
                f"the intake queue and the S3 -> SQS notification")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.harness is not None:
                self.harness.__exit__(*exc)
                self.harness = None
            if self.label_studio_server is not None and self._own_server:
                self.label_studio_server.stop()
                self.label_studio_server = None
        finally:
            if self._saved_streams is not None:
                sys.stdout, sys.stderr = self._saved_streams
                self._saved_streams = None
            if self._log is not None:
                self._log.close()
                self._log = None

    def _synth_for_folder(self, folder: Path | None) -> tuple[dict[str, dict[str, Any]], Path]:
        """Synthesize the app with the dev config (``--backend label-studio``: the ``studio`` config), its taxonomy
        replaced by the folder's sub-folders when a folder is given.

        ``cdk.json`` stays untouched: the taxonomy goes in as a context override of the environment block, and the
        app is synthesized in this process (the same ``app.build`` as ``cdk synth``, bundling skipped because the
        handlers run here) into ``<output>/cdk.out``, which is read back like the CLI's cloud assembly.
        """
        context = cdk_context()
        env_name = STUDIO_ENV if self.options.label_studio else str(context.get("env") or "dev")
        environments = json.loads(json.dumps(context["environments"]))
        block = environments[env_name]
        outdir = self.options.output / "cdk.out"
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.parent.mkdir(parents=True, exist_ok=True)
        if folder is not None:
            unknown = str(block.get("taxonomy", {}).get("unknown_label") or "not-a-tree-or-cannot-tell")
            samples, species = from_folder(folder, unknown_label=unknown, seed=self.options.seed,
                                           limit=self.options.photos)
            block["taxonomy"] = {"species": [{"label": s.label, "scientific_name": s.name} for s in species],
                                 "unknown_label": unknown}
            self.progress.stage(f"Synthesizing the {env_name} config with the {len(species)} species of {folder} "
                                f"(sub-folder names) into {outdir}")
            self.folder_species = species
            self._folder_samples = samples
        else:
            self.progress.stage(f"Synthesizing the {env_name} config (labeling.backend 'label_studio') into {outdir}")
        synth_templates({"environments": environments, "env": env_name}, outdir=str(outdir))
        return load_templates(outdir), outdir

    def _start_label_studio(self) -> None:
        """Start the REAL Label Studio server (localrun/labelstudio.py) in ``<output>/label-studio``."""
        from localrun.labelstudio import LabelStudioServer

        data = self.options.output / "label-studio"
        self.progress.stage(f"Starting Label Studio on 127.0.0.1 ({data}; the first start runs its database "
                            "migrations, about a minute)")
        self.label_studio_server = LabelStudioServer(data).start()
        self.progress.stage(f"Label Studio is up at {self.label_studio_server.url} (admin "
                            f"{self.label_studio_server.email}, API token as the deployed pipeline uses it)")

    def _labeling_settings(self) -> tuple[str, str]:
        """``labeling.engine`` and the unknown label of the synthesized config (the workflow functions' config)."""
        assert self.harness is not None
        for fn in self.harness.functions.values():
            raw = fn["env"].get("CONFIG_JSON")
            if raw:
                config = json.loads(raw)
                return str(config.get("engine") or "groundtruth"), str(config.get("unknown_label") or "")
        return "groundtruth", ""

    @property
    def uses_engine(self) -> bool:
        """True when the synthesized config labels with the own engine (``labeling.engine: model``)."""
        return self.engine == "model"

    @property
    def clients(self) -> dict[str, Any]:
        """boto3 clients on the embedded moto."""
        return {s: boto3.client(s, region_name=REGION) for s in ("s3", "dynamodb", "sqs", "lambda", "stepfunctions")}

    # -- stages ----------------------------------------------------------------------------------------------

    def _taxonomy(self) -> list[str]:
        s3 = boto3.client("s3", region_name=REGION)
        assert self.harness is not None
        env = next(f["env"] for f in self.harness.functions.values() if f["env"].get("LABEL_CATEGORIES_URI"))
        bucket, key = env["LABEL_CATEGORIES_URI"][5:].split("/", 1)
        doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return [x["label"] for x in doc["labels"]]

    def generate_samples(self) -> SampleSet:
        """Make the sample photos (leaves of the taxonomy's species, not the unknown label), or take the labeled
        folder's, and save them under ``<output>/photos``."""
        o = self.options
        self.labels = self._taxonomy()
        species = self.labels[:-1]  # the last category is "not a tree / cannot tell"
        folder = o.output / "photos"
        if o.photos_dir is not None and self._folder_samples is None:  # templates given by the caller
            self._folder_samples, self.folder_species = from_folder(
                o.photos_dir, unknown_label=self.unknown_label or self.labels[-1], seed=o.seed, limit=o.photos)
        if self._folder_samples is not None:
            self.samples = self._folder_samples
            described = (f"{sum(1 for p in self.samples.photos if p.kind == 'folder')} distinct photos of "
                         f"{o.photos_dir} over {len(self.folder_species)} species")
        else:
            self.samples = generate(o.photos or 1300, species, seed=o.seed)
            described = f"{o.photos} generated leaf photos over {len(species)} species"
        shutil.rmtree(folder, ignore_errors=True)
        self.samples.write(folder)
        self.progress.stage(f"{len(self.samples.photos)} sample files in {folder} ({described}, "
                            f"{self.samples.duplicates} duplicates, "
                            f"{sum(self.samples.expected_quarantine.values())} broken on purpose) "
                            f"+ {len(self.samples.sidecars)} sidecars")
        return self.samples

    def configure_ground_truth(self, truth: dict[str, str] | None = None) -> None:
        """Put the simulated people behind the Ground Truth stand-in.

        Custom jobs (the engine's labeling job and the review job) run through the real pre- and post-annotation
        Lambdas, with simulated taxonomists and reviewers answering the task in the template's answer format. With
        ``labeling.engine: model`` every machine label comes from the engine: the simulated panel labels nothing
        as "machine". Only with ``groundtruth`` does the stand-in play Ground Truth's automated labeling, a
        simulated coin with the panel's machine share and accuracy.
        """
        assert self.harness is not None
        if truth is None:
            assert self.samples is not None
            truth = self.samples.truth
        gt = self.harness.ground_truth
        panel = self.options.panel
        unknown = self.unknown_label or self.labels[-1]
        if self.label_studio_server is not None:
            self._configure_label_studio(truth)
            return
        gt.workers = custom_job_workers(truth, self.labels, panel, unknown_label=unknown)
        gt.review_plan = review_plan(truth, self.labels, panel)
        if self.uses_engine:
            # The built-in job path is not used with the engine; if it were, it would label nothing by "machine".
            gt.plan = labeling_plan(truth, self.labels, dataclasses.replace(panel, machine_share=0.0))
            self.progress.stage(
                "Labeling: the engine (labeling.engine: model) labels what it can certify, REAL; the rest go to "
                f"SIMULATED taxonomists ({panel.taxonomists_per_photo} per photo, about "
                f"{panel.taxonomist_accuracy:.0%} accurate each) through the real annotation Lambdas; "
                f"{panel.reviewers_per_photo} SIMULATED senior reviewers ({panel.reviewer_accuracy:.0%})")
        else:
            gt.plan = labeling_plan(truth, self.labels, panel)
            self.progress.stage(
                f"Simulated Ground Truth (labeling.engine: groundtruth): a SIMULATED model labels "
                f"{panel.machine_share:.0%} of an automated job's photos ({panel.machine_accuracy:.0%} accurate, a "
                f"coin, not a model); {panel.taxonomists_per_photo} taxonomists per photo "
                f"({panel.taxonomist_accuracy:.0%} accurate each); {panel.reviewers_per_photo} senior reviewers "
                f"({panel.reviewer_accuracy:.0%})")

    def _configure_label_studio(self, truth: dict[str, str]) -> None:
        """The same panel, answering in the Label Studio server as people would in the browser."""
        from fieldlabel.labeling.label_studio.client import LabelStudioClient

        from localrun.studio_panel import LabelStudioPanel

        server = self.label_studio_server
        panel = self.options.panel
        self.studio_panel = LabelStudioPanel(LabelStudioClient(server.url, server.token), truth, self.labels, panel)
        per = self._answers_per_photo()
        self.progress.stage(
            "Labeling on Label Studio (labeling.backend 'label_studio'): the engine labels what it can certify, "
            f"REAL; each remaining photo becomes a task in the REAL server, answered through its API by "
            f"{per['labeling']} SIMULATED taxonomists (their own Label Studio accounts, about "
            f"{panel.taxonomist_accuracy:.0%} accurate each); review tasks by {per['review']} SIMULATED senior "
            f"reviewers ({panel.reviewer_accuracy:.0%}); Label Studio's webhooks reach the REAL webhook function "
            "through a local relay (the Function URL)")

    def _answers_per_photo(self) -> dict[str, int]:
        """How many answers each stage's project asks for (the functions' JOB_SETTINGS_JSON)."""
        assert self.harness is not None
        raw = next(f["env"]["JOB_SETTINGS_JSON"] for f in self.harness.functions.values()
                   if f["env"].get("JOB_SETTINGS_JSON"))
        js = json.loads(raw)
        return {"labeling": int(js.get("workers_per_photo", 3)), "review": int(js.get("reviewers_per_photo", 2))}

    def answer_label_studio(self) -> int:
        """Let the simulated people answer every submitted stage they have not answered yet, then hand Label
        Studio's webhooks to the webhook function. Returns how many stages were answered."""
        if self.studio_panel is None or self.harness is None:
            return 0
        h = self.harness
        per = self._answers_per_photo()
        answered = 0
        for item in scan_table(boto3.client("dynamodb", region_name=REGION), h.batches_table):
            for stage in sorted(item.get("ls_pending") or ()):
                key = (str(item["batch_id"]), stage, str(item.get(f"ls_{stage}_token")))
                if key in self._answered_stages or h.stage_submitted(key[0], stage) is None:
                    continue
                done = self.studio_panel.answer_batch(int(item[f"ls_{stage}_project"]), key[0], stage,
                                                      answers_per_photo=per[stage])
                self._answered_stages.add(key)
                answered += 1
                self.progress.stage(f"Label Studio: {done.answers} answers on the {done.tasks} {stage} tasks of "
                                    f"{key[0]} by {len(done.by_person)} people")
        if answered:
            responses = h.deliver_webhooks()
            self.progress.stage(f"Label Studio: {len(responses)} webhooks delivered to the webhook function")
        return answered

    def make_pump(self) -> EventPump:
        """The event pump on the intake queue."""
        assert self.intake is not None
        self.pump = EventPump(
            sqs=boto3.client("sqs", region_name=REGION), lambda_client=boto3.client("lambda", region_name=REGION),
            queue_url=self.intake.queue_url, register_function=self.intake.register_function,
            dispatch_function=self.intake.dispatch_function, region=REGION, batch_size=self.intake.batch_size,
            dispatch_every_seconds=self.options.dispatch_every_seconds,
            poller=self.harness.function_principal(self.intake.register_function) if self.harness else None,
            scheduler=self.harness.schedule_principal(self.intake.dispatch_function) if self.harness else None,
        )
        return self.pump

    def instalments(self) -> list[list[tuple[str, bytes]]]:
        """The sample files split into the days they are uploaded on (sidecars on the first day, before any photo;
        the photos in equal parts, in their order)."""
        assert self.samples is not None
        days = self.options.batches or (5 if self.uses_engine else 1)
        sidecars = list(self.samples.sidecars.items())
        photos = [(p.rel, p.data) for p in self.samples.photos]
        size = -(-len(photos) // days)
        parts = [photos[i:i + size] for i in range(0, len(photos), size)] or [[]]
        parts[0] = sidecars + parts[0]
        return parts

    def upload_and_register(self, files: list[tuple[str, bytes]] | None = None, chunk: int = 100,
                            label: str = "") -> tuple[int, int]:
        """PUT sample files under ``uploads/demo/`` (sidecars first) while the event pump feeds the intake queue
        to the register function, as Lambda's poller would while an upload is under way. Returns (photos, sidecars).

        Plain PutObject, as a script or the console would: the ``fieldlabel upload`` CLI checks files before sending
        and would refuse the broken ones, which are here to show quarantine (``--serve`` mode uses the CLI).
        """
        assert self.harness is not None and self.samples is not None
        pump = self.pump or self.make_pump()
        if files is None:
            files = list(self.samples.files().items())
        if not self._reported_upload:
            self.progress.stage(f"Uploading to s3://{self.harness.intake_bucket}/{UPLOAD_PREFIX}; event pump: "
                                f"intake queue -> register function, {pump.batch_size} messages per invocation (the "
                                f"event source mapping's batch size), dispatcher every {pump.dispatch_every:g} s "
                                "(compressed schedule)")
            self._reported_upload = True
        s3 = boto3.client("s3", region_name=REGION)
        sidecars = sum(1 for rel, _ in files if rel in self.samples.sidecars)
        handled, test_events_before = 0, pump.stats.test_events
        invocations = pump.stats.invocations
        for start in range(0, len(files), chunk):
            with acting_as(UPLOADER):  # a scientist, with the upload policy docs/uploader-policy.json gives
                for rel, data in files[start:start + chunk]:
                    s3.put_object(Bucket=self.harness.intake_bucket, Key=UPLOAD_PREFIX + rel, Body=data)
            handled += pump.drain(idle_rounds=1)
            self.progress.count(f"{label}uploaded and registered", min(start + chunk, len(files)), len(files))
        handled += pump.drain()
        handled -= pump.stats.test_events - test_events_before  # S3's test event is not an upload
        self.progress.stage(f"{label}uploaded {len(files) - sidecars} photos and {sidecars} sidecars; register ran "
                            f"{pump.stats.invocations - invocations} times on {handled} upload events "
                            f"({pump.stats.failed_messages} left for redelivery so far); dispatcher ran "
                            f"{pump.stats.dispatch_runs} times on schedule so far")
        return len(files) - sidecars, sidecars

    def pending_count(self) -> int:
        """Photos waiting for a batch (a COUNT query on the registry's status index, as the dispatcher counts)."""
        assert self.harness is not None
        ddb = boto3.client("dynamodb", region_name=REGION)
        return count_status(ddb, self.harness.photos_table, PENDING)

    def wait_for_executions(self, deadline: float) -> list[dict[str, Any]]:
        """Wait until no execution of the state machine is running, reporting each one that ends."""
        assert self.harness is not None and self.pump is not None
        sfn = boto3.client("stepfunctions", region_name=REGION)
        reported = self._reported
        while True:
            execs = sfn.list_executions(stateMachineArn=self.harness.state_machine_arn)["executions"]
            for e in execs:
                if e["status"] != "RUNNING" and e["executionArn"] not in reported:
                    reported.add(e["executionArn"])
                    self.progress.stage(f"Workflow {e['name']}: {e['status']}")
            if not any(e["status"] == "RUNNING" for e in execs):
                return execs
            if time.monotonic() > deadline:
                raise TimeoutError("the labeling workflow is still running; see the execution history")
            self.answer_label_studio()
            self.pump.pump_once()
            time.sleep(0.2)

    def dispatch_now(self, reason: str) -> dict[str, Any]:
        """One dispatcher run outside the schedule."""
        assert self.pump is not None
        summary = self.pump.dispatch()
        started = [str(b.get("batch_id", b)) if isinstance(b, dict) else str(b) for b in summary.get("batches") or []]
        self.progress.stage(f"Dispatcher ({reason}): {summary.get('decision')}; "
                            f"{'started ' + ', '.join(started) if started else 'no batch started'}")
        return summary

    def age_out_leftovers(self) -> None:
        """Let the age threshold pass (compressed time) so photos below the count threshold form a batch."""
        assert self.harness is not None and self.intake is not None
        env = self.harness.functions[self.intake.dispatch_function]["env"]
        saved = env.get("MAX_WAIT_SECONDS")
        env["MAX_WAIT_SECONDS"] = "0"
        self.harness.cold_start(self.intake.dispatch_function)  # a new container reads the changed environment
        try:
            self.dispatch_now(f"time compressed: {int(saved or 0) // 3600} h age threshold taken as passed")
        finally:
            if saved is None:
                env.pop("MAX_WAIT_SECONDS", None)
            else:
                env["MAX_WAIT_SECONDS"] = saved
            self.harness.cold_start(self.intake.dispatch_function)

    def copy_datasets(self) -> tuple[Path, list[str], list[Path]]:
        """Download every published dataset version to ``<output>/dataset/``."""
        assert self.harness is not None
        s3 = boto3.client("s3", region_name=REGION)
        dest = self.options.output / "dataset"
        shutil.rmtree(dest, ignore_errors=True)
        versions: set[str] = set()
        manifests: list[Path] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.harness.artifacts_bucket,
                                                                 Prefix="datasets/"):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len("datasets/"):]
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(self.harness.artifacts_bucket, obj["Key"], str(target))
                if "/" in rel:
                    versions.add(rel.split("/", 1)[0])
                if rel.endswith("/dataset.manifest"):
                    manifests.append(target)
        return dest, sorted(versions), sorted(manifests)

    # -- the whole run ---------------------------------------------------------------------------------------

    def run(self) -> Report:
        """Every stage, then the report (also written to ``<output>/report.json``)."""
        assert self.harness is not None
        o = self.options
        deadline = self.started + o.timeout_seconds
        o.output.mkdir(parents=True, exist_ok=True)
        self.generate_samples()
        self.configure_ground_truth()
        photos_in = sidecars = 0
        days = self.instalments()
        for day, files in enumerate(days, start=1):
            label = f"Day {day}/{len(days)}: " if len(days) > 1 else ""
            photos, cars = self.upload_and_register(files, label=label)
            photos_in, sidecars = photos_in + photos, sidecars + cars
            self.wait_for_executions(deadline)
            pending = self.pending_count()
            if pending:
                self.progress.stage(f"{pending} photos pending, fewer than the batch size: they wait for the age "
                                    "threshold (batching.max_wait_hours)")
            if o.age_out_leftovers and pending:
                self.age_out_leftovers()
                self.wait_for_executions(deadline)
        dest, versions, manifests = self.copy_datasets()
        report = self.build_report(photos_in, sidecars, dest, versions, manifests)
        (o.output / "report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str))
        self.out.write(report.render() + "\n")
        self.out.write(f"Report written to {o.output / 'report.json'}"
                       + (f"; the functions' logs are in {o.log_file}" if o.log_file else "") + "\n")
        return report

    def build_report(self, photos_in: int, sidecars: int, dest: Path, versions: list[str],
                     manifests: list[Path]) -> Report:
        """The report, from the registry, the stand-in's job records and the local dataset copy."""
        assert self.harness is not None and self.samples is not None
        ddb = boto3.client("dynamodb", region_name=REGION)
        report = Report(files_uploaded=photos_in, sidecars_uploaded=sidecars, engine=self.engine,
                        backend="label_studio" if self.label_studio_server is not None else "groundtruth")
        if self.options.photos_dir is not None:
            report.taxonomy_source = f"the sub-folders of {self.options.photos_dir}"
        photos = scan_table(ddb, self.harness.photos_table)
        batches = scan_table(ddb, self.harness.batches_table)
        registry_figures(report, photos, batches)
        batch_figures(report, photos, batches, {v: read_statistics(dest, v) for v in versions}, self.samples.truth)
        reviewer_figures(report, scan_table(ddb, self.harness.reviewers_table))
        for item in batches:
            for stage in ("labeling", "review"):
                if item.get(f"ls_{stage}_job"):
                    report.jobs.append({"name": item[f"ls_{stage}_job"], "status": item.get(f"ls_{stage}_state"),
                                        "kind": "taxonomists" if stage == "labeling" else "review",
                                        "objects": int(item.get(f"ls_{stage}_expected") or 0)})
        for name, job in self.harness.ground_truth.jobs.items():
            custom = not job.request["HumanTaskConfig"]["PreHumanTaskLambdaArn"].split(":")[-1].startswith("PRE-")
            kind = "review" if job.request["LabelAttributeName"].endswith("-review") else (
                "automated" if "LabelingJobAlgorithmsConfig" in job.request else
                "taxonomists" if custom else "human")
            c = job.counters
            report.jobs.append({"name": name, "kind": kind, "status": job.status,
                                "objects": sum(c.get(k, 0) for k in ("TotalLabeled", "FailedNonRetryableError",
                                                                     "Unlabeled"))})
        dataset_figures(report, manifests, self.samples.truth, self.label_attribute, self.labels)
        report.dataset_versions = versions
        report.dataset_dir = str(dest)
        report.elapsed_seconds = time.monotonic() - self.started
        return report


def run_demo(options: DemoOptions | None = None, *, out: TextIO | None = None,
             inspect: Callable[[Demo, Report], None] | None = None, label_studio: Any | None = None) -> Report:
    """Run the whole demo; ``inspect`` is called with the live demo before moto is torn down (tests use it).

    ``label_studio``: a running local Label Studio server for ``--backend label-studio`` (default: start one).
    """
    with Demo(options, out=out, label_studio=label_studio) as demo:
        report = demo.run()
        if inspect is not None:
            inspect(demo, report)
        return report
