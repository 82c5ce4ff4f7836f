"""Reading one reviewer's answer as the expert-review template submits it (docs/contracts.md, "Review job").

The template fills a single hidden input named ``review`` with the JSON of ``{"decision", "species", "comment"}``.
crowd-form serialises a plain ``<input>`` by its string value, so in ``annotationData.content`` the ``review`` member
arrives as that JSON *string*; a consumer written against the contract's object form gets an object. This module
accepts both, so readers need not care which one Ground Truth hands over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DECISIONS = ("confirm", "correct", "cannot_tell")
MAX_COMMENT_CHARS = 2000


class AnswerError(ValueError):
    """The worker answer is not a review answer."""


def parse_review_answer(content: str | Mapping[str, Any]) -> dict[str, str]:
    """Normalise one worker's ``annotationData.content`` to ``{"decision", "species", "comment"}``.

    Raises:
        AnswerError: not JSON, no ``review`` member, unknown decision, or ``correct`` without a species.
    """
    try:
        outer = json.loads(content) if isinstance(content, str | bytes) else content
    except ValueError as exc:
        raise AnswerError(f"answer is not JSON: {exc}") from exc
    if not isinstance(outer, Mapping) or "review" not in outer:
        raise AnswerError("answer has no 'review' member")
    review = outer["review"]
    if isinstance(review, str):
        try:
            review = json.loads(review)
        except ValueError as exc:
            raise AnswerError(f"'review' is a string but not JSON: {exc}") from exc
    if not isinstance(review, Mapping):
        raise AnswerError("'review' must be an object")
    decision = review.get("decision")
    if decision not in DECISIONS:
        raise AnswerError(f"decision must be one of {DECISIONS}, got {decision!r:.50}")
    species = review.get("species") or ""
    comment = review.get("comment") or ""
    if not isinstance(species, str) or not isinstance(comment, str):
        raise AnswerError("species and comment must be strings")
    if decision == "correct" and not species:
        raise AnswerError("decision 'correct' needs a species")
    return {"decision": decision, "species": species, "comment": comment[:MAX_COMMENT_CHARS]}


def answer_label(answer: Mapping[str, str], label_under_review: str, unknown_label: str) -> str:
    """The label an answer stands for: the label under review (confirm), the chosen species (correct) or the
    unknown label (cannot_tell)."""
    if answer["decision"] == "confirm":
        return label_under_review
    if answer["decision"] == "correct":
        return answer["species"]
    return unknown_label
