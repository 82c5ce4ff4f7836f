"""Shared test data for the worker-UI tests: realistic taxonomies of any size and hostile field metadata."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

UNKNOWN = "not-a-tree-or-cannot-tell"

_GENERA = [
    ("Quercus", "oak"),
    ("Acer", "maple"),
    ("Pinus", "pine"),
    ("Betula", "birch"),
    ("Fagus", "beech"),
    ("Fraxinus", "ash"),
    ("Salix", "willow"),
    ("Populus", "poplar"),
    ("Tilia", "lime"),
    ("Ulmus", "elm"),
    ("Sorbus", "rowan"),
    ("Prunus", "cherry"),
    ("Abies", "fir"),
    ("Picea", "spruce"),
    ("Larix", "larch"),
    ("Alnus", "alder"),
    ("Carpinus", "hornbeam"),
    ("Castanea", "chestnut"),
    ("Juglans", "walnut"),
    ("Taxus", "yew"),
]
_EPITHETS = [
    ("robur", "pedunculate"),
    ("petraea", "sessile"),
    ("alba", "white"),
    ("nigra", "black"),
    ("rubra", "red"),
    ("montana", "mountain"),
    ("sylvestris", "wild"),
    ("orientalis", "oriental"),
    ("japonica", "Japanese"),
    ("americana", "American"),
    ("pendula", "weeping"),
    ("cordata", "small-leaved"),
    ("glabra", "smooth"),
    ("tomentosa", "downy"),
    ("macrophylla", "large-leaved"),
    ("minor", "lesser"),
    ("major", "greater"),
    ("borealis", "northern"),
    ("australis", "southern"),
    ("occidentalis", "western"),
]


def taxonomy_document(n: int = 400, *, with_images: bool = True) -> dict[str, Any]:
    """A taxonomy file (contracts.md shape) with ``n`` species built from real genera and common epithets."""
    labels = []
    for i in range(n):
        genus, genus_common = _GENERA[i % len(_GENERA)]
        epithet, adjective = _EPITHETS[(i // len(_GENERA)) % len(_EPITHETS)]
        suffix = f"-{i // (len(_GENERA) * len(_EPITHETS))}" if i >= len(_GENERA) * len(_EPITHETS) else ""
        label = f"{genus.lower()}-{epithet}{suffix}"
        scientific = f"{genus} {epithet}" + (f" var. {suffix[1:]}" if suffix else "")
        common = f"{adjective} {genus_common}"
        entry: dict[str, Any] = {
            "label": label,
            "scientific_name": scientific,
            "common_name": common,
            "display_name": f"{scientific} ({common})",
            "reference_image": None,
        }
        if with_images and i % 7 == 0:
            entry["reference_image"] = f"https://herbarium.example.org/ref/{label}.jpg"
        if with_images and i % 11 == 0:
            entry["reference_images"] = [f"s3://example-artifacts/reference/{label}.jpg"]
        labels.append(entry)
    return {"labels": labels, "unknown_label": UNKNOWN}


HOSTILE_NOTE = (
    'Bark "plated" </script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2"> & {{ 7 * 7 }}'
)
HOSTILE_COLLECTOR = 'O\'Brien "Bob" <b>bold</b>'


def review_line(label: str = "quercus-robur", **overrides: Any) -> dict[str, Any]:
    """A review manifest line as select_review writes it, with hostile collector text."""
    line: dict[str, Any] = {
        "source-ref": "s3://example-intake/labeling-copies/sha256-0a1b2c3d.jpg",
        "photo-id": "sha256:0a1b2c3d",
        "field": {
            "site_id": "S12",
            "captured_at": "2026-05-14T09:31:00Z",
            "latitude": 51.7543,
            "longitude": -1.2566,
            "collector": HOSTILE_COLLECTOR,
            "notes": HOSTILE_NOTE,
            "suspected_species": "quercus-petraea",
            "habitat": "hedgerow on clay",
            "specimen_part": "leaf",
        },
        "label-under-review": {"label": label, "confidence": 0.62, "source": "machine"},
    }
    line.update(overrides)
    return line


# ------------------------------------------------------------------------------------------------ HTML inspection
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    """One start tag of a parsed page: its name, attributes, enclosing tags and (decoded) text."""

    tag: str
    attrs: dict[str, str]
    ancestors: tuple[str, ...]
    text: str = ""


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self._raw_text_tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, tuple(e.tag for e in self._open))
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


def parse_html(page: str) -> list[Element]:
    """Every element of ``page`` in document order (stdlib parser: what a browser would build, near enough)."""
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector.elements


def by_id(elements: list[Element], element_id: str) -> Element:
    """The element with this id (exactly one must exist)."""
    found = [e for e in elements if e.attrs.get("id") == element_id]
    assert len(found) == 1, f"expected one #{element_id}, found {len(found)}"
    return found[0]
