"""The simulated people and model behind the Ground Truth stand-in: a panel of taxonomists, senior reviewers and
the automated-labeling model, each with a configurable accuracy, answering from the sample photos' truth.

They plug into the harness's fake Ground Truth as its ``plan`` (labeling jobs) and ``review_plan`` (review jobs),
so the fake keeps writing the output manifest in the real format; only who answers what is decided here.
Answers are drawn per photo from ``seed`` and the photo id, so a run is reproducible whatever the order of lines.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localrun.harness import PhotoOutcome


@dataclass(frozen=True)
class PanelSettings:
    """How good the simulated labelers are. Defaults are plausible, not measured."""

    taxonomists_per_photo: int = 3
    taxonomist_accuracy: float = 0.90
    machine_share: float = 0.60  # share of an automated job's photos the model labels (the rest go to people)
    machine_accuracy: float = 0.95
    reviewers_per_photo: int = 2
    reviewer_accuracy: float = 0.97
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("taxonomist_accuracy", "machine_share", "machine_accuracy", "reviewer_accuracy"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.taxonomists_per_photo < 1 or self.reviewers_per_photo < 1:
            raise ValueError("at least one taxonomist and one reviewer per photo")


def _rng(seed: int, photo_id: str, salt: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{salt}/{photo_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _answer(rng: random.Random, truth: str, labels: list[str], accuracy: float) -> str:
    """One person's answer: the truth with probability ``accuracy``, else another label at random."""
    if rng.random() < accuracy or len(labels) < 2:
        return truth
    return rng.choice([x for x in labels if x != truth])


def _vote(answers: list[str]) -> tuple[str, float]:
    """Majority label (ties go to the earliest answer) and the share of answers that agree with it."""
    counts = Counter(answers)
    best = max(counts.values())
    label = next(a for a in answers if counts[a] == best)
    return label, best / len(answers)


def labeling_plan(truth: dict[str, str], labels: list[str], settings: PanelSettings
                  ) -> Callable[[int, dict[str, Any]], PhotoOutcome]:
    """Plan of the fake Ground Truth for labeling jobs: the model takes ``machine_share`` of the photos (the fake
    turns those into human labels on a job without automated labeling), the taxonomist panel the rest.

    A photo the truth does not know (uploaded by hand in ``--serve`` mode) gets a random species as its truth, so
    the panel still behaves like a panel; accuracy is only measured on photos whose truth is known.
    """
    def plan(i: int, line: dict[str, Any]) -> PhotoOutcome:
        photo_id = str(line.get("photo-id", line.get("source-ref", i)))
        rng = _rng(settings.seed, photo_id, "labeling")
        true = truth.get(photo_id) or rng.choice(labels)
        if rng.random() < settings.machine_share:
            guess = _answer(rng, true, labels, settings.machine_accuracy)
            confidence = rng.uniform(0.90, 0.995) if guess == true else rng.uniform(0.80, 0.93)
            return PhotoOutcome("machine", guess, round(confidence, 3))
        answers = [_answer(rng, true, labels, settings.taxonomist_accuracy)
                   for _ in range(settings.taxonomists_per_photo)]
        label, agreement = _vote(answers)
        return PhotoOutcome("human", label, round(agreement, 3))

    return plan


def review_plan(truth: dict[str, str], labels: list[str], settings: PanelSettings
                ) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
    """Plan of the fake Ground Truth for review jobs: senior reviewers answer from the truth, and their answers
    are consolidated into the ``species-review`` shape of docs/contracts.md (majority, agreement, adjudication)."""
    def plan(i: int, line: dict[str, Any]) -> dict[str, Any]:
        photo_id = str(line.get("photo-id", i))
        rng = _rng(settings.seed, photo_id, "review")
        under = (line.get("label-under-review") or {}).get("label")
        true = truth.get(photo_id) or under or rng.choice(labels)
        answers = [_answer(rng, true, labels, settings.reviewer_accuracy)
                   for _ in range(settings.reviewers_per_photo)]
        label, agreement = _vote(answers)
        return {"label": label, "confidence": round(agreement * settings.reviewer_accuracy, 3),
                "agreement": round(agreement, 3), "needs_adjudication": agreement < 0.5 + 1e-9 and len(answers) > 1,
                "answers": len(answers), "comments": []}

    return plan


@dataclass(frozen=True)
class Person:
    """One simulated taxonomist or senior reviewer: who they are and how often they name the true species.

    ``worker_id`` names the person; the Ground Truth stand-in turns it into a stable Cognito ``sub`` and a workerId
    that differs per job (localrun.harness.FakeGroundTruth), as a private workforce does."""

    worker_id: str
    accuracy: float


def panel_people(settings: PanelSettings, *, taxonomists: int = 6, reviewers: int = 4) -> dict[str, list[Person]]:
    """The two teams, each person's accuracy spread around the team's setting (a panel is never uniform)."""
    def team(prefix: str, n: int, centre: float) -> list[Person]:
        spread = [(-0.04 + 0.08 * i / max(1, n - 1)) for i in range(n)]
        return [Person(f"{prefix}-{i + 1}", min(1.0, max(0.0, centre + d))) for i, d in enumerate(spread)]

    return {"label": team("taxonomist", max(taxonomists, settings.taxonomists_per_photo),
                          settings.taxonomist_accuracy),
            "review": team("reviewer", max(reviewers, settings.reviewers_per_photo), settings.reviewer_accuracy)}


def template_answer(named: str, task_input: dict[str, Any], unknown_label: str) -> dict[str, Any]:
    """What the expert-review template submits when a person means ``named`` (docs/contracts.md, answer format):
    confirm the label shown when it is theirs, ``cannot_tell`` for the unknown label, else a correction. Submitted
    as crowd-form does, the hidden input's JSON text."""
    shown = (task_input.get("labelUnderReview") or {}).get("label")
    if shown is not None and named == shown:
        review = {"decision": "confirm", "species": named}
    elif named == unknown_label:
        review = {"decision": "cannot_tell", "species": ""}
    else:
        review = {"decision": "correct", "species": named}
    return {"review": json.dumps(review)}


def custom_job_workers(truth: dict[str, str], labels: list[str], settings: PanelSettings, *,
                       unknown_label: str) -> Callable[[str, dict[str, Any], dict[str, Any], int],
                                                       list[tuple[str, dict[str, Any]]]]:
    """The harness's ``workers`` for custom jobs: the engine's labeling job (taxonomists) and the review job
    (senior reviewers). Each object gets ``n`` distinct people drawn per photo; each answers the truth with their
    own accuracy, else another species, through the template's answer format. They never see the photo's truth
    through the task: a suggestion shown to them does not change what they answer."""
    people = panel_people(settings)

    def answer(kind: str, task_input: dict[str, Any], line: dict[str, Any], n: int) -> list[tuple[str, dict]]:
        photo_id = str(line.get("photo-id") or task_input.get("photoId") or line.get("source-ref"))
        rng = _rng(settings.seed, photo_id, f"custom-{kind}")
        team = people["review" if kind == "review" else "label"]
        true = truth.get(photo_id) or rng.choice(labels)
        chosen = rng.sample(team, k=min(n, len(team)))
        return [(p.worker_id, template_answer(_answer(rng, true, labels, p.accuracy), task_input, unknown_label))
                for p in chosen]

    return answer
