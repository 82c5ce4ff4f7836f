"""The Label Studio labeling configuration: the photo, its field notes and a searchable species picker.

The picker is Label Studio's ``Taxonomy`` control, not ``Choices``: ``Choices`` renders hundreds of radio buttons (or
an unsearchable drop-down), while ``Taxonomy`` opens a list with a search box that filters as one types, which is
what a taxonomist needs among hundreds of taxa. Each entry shows the display name (scientific and common name) and
stores the taxonomy label (``alias``), so an answer is ``{"type": "taxonomy", "value": {"taxonomy": [[<label>]]}}``
and the predictions the pipeline imports carry the same shape. "Not a tree / cannot tell" is the first entry, so it
is one click away without searching; its value is the configuration's unknown label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

# Names of the controls; the backend's predictions and the completion's answer parser use the same names.
IMAGE_NAME = "image"
PICKER_NAME = "species"
UNKNOWN_DISPLAY = "Not a tree / cannot tell"


def labeling_config_xml(labels: Sequence[tuple[str, str]], *, unknown_label: str, instructions: str) -> str:
    """The project's labeling configuration.

    Args:
        labels: ``(label, display name)`` of every taxon, in taxonomy order (the unknown label excluded).
        unknown_label: the label of "not a tree / cannot tell".
        instructions: one short paragraph shown above the photo.

    Raises:
        ValueError: no labels, a duplicate label or display name, or the unknown label among the taxa.
    """
    if not labels:
        raise ValueError("the species picker needs at least one label")
    seen_labels: set[str] = {unknown_label}
    seen_names: set[str] = {UNKNOWN_DISPLAY}
    choices = [_choice(UNKNOWN_DISPLAY, unknown_label)]
    for label, display in labels:
        name = display.strip() or label
        if label in seen_labels:
            raise ValueError(f"label {label!r} appears twice (or is the unknown label)")
        if name in seen_names:
            # The picker searches and shows display names; two equal names could not be told apart.
            raise ValueError(f"display name {name!r} appears twice")
        seen_labels.add(label)
        seen_names.add(name)
        choices.append(_choice(name, label))
    lines = [
        "<View>",
        f"  <Header value={quoteattr(instructions)} size=\"5\"/>",
        f"  <Image name=\"{IMAGE_NAME}\" value=\"$image\" zoom=\"true\" zoomControl=\"true\" rotateControl=\"true\"/>",
        "  <Text name=\"field_notes\" value=\"$field_text\"/>",
        f"  <Taxonomy name=\"{PICKER_NAME}\" toName=\"{IMAGE_NAME}\" required=\"true\" maxUsages=\"1\""
        " minWidth=\"420px\" leafsOnly=\"true\" placeholder=\"Search the species list\""
        " requiredMessage=\"Choose a species, or 'Not a tree / cannot tell'\">",
        *(f"    {c}" for c in choices),
        "  </Taxonomy>",
        "</View>",
    ]
    return "\n".join(lines) + "\n"


def _choice(display: str, label: str) -> str:
    alias = f" alias={quoteattr(label)}" if label != display else ""
    return f"<Choice value={quoteattr(display)}{alias}/>"


def picker_result(label: str) -> dict[str, Any]:
    """One result item choosing ``label`` in the picker (predictions; simulated taxonomists)."""
    return {"from_name": PICKER_NAME, "to_name": IMAGE_NAME, "type": "taxonomy",
            "value": {"taxonomy": [[label]]}}


def answer_label(result: Any) -> str | None:
    """The label an annotation's ``result`` chose in the picker, or None when it chose none (or several).

    Reads the ``taxonomy`` shape this configuration produces and, for projects whose config was edited by hand to
    ``Choices``, the ``choices`` shape.
    """
    if not isinstance(result, list):
        return None
    chosen: list[str] = []
    for item in result:
        if not isinstance(item, dict) or item.get("from_name") != PICKER_NAME:
            continue
        raw = item.get("value")
        value: dict[str, Any] = raw if isinstance(raw, dict) else {}
        for path in value.get("taxonomy") or []:
            if isinstance(path, list) and path and isinstance(path[-1], str):
                chosen.append(path[-1])
        for choice in value.get("choices") or []:
            if isinstance(choice, str):
                chosen.append(choice)
    distinct = set(chosen)
    return chosen[0] if len(distinct) == 1 else None
