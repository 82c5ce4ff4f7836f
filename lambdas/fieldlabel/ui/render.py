"""Build step for the worker templates: bake the taxonomy into a source template at synth time.

Ground Truth's built-in image-classification Lambdas hand the template only ``task.input.taskObject`` and
``task.input.labels`` (label slugs), so display names, the species guide and reference photos have to be part of the
deployed template itself. The source templates in ``ui_templates/`` carry HTML-comment markers
(``<!--fieldlabel:NAME-->``) that Liquid passes through untouched; this module replaces them with markup generated
from the taxonomy. Everything else, including the runtime Liquid that reads ``task.input.*``, is left as it is.

Every string that comes from configuration is HTML-escaped *and* has its curly braces turned into character
references, so a scientific name such as ``{{ x }}`` can neither inject markup nor be evaluated by Ground Truth's
Liquid at task time. The only Liquid this module emits is ``{{ "s3://..." | grant_read_access }}`` for reference
images stored in S3, and only for URIs that match a strict pattern without quotes or braces.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fieldlabel.ui.taxonomy import Taxon, Taxonomy, parse_taxonomy

MARKER = re.compile(r"<!--fieldlabel:([a-z-]+)-->")


class TemplateBuildError(ValueError):
    """The source template lacks a marker the build needs, or has one the build does not know."""


def html_text(value: str) -> str:
    """Escape ``value`` for HTML text or a quoted attribute and neutralise Liquid delimiters.

    Braces become ``&#123;``/``&#125;``: the browser shows them as braces, but Ground Truth's Liquid never sees
    ``{{`` or ``{%`` in configuration text.
    """
    return html.escape(value, quote=True).replace("{", "&#123;").replace("}", "&#125;")


def json_for_html(value: Any) -> str:
    """JSON for an HTML text node that a script reads with ``textContent`` and ``JSON.parse``.

    HTML-escaped (the text node decodes it back) and brace-neutralised like html_text, so the text can neither close
    the element nor become Liquid.
    """
    return html_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def image_src(url: str) -> str:
    """The value of an ``src`` attribute for a configured reference image.

    https URLs are used as they are (escaped); s3 URIs become a ``grant_read_access`` expression that Ground Truth
    renders into a short-lived presigned URL when the task is shown.
    """
    if url.startswith("s3://"):
        # taxonomy.parse_taxonomy only lets s3 URIs without quotes, braces or whitespace through.
        return '{{ "' + url + '" | grant_read_access }}'
    return html_text(url)


def _taxonomy(value: Taxonomy | Mapping[str, Any]) -> Taxonomy:
    return value if isinstance(value, Taxonomy) else parse_taxonomy(value)


def _images_html(taxon: Taxon, css_class: str) -> str:
    return "".join(
        f'<img class="{css_class}" src="{image_src(url)}" alt="Reference photo: {html_text(taxon.display_name)}" '
        f'loading="lazy">'
        for url in taxon.reference_images
    )


def _label_key(taxonomy: Taxonomy) -> str:
    rows = "".join(
        f"<li><code>{html_text(t.label)}</code> = <i>{html_text(t.scientific_name)}</i>"
        + (f" ({html_text(t.common_name)})" if t.common_name else "")
        + "</li>"
        for t in taxonomy.taxa
    )
    unknown = html_text(taxonomy.unknown_label)
    return (
        f'<details class="fl-label-key"><summary>Label key: {len(taxonomy.taxa)} species</summary>'
        f'<ul class="fl-key-list">{rows}<li><code>{unknown}</code> = not a tree, or cannot tell</li></ul></details>'
    )


def _species_guide(taxonomy: Taxonomy) -> str:
    rows = []
    for t in sorted(taxonomy.taxa, key=lambda t: t.scientific_name.casefold()):
        images = _images_html(t, "fl-ref-thumb")
        rows.append(
            "<tr>"
            f"<td><code>{html_text(t.label)}</code></td>"
            f"<td><i>{html_text(t.scientific_name)}</i></td>"
            f"<td>{html_text(t.common_name)}</td>"
            f"<td>{images or '&ndash;'}</td>"
            "</tr>"
        )
    return (
        '<table class="fl-guide"><thead><tr><th scope="col">Label to click</th><th scope="col">Scientific name</th>'
        '<th scope="col">Common name</th><th scope="col">Reference photos</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _reference_templates(taxonomy: Taxonomy) -> str:
    # Inside <template> the images are inert: nothing is fetched until the review script clones the ones for the
    # species the reviewer is looking at.
    figures = "".join(
        f'<figure data-label="{html_text(t.label)}">{_images_html(t, "fl-ref-photo")}'
        f"<figcaption>{html_text(t.display_name)}</figcaption></figure>"
        for t in taxonomy.taxa
        if t.reference_images
    )
    return f'<template id="fl-reference-images">{figures}</template>'


def _baked_taxonomy(taxonomy: Taxonomy) -> str:
    return f'<div hidden id="fl-taxonomy-baked">{json_for_html(taxonomy.task_input_list())}</div>'


def _substitute(source_html: str, parts: Mapping[str, str], required: Iterable[str]) -> str:
    found = set(MARKER.findall(source_html))
    missing = sorted(set(required) - found)
    if missing:
        names = ", ".join(f"<!--fieldlabel:{m}-->" for m in missing)
        raise TemplateBuildError(f"source template lacks marker(s): {names}")
    unknown = sorted(found - set(parts))
    if unknown:
        raise TemplateBuildError(f"source template has unknown marker(s): {', '.join(unknown)}")
    return MARKER.sub(lambda m: parts[m.group(1)], source_html)


def build_classification_template(source_html: str, taxonomy: Taxonomy | Mapping[str, Any]) -> str:
    """Produce the deployed image-classification template from its source and the taxonomy.

    Markers: ``label-key`` (compact label -> name key for the short instructions), ``species-guide`` (table of every
    species with reference photos for the full instructions), ``unknown-label``, ``species-count``.

    Raises:
        TemplateBuildError: a required marker is missing or an unknown marker is present.
        TaxonomyError: the taxonomy document is invalid.
    """
    tax = _taxonomy(taxonomy)
    parts = {
        "label-key": _label_key(tax),
        "species-guide": _species_guide(tax),
        "unknown-label": html_text(tax.unknown_label),
        "species-count": str(len(tax.taxa)),
    }
    return _substitute(source_html, parts, required=("label-key", "species-guide", "unknown-label"))


def build_review_template(source_html: str, taxonomy: Taxonomy | Mapping[str, Any]) -> str:
    """Produce the deployed expert-review template from its source and the taxonomy.

    Markers: ``taxonomy-json`` (the species list as JSON, used when a task's input carries no taxonomy),
    ``reference-images`` (an inert ``<template>`` of reference photos per label), ``unknown-label``,
    ``species-count``.

    Raises:
        TemplateBuildError: a required marker is missing or an unknown marker is present.
        TaxonomyError: the taxonomy document is invalid.
    """
    tax = _taxonomy(taxonomy)
    parts = {
        "taxonomy-json": _baked_taxonomy(tax),
        "reference-images": _reference_templates(tax),
        "unknown-label": html_text(tax.unknown_label),
        "species-count": str(len(tax.taxa)),
    }
    return _substitute(source_html, parts, required=("taxonomy-json", "reference-images", "unknown-label"))
