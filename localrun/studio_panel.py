"""The simulated taxonomists and senior reviewers on a REAL Label Studio server (labeling.backend 'label_studio').

The same panel as behind the Ground Truth stand-in (localrun/panel.py: the same people, accuracies and per-photo
draws), but here each person has a Label Studio account and answers a batch's tasks through Label Studio's API,
picking a species in the project's picker (the answer the browser submits), recorded as that person
(``completed_by``). Label Studio then fires its webhooks, counts the answers and exports them as it would for people
in the browser; nothing here touches the pipeline's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localrun.panel import PanelSettings, _answer, _rng, panel_people

EMAIL_DOMAIN = "panel.example.org"


@dataclass
class StageAnswers:
    """What one pass over a batch's stage did."""

    tasks: int = 0
    answers: int = 0
    already_answered: int = 0
    by_person: dict[str, int] = field(default_factory=dict)


class LabelStudioPanel:
    """Simulated people with Label Studio accounts answering tasks through the API.

    Args:
        client: a ``LabelStudioClient`` with the admin token (it may record answers as any member).
        truth: photo id -> true species (photos it does not know get a random species, as in localrun/panel.py).
        labels: the taxonomy's labels, the unknown label included (what a person may pick).
        settings: the panel's accuracies, people per photo and seed.
    """

    def __init__(self, client: Any, truth: Mapping[str, str], labels: list[str], settings: PanelSettings) -> None:
        self.client = client
        self.truth = truth
        self.labels = labels
        self.settings = settings
        self.people = panel_people(settings)
        self._ids: dict[str, int] = {}

    def email(self, person: str) -> str:
        return f"{person}@{EMAIL_DOMAIN}"

    def account(self, person: str) -> int:
        """The person's Label Studio user id (the account is created once, as `fieldlabel taxonomists add` does)."""
        if person not in self._ids:
            self._ids[person] = int(self.client.ensure_user(self.email(person), first_name=person)["id"])
        return self._ids[person]

    def answer_batch(self, project_id: int, batch_id: str, stage: str, *, answers_per_photo: int,
                     only: set[str] | None = None) -> StageAnswers:
        """Every task of the batch gets ``answers_per_photo`` answers from distinct people (``only``: just these
        photo ids). A task already answered by a person is not answered by them again."""
        from fieldlabel.labeling.label_studio.labeling_config import picker_result

        kind = "review" if stage == "review" else "label"
        team = self.people[kind]
        out = StageAnswers()
        for task in self.client.tasks_of_batch(project_id, batch_id):
            data = task.get("data") or {}
            photo_id = str(data.get("photo_id"))
            if only is not None and photo_id not in only:
                continue
            out.tasks += 1
            # The draw of localrun/panel.py's custom jobs: the same people give the same answers on either backend.
            rng = _rng(self.settings.seed, photo_id, f"custom-{kind}")
            true = self.truth.get(photo_id) or rng.choice(self.labels)
            chosen = rng.sample(team, k=min(answers_per_photo, len(team)))
            done_by = {self._completed_by(a) for a in task.get("annotations") or []}
            for person in chosen:
                named = _answer(rng, true, self.labels, person.accuracy)
                user = self.account(person.worker_id)
                if user in done_by:
                    out.already_answered += 1
                    continue
                self.client.create_annotation(int(task["id"]), [picker_result(named)], completed_by=user)
                out.answers += 1
                out.by_person[person.worker_id] = out.by_person.get(person.worker_id, 0) + 1
        return out

    @staticmethod
    def _completed_by(annotation: Mapping[str, Any]) -> int | None:
        who = annotation.get("completed_by")
        if isinstance(who, dict):
            who = who.get("id")
        return who if isinstance(who, int) else None
