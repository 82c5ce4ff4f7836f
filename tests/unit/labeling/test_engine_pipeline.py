"""The own engine in the workflow (``labeling.engine: model``), against moto with the real engine.

Prepare (embeddings, decisions, machine labels, the taxonomists' manifest), training (expert labels only, shards,
model versions, the chain pointer) and the figures publishing shows. The embedding model is replaced here by a
small colour-statistics embedder (the ONNX model has its own tests; the e2e test runs it), so the photos' truth is
controlled by the test: each species is a colour.
"""

from __future__ import annotations

import io
import json
import types
from typing import Any

import numpy as np
import pytest
from fieldlabel import engine
from fieldlabel.engine import EngineSettings
from fieldlabel.labeling.engine_prepare import DECISIONS_KEY, EngineContext, batch_seed, prepare_engine_job
from fieldlabel.labeling.engine_report import add_machine_labels, engine_statistics, engine_summary_lines
from fieldlabel.labeling.engine_training import is_expert_label, train_after_batch
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend, GroundTruthSettings, ReviewJobSettings
from fieldlabel.labeling.modelstore import (
    Chain,
    LabelShard,
    allocate_version,
    iter_shards,
    publish_version,
    read_bytes,
    read_pointer,
    taxonomy_hash,
    write_shard,
)
from fieldlabel.registry.model import from_item, to_attr
from PIL import Image

from tests.unit.labeling.conftest import LABELS, NOW, World

BATCH_1 = "b20261126t063000z-1a2b3c4d"
BATCH_2 = "b20261127t063000z-5e6f7a8b"
UNKNOWN = LABELS[-1]
SPECIES = LABELS[:-1]
COLOURS = {"quercus-robur": (200, 40, 40), "fagus-sylvatica": (40, 200, 40), "betula-pendula": (40, 40, 200)}
SETTINGS = EngineSettings(never_auto=(UNKNOWN,))


class ColourEmbedder:
    """Per-channel mean and spread of the image: enough to tell the test's colour species apart."""

    def embed_images(self, images: list[Any]) -> np.ndarray:
        out = []
        for img in images:
            a = np.asarray(img, dtype=np.float32) / 255.0
            out.append(np.concatenate([a.mean(axis=(0, 1)) - 0.5, a.std(axis=(0, 1))]))
        return np.stack(out).astype(np.float32)


def _embedding_module(calls: list[int]) -> Any:
    def load_embedder() -> ColourEmbedder:
        calls.append(1)
        return ColourEmbedder()

    return types.SimpleNamespace(
        EMBEDDING_MODEL_ID="colour-stats-v1", EMBEDDING_DIM=6, load_embedder=load_embedder,
        encode_embedding=lambda v: np.asarray(v, dtype="<f2").tobytes(),
        decode_embedding=lambda b: np.frombuffer(b, dtype="<f2").astype(np.float32),
    )


def _backend() -> GroundTruthBackend:
    return GroundTruthBackend(GroundTruthSettings(
        project="treelabel-dev", region="us-east-1", role_arn="arn:aws:iam::111111111111:role/gt",
        workteam_arn="arn:aws:sagemaker:us-east-1:111111111111:workteam/private-crowd/taxonomists",
        label_categories_uri="s3://assets/label-categories.json", ui_template_uri="s3://assets/ui.liquid.html",
        output_path="s3://artifacts-bucket/gt-output/",
        kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        review=ReviewJobSettings(
            workteam_arn="arn:aws:sagemaker:us-east-1:111111111111:workteam/private-crowd/reviewers",
            ui_template_uri="s3://assets/expert-review.liquid.html",
            pre_annotation_arn="arn:aws:lambda:us-east-1:111111111111:function:pre",
            post_annotation_arn="arn:aws:lambda:us-east-1:111111111111:function:post")))


class NoJobs:
    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803 - boto3 keyword
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "no"}}, "DescribeLabelingJob")


def _truth(pid: str) -> str:
    return SPECIES[int(pid.split(":")[1][:8], 16) % len(SPECIES)]


def _write_photo(world: World, pid: str, rng: np.random.Generator) -> None:
    colour = np.array(COLOURS[_truth(pid)], dtype=np.float32)
    pixels = np.clip(colour + rng.normal(0, 25, size=(16, 16, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    key = world.photo(pid)["labeling_ref"].split("/", 3)[3]
    world.s3.put_object(Bucket=world.intake, Key=key, Body=buf.getvalue())


def _chain(module: Any) -> Chain:
    return Chain(taxonomy_hash(LABELS, UNKNOWN), module.EMBEDDING_MODEL_ID)


def _prepare(world: World, batch_id: str, module: Any) -> dict[str, Any]:
    chain = _chain(module)
    return prepare_engine_job(
        dynamodb=world.ddb, s3=world.s3, sagemaker=NoJobs(), backend=_backend(), tables=world.tables,
        batch_id=batch_id, context=EngineContext(taxonomy_hash=chain.taxonomy_hash, labels=tuple(LABELS),
                                                 settings=SETTINGS),
        embedding=module, engine=engine,
        load_model=lambda uri: engine.TrainedModel.from_bytes(read_bytes(world.s3, uri)),
        read_pointer=lambda model_id: read_pointer(world.ddb, world.tables.batches_table,
                                                   Chain(chain.taxonomy_hash, model_id)),
        now_iso=NOW,
    )


def _manifest(world: World, batch_id: str) -> list[dict[str, Any]]:
    body = world.s3.get_object(Bucket="artifacts-bucket", Key=f"jobs/{batch_id}/input.manifest")["Body"].read()
    return [json.loads(x) for x in body.splitlines()]


def _label(world: World, pid: str, label: str, source: str, review: dict[str, Any] | None = None) -> None:
    values = {":s": "LABELED", ":l": label, ":src": source, ":h": source != "machine"}
    expr = "SET #s = :s, #l = :l, label_source = :src, human_annotated = :h"
    if review is not None:
        values[":r"] = review
        expr += ", review = :r"
    world.ddb.update_item(TableName=world.tables.photos_table, Key={"photo_id": {"S": pid}}, UpdateExpression=expr,
                          ExpressionAttributeNames={"#s": "status", "#l": "label"},
                          ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()})


def test_first_batch_embeds_what_intake_did_not_and_sends_every_photo_to_the_taxonomists(world: World) -> None:
    # Given a batch whose photos have no embedding yet and no model in the chain
    rng = np.random.default_rng(1)
    ids = world.seed(BATCH_1, 40)
    for pid in ids:
        _write_photo(world, pid, rng)
    calls: list[int] = []
    module = _embedding_module(calls)

    # When the batch is prepared with the engine
    prepared = _prepare(world, BATCH_1, module)

    # Then each photo got its embedding stored, nothing was machine-labeled and all 40 go to the custom job
    assert calls == [1]
    for pid in ids:
        item = world.photo(pid)
        assert item["embedding_model"] == "colour-stats-v1" and len(item["embedding"]) == 6 * 2
        assert item["status"] == "BATCHED"
    assert (prepared["kind"], prepared["human_count"], prepared["machine_count"], prepared["model"]) == (
        "model", 40, 0, None)
    assert (prepared["engine"]["embedded_now"], prepared["engine"]["not_embedded"]) == (40, 0)
    lines = _manifest(world, BATCH_1)
    assert sorted(x["photo-id"] for x in lines) == sorted(ids)
    assert all(x["task"] == "label" and "label-under-review" not in x for x in lines)
    assert [x["engine"]["priority"] for x in lines] == list(range(40))
    # the request is the custom job: our Lambdas, the review template, the taxonomists, no automated labeling
    request = prepared["request"]
    assert "LabelingJobAlgorithmsConfig" not in request and request["LabelAttributeName"] == "species"
    htc = request["HumanTaskConfig"]
    assert htc["PreHumanTaskLambdaArn"].endswith(":function:pre")
    assert htc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"].endswith(":function:post")
    assert htc["UiConfig"]["UiTemplateS3Uri"] == "s3://assets/expert-review.liquid.html"
    assert htc["WorkteamArn"].endswith("/taxonomists")
    decisions = json.loads(world.s3.get_object(Bucket="artifacts-bucket",
                                               Key=DECISIONS_KEY.format(batch_id=BATCH_1))["Body"].read())
    assert decisions["summary"]["auto_count"] == 0 and decisions["model"] is None
    assert set(decisions["calibration"]) <= set(ids)
    batch = world.batch(BATCH_1)
    assert (batch["kind"], batch["labeling_photo_count"], batch["engine_machine_labeled"]) == ("model", 40, 0)


def test_training_uses_expert_labels_only_and_chains_versions(world: World) -> None:
    # Given a labeled first batch: taxonomist labels, an audit-confirmed machine label, an expert correction,
    # an unaudited machine label and an audited one that needs adjudication
    rng = np.random.default_rng(2)
    ids = world.seed(BATCH_1, 90)
    for pid in ids:
        _write_photo(world, pid, rng)
    module = _embedding_module([])
    _prepare(world, BATCH_1, module)
    humans, confirmed, corrected, unaudited, unsettled = ids[:86], ids[86], ids[87], ids[88], ids[89]
    for pid in humans:
        _label(world, pid, _truth(pid), "human")
    _label(world, confirmed, _truth(confirmed), "machine", {"decision": "confirmed"})
    _label(world, corrected, _truth(corrected), "expert_review", {"decision": "corrected"})
    _label(world, unaudited, _truth(unaudited), "machine")
    _label(world, unsettled, _truth(unsettled), "machine", {"decision": "needs_adjudication"})
    chain = _chain(module)

    # When the model is trained after the batch
    result = train_after_batch(dynamodb=world.ddb, s3=world.s3, tables=world.tables, batch_id=BATCH_1, chain=chain,
                               labels=LABELS, engine=engine, settings=SETTINGS,
                               decode=module.decode_embedding, now_iso=NOW)

    # Then exactly the 88 expert labels were used, stored as the batch's shard, and the model is the chain's v1
    assert result["trained"] and result["labels_used"] == 88 and result["batch_labels"] == 88
    assert result["left_out"]["machine_unaudited"] == 2
    (shard,) = list(iter_shards(world.s3, "artifacts-bucket", chain))
    assert set(shard.photo_ids) == {*humans, confirmed, corrected}
    decisions = json.loads(world.s3.get_object(Bucket="artifacts-bucket",
                                               Key=DECISIONS_KEY.format(batch_id=BATCH_1))["Body"].read())
    assert {str(p) for p, f in zip(shard.photo_ids, shard.random_slice, strict=True) if f} == (
        set(decisions["calibration"]) & set(shard.photo_ids))
    pointer = read_pointer(world.ddb, "t-batches", chain)
    assert pointer is not None and (pointer.version, pointer.name) == (1, f"v000001-{BATCH_1}")
    assert pointer.model_uri == (f"s3://artifacts-bucket/models/{chain.taxonomy_hash}/colour-stats-v1/"
                                 f"v000001-{BATCH_1}/model.bin")
    lineage = json.loads(read_bytes(world.s3, pointer.lineage_uri))
    assert (lineage["labels_used"], lineage["source_batches"], lineage["embedding_model"]) == (
        88, [BATCH_1], "colour-stats-v1")
    assert lineage["taxonomy_hash"] == chain.taxonomy_hash and "validation" in lineage["metadata"]
    model = engine.TrainedModel.from_bytes(read_bytes(world.s3, pointer.model_uri))
    assert list(model.classes) == LABELS


def test_second_batch_is_scored_by_the_first_batchs_model(world: World) -> None:
    # Given a chain model trained on 240 well-separated expert labels
    rng = np.random.default_rng(3)
    module = _embedding_module([])
    chain = _chain(module)
    centres = {s: np.array(COLOURS[s], dtype=np.float32) / 255.0 - 0.5 for s in SPECIES}

    def vec(species: str) -> np.ndarray:
        # Spread enough that photos of a species are not near-duplicates (the engine keeps those in one fold).
        return np.concatenate([centres[species] + rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 3)]).astype(np.float32)

    y = [SPECIES[i % 3] for i in range(240)]
    x = np.stack([vec(s) for s in y])
    model = engine.train_model(x, y, classes=LABELS, random_slice=None, settings=SETTINGS, lineage={})
    number = allocate_version(world.ddb, "t-batches", chain)
    publish_version(dynamodb=world.ddb, s3=world.s3, batches_table="t-batches", bucket="artifacts-bucket",
                    chain=chain, number=number, batch_id=BATCH_1, model_bytes=model.to_bytes(), lineage={},
                    trained_at=NOW, labels_used=240)
    # and a second batch whose embeddings intake already stored (nothing to compute)
    ids = world.seed(BATCH_2, 80)
    for pid in ids:
        world.ddb.update_item(TableName="t-photos", Key={"photo_id": {"S": pid}},
                              UpdateExpression="SET embedding = :e, embedding_model = :m",
                              ExpressionAttributeValues={":e": {"B": module.encode_embedding(vec(_truth(pid)))},
                                                         ":m": {"S": "colour-stats-v1"}})
    calls: list[int] = []
    module = _embedding_module(calls)

    # When it is prepared
    prepared = _prepare(world, BATCH_2, module)

    # Then the first model decided it: machine labels (correct here) in the registry, the rest in the manifest
    assert calls == []  # no embedding computed
    assert prepared["model"] == f"v000001-{BATCH_1}"
    summary = prepared["engine"]
    assert summary["threshold"] is not None and summary["certified_bound"] <= 0.05
    machine = [pid for pid in ids if world.photo(pid)["status"] == "LABELED"]
    assert prepared["machine_count"] == len(machine) > 0
    for pid in machine:
        item = world.photo(pid)
        assert (item["label"], item["label_source"], item["human_annotated"], item["job_name"]) == (
            _truth(pid), "machine", False, f"v000001-{BATCH_1}")
        assert 0.0 < item["label_confidence"] <= 1.0
    lines = _manifest(world, BATCH_2)
    assert {x["photo-id"] for x in lines} == set(ids) - set(machine)
    assert prepared["human_count"] == len(lines)
    # the random calibration slice goes to people whatever its score; every line shows the model's suggestion
    decisions = json.loads(world.s3.get_object(Bucket="artifacts-bucket",
                                               Key=DECISIONS_KEY.format(batch_id=BATCH_2))["Body"].read())
    assert set(decisions["calibration"]) <= {x["photo-id"] for x in lines}
    assert all(x["label-under-review"]["source"] == "model" and x["label-under-review"]["label"] in LABELS
               for x in lines)
    assert [x["engine"]["priority"] for x in lines] == list(range(len(lines)))
    # and the process step adds the machine labels to the taxonomists' counts
    stats = add_machine_labels({"labeled": len(lines), "human_labeled": len(lines), "machine_labeled": 0,
                                "by_species": {}}, world.batch(BATCH_2))
    assert stats["machine_labeled"] == len(machine) and stats["labeled"] == 80
    assert stats["engine"]["certified_bound"] == summary["certified_bound"]


def test_a_retried_prepare_decides_the_same_way(world: World) -> None:
    # Given a prepared second batch (as above, smaller)
    rng = np.random.default_rng(4)
    module = _embedding_module([])
    chain = _chain(module)
    y = [SPECIES[i % 3] for i in range(150)]
    x = np.stack([np.concatenate([np.array(COLOURS[s]) / 255 - 0.5 + rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 3)])
                  for s in y])
    model = engine.train_model(x.astype(np.float32), y, classes=LABELS, random_slice=None, settings=SETTINGS,
                               lineage={})
    publish_version(dynamodb=world.ddb, s3=world.s3, batches_table="t-batches", bucket="artifacts-bucket",
                    chain=chain, number=allocate_version(world.ddb, "t-batches", chain), batch_id=BATCH_1,
                    model_bytes=model.to_bytes(), lineage={}, trained_at=NOW, labels_used=150)
    ids = world.seed(BATCH_2, 30)
    for pid in ids:
        _write_photo(world, pid, rng)
    first = _prepare(world, BATCH_2, module)
    machine = {pid for pid in ids if world.photo(pid)["status"] == "LABELED"}
    lines = _manifest(world, BATCH_2)

    # When the step runs again (e.g. retried after a timeout)
    again = _prepare(world, BATCH_2, module)

    # Then the same photos are machine-labeled and the same lines go to people, in the same order
    assert first["machine_count"] == again["machine_count"] == len(machine) > 0
    assert {pid for pid in ids if world.photo(pid)["status"] == "LABELED"} == machine
    assert _manifest(world, BATCH_2) == lines
    assert batch_seed(BATCH_2) == batch_seed(BATCH_2) != batch_seed(BATCH_1)


def test_expert_label_rule() -> None:
    assert is_expert_label({"label_source": "human"})
    assert is_expert_label({"label_source": "expert_review", "review": {"decision": "corrected"}})
    assert is_expert_label({"label_source": "machine", "review": {"decision": "confirmed"}})
    assert not is_expert_label({"label_source": "machine"})
    assert not is_expert_label({"label_source": "machine", "review": {"decision": "needs_adjudication"}})


def test_model_pointer_only_moves_forward(world: World) -> None:
    chain = Chain("abc", "m+1")
    assert chain.prefix == "models/abc/m_1/" and chain.control_key == "#engine-model#abc#m+1"
    first = allocate_version(world.ddb, "t-batches", chain)
    second = allocate_version(world.ddb, "t-batches", chain)
    kwargs = {"dynamodb": world.ddb, "s3": world.s3, "batches_table": "t-batches", "bucket": "artifacts-bucket",
              "chain": chain, "model_bytes": b"m", "lineage": {}, "trained_at": NOW, "labels_used": 1}
    _, moved = publish_version(number=second, batch_id=BATCH_2, **kwargs)
    _, moved_back = publish_version(number=first, batch_id=BATCH_1, **kwargs)
    assert (first, second, moved, moved_back) == (1, 2, True, False)
    pointer = read_pointer(world.ddb, "t-batches", chain)
    assert pointer is not None and pointer.name == f"v000002-{BATCH_2}"


def test_a_taxonomy_change_starts_a_new_chain() -> None:
    assert taxonomy_hash(LABELS, UNKNOWN) == taxonomy_hash(list(LABELS), UNKNOWN)
    assert taxonomy_hash(LABELS, UNKNOWN) != taxonomy_hash([*SPECIES, "tilia-cordata", UNKNOWN], UNKNOWN)
    assert taxonomy_hash(LABELS, UNKNOWN) != taxonomy_hash(list(reversed(SPECIES)) + [UNKNOWN], UNKNOWN)


def test_shards_round_trip(world: World) -> None:
    chain = Chain("abc", "m1")
    shard = LabelShard(BATCH_1, np.array(["p1", "p2"]), np.array(["quercus-robur", UNKNOWN]),
                       np.array([[0.5, 1.0], [2.0, -1.0]], dtype=np.float16), np.array([True, False]))
    write_shard(world.s3, "artifacts-bucket", chain, shard)
    (back,) = list(iter_shards(world.s3, "artifacts-bucket", chain))
    assert back.batch_id == BATCH_1 and list(back.labels) == ["quercus-robur", UNKNOWN]
    assert back.embeddings.tolist() == [[0.5, 1.0], [2.0, -1.0]] and back.random_slice.tolist() == [True, False]


@pytest.mark.parametrize(("ci_high", "contradicts"), [(0.97, False), (0.94, True)])
def test_the_audit_contradicts_the_bound_when_its_error_lower_bound_exceeds_alpha(ci_high: float,
                                                                                  contradicts: bool) -> None:
    labeling = {"engine": {"alpha": 0.05, "delta": 0.05, "threshold": 0.8, "coverage": 0.5,
                           "certified_bound": 0.03, "calibration_size": 300, "blocked_species": [],
                           "method": "m", "model": "v000001-b"}}
    review = {"machine_accuracy": {"overall": {"accuracy": 0.9, "ci_low": 0.8, "ci_high": ci_high, "n": 40}}}
    block = engine_statistics(labeling, review, {"trained": True, "model": "v000002-b", "labels_used": 9})
    assert block is not None and block["audit_contradicts_bound"] is contradicts
    assert block["audit"]["error_ci_low"] == pytest.approx(1 - ci_high)
    text = "\n".join(engine_summary_lines(block))
    assert ("CONTRADICTS" in text) is contradicts and "certified error bound 3.0 %" in text
    # without an audit there is nothing to contradict, and a Ground Truth batch has no engine block
    assert engine_statistics(labeling, {"skipped": "nothing to review"}, None)["audit_contradicts_bound"] is None
    assert engine_statistics({"machine_labeled": 3}, review, None) is None


def test_photos_left_without_an_embedding_for_lack_of_time_go_to_the_taxonomists(world: World) -> None:
    # Given a batch without embeddings and an invocation that is almost out of time
    rng = np.random.default_rng(5)
    ids = world.seed(BATCH_1, 5)
    for pid in ids:
        _write_photo(world, pid, rng)
    calls: list[int] = []
    module = _embedding_module(calls)
    chain = _chain(module)

    # When the batch is prepared
    prepared = prepare_engine_job(
        dynamodb=world.ddb, s3=world.s3, sagemaker=NoJobs(), backend=_backend(), tables=world.tables,
        batch_id=BATCH_1, context=EngineContext(taxonomy_hash=chain.taxonomy_hash, labels=tuple(LABELS),
                                                settings=SETTINGS),
        embedding=module, engine=engine, load_model=lambda uri: None, read_pointer=lambda model_id: None,
        now_iso=NOW, time_left=lambda: 30.0)

    # Then nothing is embedded, every photo is a task without a suggestion, and the summary says why
    assert prepared["human_count"] == 5 and prepared["engine"]["not_embedded"] == 5
    assert all("embedding" not in world.photo(pid) for pid in ids)
    assert all("label-under-review" not in x for x in _manifest(world, BATCH_1))
    decisions = json.loads(world.s3.get_object(Bucket="artifacts-bucket",
                                               Key=DECISIONS_KEY.format(batch_id=BATCH_1))["Body"].read())
    assert set(decisions["not_embedded"]) == set(ids)


def test_species_thresholds_reach_the_statistics_the_registry_and_the_summary_lines() -> None:
    """A species auto-labeled above a threshold of its own (guard_mode "raise") is shown next to the blocked ones."""
    summary = {"method": "m", "alpha": 0.05, "delta": 0.05, "threshold": 0.41, "coverage": 0.5, "certified_bound": 0.03,
               "calibration_size": 300, "blocked_species": [{"species": "vad", "reason": "r"}],
               "species_thresholds": [{"species": "pipal", "threshold": 0.537, "reason": "r2"}], "model": "v1"}
    stats = add_machine_labels({"labeled": 2, "human_labeled": 2, "machine_labeled": 0, "by_species": {}},
                               {"engine_machine_labeled": 1, "engine_summary": json.dumps(summary)})
    assert stats["engine"]["species_thresholds"] == summary["species_thresholds"]
    # the statistics are stored on the batch item: floats become DynamoDB numbers and read back as they were
    stored = from_item({"labeling_stats": to_attr(stats)})
    assert stored is not None and stored["labeling_stats"]["engine"] == stats["engine"]
    text = "\n".join(engine_summary_lines(engine_statistics(stored["labeling_stats"], None, None)))
    assert "blocked species 1, higher thresholds for 1 species (pipal 0.537)." in text
