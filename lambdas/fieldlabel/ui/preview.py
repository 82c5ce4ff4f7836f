"""Render worker templates locally the way Ground Truth does, for tests and for previewing a template in a browser.

Development tool only: it needs python-liquid (requirements-dev.txt), which is not part of the Lambda layer.
Ground Truth renders templates with Liquid, HTML-escapes every output by default, and adds the filters
``to_json``, ``grant_read_access``, ``skip_autoescape`` (and the standard ``escape``/``escape_once``); see
docs/templates.md. ``grant_read_access`` is emulated by a function that turns an S3 URI into an https URL shaped like
a presigned one (or into any URL the caller maps it to, e.g. a local file server).

Usage::

    python -m fieldlabel.ui.preview review --taxonomy taxonomy.json --out /tmp/review.html
    python -m fieldlabel.ui.preview classification --taxonomy taxonomy.json --out /tmp/classify.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fieldlabel.ui.render import build_classification_template, build_review_template
from fieldlabel.ui.task_input import build_review_task_input, split_s3_uri
from fieldlabel.ui.taxonomy import Taxonomy, parse_taxonomy_json

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "ui_templates"


def fake_presign(uri: str) -> str:
    """An https URL that looks like an S3 presigned GET for ``uri`` (deterministic, never valid)."""
    bucket, key = split_s3_uri(uri)
    signature = hashlib.sha256(uri.encode()).hexdigest()
    return (
        f"https://{bucket}.s3.us-east-1.amazonaws.com/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
    )


def ground_truth_environment(presign: Callable[[str], str] = fake_presign) -> Any:
    """A python-liquid Environment with Ground Truth's autoescaping and extra filters."""
    from liquid import Environment
    from markupsafe import Markup

    env = Environment(autoescape=True)

    def to_json(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def grant_read_access(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"grant_read_access needs an S3 URI string, got {type(value).__name__}")
        return presign(value)

    env.filters["to_json"] = to_json
    env.filters["grant_read_access"] = grant_read_access
    env.filters["skip_autoescape"] = lambda value: Markup(str(value))
    return env


def render_task(template_html: str, task_input: Mapping[str, Any], presign: Callable[[str], str] = fake_presign) -> str:
    """Render a (built) template for one task, as a worker's browser would receive it."""
    env = ground_truth_environment(presign)
    return str(env.from_string(template_html).render(task={"input": dict(task_input)}))


def sample_review_line(taxonomy: Taxonomy) -> dict[str, Any]:
    """A realistic review manifest line for previews."""
    return {
        "source-ref": "s3://example-intake/labeling-copies/sha256-0a1b2c.jpg",
        "photo-id": "sha256:0a1b2c",
        "field": {
            "site_id": "S12",
            "captured_at": "2026-05-14T09:31:00Z",
            "latitude": 51.7543,
            "longitude": -1.2566,
            "collector": "R. Okafor",
            "notes": "Lone tree at the field edge; leaves lobed, acorns on long stalks.",
            "suspected_species": taxonomy.taxa[0].label,
            "habitat": "hedgerow",
            "specimen_part": "leaf",
        },
        "label-under-review": {"label": taxonomy.taxa[0].label, "confidence": 0.91, "source": "machine"},
    }


def main(argv: list[str] | None = None) -> int:
    """Build a template from ``ui_templates/`` and a taxonomy file, render it for a sample task, write the HTML."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", choices=("review", "classification"))
    parser.add_argument("--taxonomy", required=True, type=Path, help="taxonomy.json (contracts.md shape)")
    parser.add_argument("--task-input", type=Path, help="task input JSON to render instead of the sample")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    taxonomy = parse_taxonomy_json(args.taxonomy.read_bytes())
    if args.template == "review":
        built = build_review_template((TEMPLATES_DIR / "expert-review.liquid.html").read_text(), taxonomy)
        task_input = (
            json.loads(args.task_input.read_text())
            if args.task_input
            else build_review_task_input(sample_review_line(taxonomy), taxonomy)
        )
    else:
        built = build_classification_template(
            (TEMPLATES_DIR / "image-classification.liquid.html").read_text(), taxonomy
        )
        task_input = (
            json.loads(args.task_input.read_text())
            if args.task_input
            else {
                "taskObject": "s3://example-intake/labeling-copies/sha256-0a1b2c.jpg",
                "labels": [t.label for t in taxonomy.taxa] + [taxonomy.unknown_label],
            }
        )
    args.out.write_text(render_task(built, task_input))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
