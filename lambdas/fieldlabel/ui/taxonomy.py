"""The taxonomy file (``config/taxonomy.json``, see docs/contracts.md) as the worker UI and its Lambdas read it.

The file is written at synth time from the validated config; it is parsed again here because it crosses a boundary
(S3) and because everything in it ends up inside HTML that taxonomists open.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ground Truth allows label names up to 256 characters; control characters never belong in one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*'()/\-=+,@]+$")
_HTTPS_URL = re.compile(r"^https://[^\s\"'<>\\{}`]+$")
MAX_LABEL_CHARS = 256
MAX_NAME_CHARS = 256


class TaxonomyError(ValueError):
    """The taxonomy document is not usable; the message names the offending entry."""


@dataclass(frozen=True)
class Taxon:
    """One species the reviewer or labeler can choose."""

    label: str
    scientific_name: str
    common_name: str
    display_name: str
    reference_images: tuple[str, ...] = ()

    def task_input_entry(self) -> dict[str, str]:
        """This taxon in the review task input's ``taxonomy`` list (camelCase keys, contracts.md)."""
        return {
            "label": self.label,
            "scientificName": self.scientific_name,
            "commonName": self.common_name,
            "displayName": self.display_name,
        }


@dataclass(frozen=True)
class Taxonomy:
    """The species in configured order plus the label that means "not a tree / cannot tell"."""

    taxa: tuple[Taxon, ...]
    unknown_label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_label", {t.label: t for t in self.taxa})

    def get(self, label: str) -> Taxon | None:
        """The taxon with this label, or None (also for the unknown label, which is not a species)."""
        return self._by_label.get(label)  # type: ignore[attr-defined]

    def is_known(self, label: str) -> bool:
        """True for a species label or the unknown label."""
        return label == self.unknown_label or label in self._by_label  # type: ignore[attr-defined]

    def display_name(self, label: str) -> str:
        """What a person should read for ``label``: the species' display name, a phrase for the unknown label, or
        the raw label when the taxonomy does not know it (a label from an older taxonomy version)."""
        taxon = self.get(label)
        if taxon is not None:
            return taxon.display_name
        if label == self.unknown_label:
            return "Not a tree / cannot tell"
        return label

    def task_input_list(self) -> list[dict[str, str]]:
        """The ``taxonomy`` list of the review task input, species only, in configured order."""
        return [t.task_input_entry() for t in self.taxa]


def _text(entry: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    value = entry.get(key)
    if value is None:
        if required:
            raise TaxonomyError(f"{where}.{key}: missing")
        return ""
    if not isinstance(value, str):
        raise TaxonomyError(f"{where}.{key}: must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise TaxonomyError(f"{where}.{key}: must not be empty")
    if len(value) > MAX_NAME_CHARS or _CONTROL.search(value):
        raise TaxonomyError(f"{where}.{key}: at most {MAX_NAME_CHARS} characters, no control characters")
    return value


def _images(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    raw: list[Any] = []
    if entry.get("reference_image") is not None:
        raw.append(entry["reference_image"])
    extra = entry.get("reference_images")
    if extra is not None:
        if not isinstance(extra, list):
            raise TaxonomyError(f"{where}.reference_images: must be a list")
        raw.extend(extra)
    images: list[str] = []
    for i, url in enumerate(raw):
        # Only two shapes reach HTML: https URLs (shown as they are) and s3 URIs (presigned by grant_read_access at
        # task time); the patterns exclude quotes and braces so neither can break out of an attribute or a Liquid
        # string literal.
        if not isinstance(url, str) or not (_HTTPS_URL.match(url) or _S3_URI.match(url)):
            raise TaxonomyError(f"{where}.reference_images[{i}]: must be an https:// URL or an s3://bucket/key URI")
        if url not in images:
            images.append(url)
    return tuple(images)


def parse_taxonomy(document: Mapping[str, Any]) -> Taxonomy:
    """Validate a taxonomy document (the parsed ``config/taxonomy.json``) and return it as a Taxonomy.

    Accepts the contract shape ``{"labels": [{"label", "display_name", "scientific_name", "common_name",
    "reference_image"?, "reference_images"?}], "unknown_label"}``. An entry for the unknown label inside ``labels``
    is dropped: it is an answer of its own in every UI, never a species to pick.

    Raises:
        TaxonomyError: the document is not an object, has fewer than one species, repeats a label, or an entry has
            a missing/overlong/ill-typed field or a reference image that is neither https:// nor s3://.
    """
    if not isinstance(document, Mapping):
        raise TaxonomyError("taxonomy: must be a JSON object")
    unknown = _text(document, "unknown_label", "taxonomy", required=True)
    entries = document.get("labels")
    if not isinstance(entries, list) or not entries:
        raise TaxonomyError("taxonomy.labels: must be a non-empty list")
    taxa: list[Taxon] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"taxonomy.labels[{i}]"
        if not isinstance(entry, Mapping):
            raise TaxonomyError(f"{where}: must be an object")
        label = _text(entry, "label", where, required=True)
        if len(label) > MAX_LABEL_CHARS:
            raise TaxonomyError(f"{where}.label: at most {MAX_LABEL_CHARS} characters")
        if label == unknown:
            continue
        if label in seen:
            raise TaxonomyError(f"{where}.label: {label!r} appears more than once")
        seen.add(label)
        scientific = _text(entry, "scientific_name", where, required=False) or label
        common = _text(entry, "common_name", where, required=False)
        display = _text(entry, "display_name", where, required=False) or (
            f"{scientific} ({common})" if common else scientific
        )
        taxa.append(Taxon(label, scientific, common, display, _images(entry, where)))
    if not taxa:
        raise TaxonomyError("taxonomy.labels: needs at least one species besides the unknown label")
    return Taxonomy(tuple(taxa), unknown)


def parse_taxonomy_json(text: str | bytes) -> Taxonomy:
    """Parse and validate the taxonomy file's text.

    Raises:
        TaxonomyError: the text is not JSON or the document is invalid (see parse_taxonomy).
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise TaxonomyError(f"taxonomy: not valid JSON ({exc})") from exc
    return parse_taxonomy(document)
