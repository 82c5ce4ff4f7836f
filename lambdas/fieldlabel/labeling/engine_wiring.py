"""How the workflow functions get the own engine's parts from their environment (``labeling.engine: model``)."""

from __future__ import annotations

from typing import Any

from fieldlabel.labeling.modelstore import Chain, read_bytes, read_pointer, taxonomy_hash
from fieldlabel.labeling.settings import WorkflowEnv


def engine_settings(env: WorkflowEnv) -> Any:
    """``fieldlabel.engine.EngineSettings`` from ``CONFIG_JSON.engine_settings`` (config ``engine``)."""
    from fieldlabel.engine import EngineSettings

    known = ("alpha", "delta", "min_examples_per_species", "calibration_fraction", "seed")
    # "Not a tree / cannot tell" is a taxonomist's call, never the machine's.
    return EngineSettings(**{k: v for k, v in env.engine_settings.items() if k in known},
                          never_auto=(env.unknown_label,))


def chain_of(env: WorkflowEnv, embedding_model: str) -> Chain:
    """The model chain of this deployment's taxonomy and the given embedding model."""
    return Chain(taxonomy_hash(env.labels, env.unknown_label), embedding_model)


def pointer_reader(dynamodb: Any, env: WorkflowEnv) -> Any:
    """embedding model id -> the chain's current ``ModelPointer`` (or None)."""
    return lambda model_id: read_pointer(dynamodb, env.batches_table, chain_of(env, model_id))


def model_loader(s3: Any) -> Any:
    """model URI -> ``TrainedModel``."""
    from fieldlabel.engine import TrainedModel

    return lambda uri: TrainedModel.from_bytes(read_bytes(s3, uri))
