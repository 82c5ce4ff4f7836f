"""The label-category file, the taxonomy and the worker UI templates, rendered at synth and shipped as CDK assets.

They are rendered from the config (so display names and reference images are baked in) into a staging folder and
published as file assets: Ground Truth and the annotation Lambdas read them by their exact S3 URI. Assets avoid a
BucketDeployment, whose handler role needs wildcard S3 actions (docs/decisions.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from fieldlabel.ui.render import build_classification_template, build_review_template

from stacks.config import AppConfig
from stacks.lambda_code import ROOT

UI_TEMPLATES_DIR = ROOT / "ui_templates"
STAGING_DIR = ROOT / "build" / "labeling-assets"


def render_ui_files(config: AppConfig) -> dict[str, str]:
    """Every file the labeling jobs read, by file name, rendered for this config."""
    files = {
        "label-categories.json": json.dumps(config.taxonomy.label_category_file(), indent=1),
        "taxonomy.json": json.dumps(config.taxonomy.taxonomy_file(), indent=1),
    }
    taxonomy = config.taxonomy.taxonomy_file()
    classification = UI_TEMPLATES_DIR / "image-classification.liquid.html"
    review = UI_TEMPLATES_DIR / "expert-review.liquid.html"
    files[classification.name] = build_classification_template(classification.read_text(), taxonomy)
    files[review.name] = build_review_template(review.read_text(), taxonomy)
    return files


class LabelingAssets(Construct):
    """Publishes the rendered files. Exposes ``uris`` (file name -> ``s3://`` URI) and :meth:`grant_read`."""

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig) -> None:
        super().__init__(scope, id_)
        files = render_ui_files(config)
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        folder = STAGING_DIR / f"{config.env_name}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        self.assets: dict[str, s3_assets.Asset] = {}
        for name, content in sorted(files.items()):
            path = folder / name
            if not path.exists() or path.read_text() != content:
                path.write_text(content)
            self.assets[name] = s3_assets.Asset(self, _construct_id(name), path=str(path))
        self.uris = {name: asset.s3_object_url for name, asset in self.assets.items()}

    @property
    def object_arns(self) -> list[str]:
        return [a.bucket.arn_for_objects(a.s3_object_key) for a in self.assets.values()]

    @property
    def bucket_arns(self) -> list[str]:
        """The bucket(s) the assets live in (CDK's bootstrap asset bucket)."""
        return sorted({a.bucket.bucket_arn for a in self.assets.values()})

    @property
    def object_keys(self) -> list[str]:
        return [a.s3_object_key for a in self.assets.values()]

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` read exactly these files."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=self.object_arns)
        )


def _construct_id(file_name: str) -> str:
    stem = Path(file_name).name.split(".")[0]
    return "".join(part.capitalize() for part in stem.split("-"))
