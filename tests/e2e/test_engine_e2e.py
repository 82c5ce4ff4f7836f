"""``labeling.engine: model`` end to end: the synthesized state machine in moto with the real intake, the real
embedding model, the real engine (threshold and training) and the real annotation Lambdas.

Photos are generated leaves whose species the test knows (shape, lobes, colour), uploaded to the intake bucket and
registered by the real register Lambda; the real dispatcher makes each batch. The simulated part is Ground Truth's
worker portal: for each custom job the fake runs the REAL pre-annotation Lambda per line, simulated taxonomists
(each with their own accuracy) answer the task it made, and the REAL post-annotation Lambda consolidates the
answers into the output manifest. Machine labels come only from the engine. On data this small the engine may
auto-label nothing; the test checks the mechanics and the guarantee's figures, not an automation share.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from typing import Any

import boto3
import numpy as np
import pytest
from PIL import Image, ImageDraw

from localrun.harness import REGION, WorkflowHarness, config_from_context
from localrun.panel import PanelSettings, custom_job_workers
from localrun.pump import EventPump
from localrun.wiring import create_intake

pytestmark = pytest.mark.slow

# Three species of the dev taxonomy, each a leaf the test can draw: (colour, length/width, lobes, serration).
LEAVES = {
    "quercus-robur": ((96, 140, 40), 1.6, 5, 0.0),
    "betula-pendula": ((150, 200, 60), 1.2, 0, 0.25),
    "pinus-sylvestris": ((30, 90, 60), 6.0, 0, 0.0),
}
PER_BATCH = 30


def leaf_photo(species: str, rng: np.random.Generator) -> bytes:
    """A JPEG of one leaf of ``species`` on a mottled background, at a random angle, size and place."""
    colour, elongation, lobes, serration = LEAVES[species]
    size = 192
    background = rng.normal(200, 18, (size, size, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(img)
    cx, cy = size / 2 + rng.uniform(-15, 15), size / 2 + rng.uniform(-15, 15)
    length = rng.uniform(60, 80)
    angle = rng.uniform(0, math.pi)
    points = []
    for k in range(180):
        t = 2 * math.pi * k / 180
        r = 1.0 + (0.25 * math.cos(lobes * t) if lobes else 0.0) + serration * 0.2 * math.cos(40 * t)
        x, y = r * math.cos(t) * length / 2, r * math.sin(t) * length / (2 * elongation)
        points.append((cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle)))
    shade = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in colour)
    draw.polygon(points, fill=shade, outline=(40, 50, 20))
    draw.line([points[0], points[90]], fill=(60, 70, 30), width=2)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _upload(h: WorkflowHarness, rng: np.random.Generator, n: int, tag: str) -> dict[str, str]:
    """Upload ``n`` leaves (species in turn); returns photo id (content sha256, the dedupe key) -> species."""
    s3 = boto3.client("s3", region_name=REGION)
    truth = {}
    for i in range(n):
        species = list(LEAVES)[i % len(LEAVES)]
        data = leaf_photo(species, rng)
        s3.put_object(Bucket=h.intake_bucket, Key=f"uploads/{tag}/leaf-{i}.jpg", Body=data)
        truth[f"sha256:{hashlib.sha256(data).hexdigest()}"] = species
    return truth


def _run_next_batch(h: WorkflowHarness, pump: EventPump, timeout: float = 900.0) -> tuple[str, dict[str, Any]]:
    """Register what was uploaded, flush the dispatcher, wait for the execution it started; returns its batch."""
    pump.drain()
    resp = boto3.client("lambda", region_name=REGION).invoke(
        FunctionName=pump.dispatch_function, Payload=json.dumps({"trigger": "flush", "force": True}).encode())
    summary = json.loads(resp["Payload"].read())
    (batch,) = summary["batches"]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout
    while (desc := sfn.describe_execution(executionArn=batch["execution_arn"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=batch["execution_arn"], maxResults=1000)["events"]
    states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    assert desc["status"] == "SUCCEEDED", (desc.get("error"), desc.get("cause"), states)
    return batch["batch_id"], {"states": states, "output": json.loads(desc["output"])}


def test_two_batches_the_second_scored_by_the_first_batchs_model(engine_templates: dict[str, Any]) -> None:
    labels = list(config_from_context().taxonomy.labels)
    unknown = config_from_context().taxonomy.unknown_label
    # The lightest committed embedding spec keeps the test quick; every function sees the same one.
    env = {"FIELDLABEL_EMBEDDING_SPEC": "lite0"}
    with WorkflowHarness(engine_templates, env_overrides=env, warm_handlers=True) as h:
        wiring = create_intake(h)
        pump = EventPump(sqs=boto3.client("sqs", region_name=REGION),
                         lambda_client=boto3.client("lambda", region_name=REGION), queue_url=wiring.queue_url,
                         register_function=wiring.register_function, dispatch_function=wiring.dispatch_function,
                         batch_size=wiring.batch_size, dispatch_every_seconds=1e9)
        rng = np.random.default_rng(11)
        truth: dict[str, str] = {}
        panel = PanelSettings(taxonomist_accuracy=0.92, reviewer_accuracy=0.97, seed=3)
        h.ground_truth.workers = lambda *a: custom_job_workers(truth, labels, panel, unknown_label=unknown)(*a)

        # --- batch 1: no model yet, every photo goes to the taxonomists --------------------------------------
        truth.update(_upload(h, rng, PER_BATCH, "day-1"))
        first, run1 = _run_next_batch(h, pump)
        out1 = run1["output"]
        assert "Run the human labeling job" in run1["states"] and "Train the model" in run1["states"]
        assert out1["prepared"]["model"] is None and out1["prepared"]["machine_count"] == 0
        # intake (the real register Lambda) embedded every photo; the workflow had nothing left to embed
        assert (out1["prepared"]["engine"]["embedded_now"], out1["prepared"]["engine"]["not_embedded"]) == (0, 0)
        request1 = h.ground_truth.jobs[f"treelabel-dev-{first}"].request
        assert "LabelingJobAlgorithmsConfig" not in request1
        htc = request1["HumanTaskConfig"]
        for arn, handler in ((htc["PreHumanTaskLambdaArn"], "pre_annotation"),
                             (htc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"],
                              "post_annotation")):
            assert h.functions[arn.split(":function:")[1]]["handler"].startswith(handler)
        # the real annotation Lambdas ran: one pre-annotation per line, consolidation for the job
        assert h.ground_truth.custom_invocations["pre_annotation"] >= PER_BATCH
        photos1 = h.photos(first)
        assert len(photos1) == PER_BATCH and {p["label_source"] for p in photos1.values()} <= {"human",
                                                                                               "expert_review"}
        correct = sum(p["label"] == truth[pid] for pid, p in photos1.items())
        assert correct / PER_BATCH >= 0.8  # three taxonomists of ~92 % each, consolidated
        # the registry holds every photo's embedding, made by the configured spec
        from fieldlabel import embedding

        assert {p["embedding_model"] for p in photos1.values()} == {embedding.model_id("lite0")}
        training1 = out1["training"]
        assert training1["trained"], training1
        assert training1["labels_used"] == sum(p["label"] in labels for p in photos1.values())
        assert training1["model"] == f"v000001-{first}"

        # --- batch 2: scored by the first batch's model -------------------------------------------------------
        truth.update(_upload(h, rng, PER_BATCH, "day-2"))
        second, run2 = _run_next_batch(h, pump)
        out2 = run2["output"]
        assert out2["prepared"]["model"] == training1["model"]
        decision = out2["labeling"]["engine"]
        for key in ("method", "alpha", "delta", "threshold", "coverage", "certified_bound", "calibration_size",
                    "blocked_species"):
            assert key in decision, key
        assert decision["model"] == training1["model"] and decision["alpha"] == 0.05
        # the bound is certified on the first model's calibration sample, or nothing is auto-labeled
        if decision["auto_count"]:
            assert decision["certified_bound"] <= 0.05 and decision["threshold"] is not None
        photos2 = h.photos(second)
        machine = {pid for pid, p in photos2.items() if p.get("label_source") == "machine"
                   or p.get("machine_label")}
        decisions = h.s3_json(f"s3://{h.artifacts_bucket}/jobs/{second}/engine-decisions.json")
        assert machine == set(decisions["machine"])  # machine labels come from the engine only
        assert out2["labeling"]["machine_labeled"] == len(machine) == decision["auto_count"]
        for pid in machine:
            assert photos2[pid]["job_name"] == training1["model"] and photos2[pid]["human_annotated"] is False
        manifest = h.s3_json_lines(f"s3://{h.artifacts_bucket}/jobs/{second}/input.manifest")
        assert {x["photo-id"] for x in manifest} == set(photos2) - machine
        assert all(x["label-under-review"]["source"] == "model" for x in manifest)  # a suggestion on every task
        assert [x["engine"]["priority"] for x in manifest] == list(range(len(manifest)))
        assert set(decisions["calibration"]) <= {x["photo-id"] for x in manifest}

        # the statistics carry the engine's decision next to the audit; the next model learnt from both batches
        stats = h.s3_json(f"s3://{h.artifacts_bucket}/datasets/v000002-{second}/statistics.json")
        assert stats["engine"]["decision"]["certified_bound"] == decision["certified_bound"]
        assert stats["engine"]["training"]["model"] == f"v000002-{second}"
        assert "audit_contradicts_bound" in stats["engine"]
        lineage = h.s3_json(out2["training"]["lineage_uri"])
        assert lineage["source_batches"] == sorted([first, second])
        assert lineage["labels_used"] == out2["training"]["labels_used"] > training1["labels_used"]
        pointer = h.batch(next(k for k in _control_items(h) if k.startswith("#engine-model#")))
        assert pointer["name"] == f"v000002-{second}" and pointer["version"] == 2
        notes = h.notifications()
        assert any("Engine (" in n["Message"] and second in n["Subject"] for n in notes)


def _control_items(h: WorkflowHarness) -> list[str]:
    ddb = boto3.client("dynamodb", region_name=REGION)
    return [i["batch_id"]["S"] for i in ddb.scan(TableName=h.batches_table, ProjectionExpression="batch_id")["Items"]]
