"""The demo's closing report: built from the run's own registry, batches, jobs and the dataset it published.

Nothing here is taken from the demo's intentions (how many photos it meant to break, which batch it expected): every
figure is read back from where the pipeline put it, so the report shows what the pipeline did. The one outside input
is the truth of each sample photo, which only the generator (and the simulated taxonomists) know.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

SIMULATED = (
    "Simulated: Ground Truth itself (a stand-in writes the labeling job's output manifest in the real format, "
    "labels a share of photos by 'machine' with confidences, and answers for a panel of simulated taxonomists and "
    "senior reviewers of configurable accuracy), and the AWS APIs (moto, in this process). "
    "Real: the synthesized templates (cdk.out) the resources were made from, the S3 -> SQS notification, the "
    "register, dispatch and workflow Lambda handlers, and the state machine definition."
)

_deser = TypeDeserializer()
# Intake's quarantine reason codes (fieldlabel.intake.media), in words.
REASONS = {
    "empty": "empty (zero bytes)",
    "not_an_image": "not an image (no known image format)",
    "undecodable": "undecodable (an image header, but the data is truncated or corrupt)",
    "too_large_bytes": "too large (bytes)",
    "too_many_pixels": "too many pixels (a decompression bomb guard)",
}


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in raw.items()}


def scan_table(ddb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of ``table`` as plain Python values."""
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        items.extend(_item(i) for i in page.get("Items", []))
    return items


@dataclass
class BatchLine:
    """One labeling batch as the batches table holds it."""

    batch_id: str
    kind: str
    photo_count: int
    status: str
    dataset_version: str | None


@dataclass
class Report:
    """The figures the demo ends with (also returned to tests, which check them against the registry)."""

    files_uploaded: int = 0
    sidecars_uploaded: int = 0
    registered: int = 0  # distinct photos the registry holds, quarantined ones excluded
    duplicates: int = 0  # uploads whose bytes were already registered (extra source keys)
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantined_files: list[tuple[str, str]] = field(default_factory=list)  # (original key, reason)
    status_counts: dict[str, int] = field(default_factory=dict)
    batches: list[BatchLine] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # {"name", "kind", "objects"}
    labeled: int = 0  # lines of the published dataset(s)
    machine_labeled: int = 0
    human_labeled: int = 0  # taxonomists' labels and reviewers' corrections
    expert_corrected: int = 0
    accuracy: float | None = None  # dataset labels vs the generator's truth
    machine_accuracy: float | None = None
    human_accuracy: float | None = None
    reviewed: int = 0
    review_confirmed: int = 0  # reviewed labels the reviewers kept
    dataset_versions: list[str] = field(default_factory=list)
    dataset_dir: str | None = None
    elapsed_seconds: float = 0.0
    simulated: str = SIMULATED

    @property
    def automation_share(self) -> float | None:
        """Machine labels over all labels of the published dataset."""
        return self.machine_labeled / self.labeled if self.labeled else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written to ``report.json``)."""
        d = asdict(self)
        d["automation_share"] = self.automation_share
        return d

    def render(self) -> str:
        """The human report."""
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f} %"

        q = ", ".join(f"{r} {n}" for r, n in sorted(self.quarantined.items())) or "none"
        lines = [
            "",
            "=== Demo report ===",
            f"Photos in:          {self.files_uploaded} files uploaded (+ {self.sidecars_uploaded} sidecars)",
            f"Registered:         {self.registered} distinct photos; {self.duplicates} duplicate upload(s) folded in",
            f"Quarantined:        {sum(self.quarantined.values())} ({q})",
            *(f"  {key}: {REASONS.get(reason, reason)}" for key, reason in self.quarantined_files[:10]),
            "Registry now:       " + ", ".join(f"{s} {n}" for s, n in sorted(self.status_counts.items())),
            f"Batches:            {len(self.batches)}",
        ]
        for b in self.batches:
            lines.append(f"  {b.batch_id}  {b.kind:10} {b.photo_count:6d} photos  {b.status}"
                         + (f"  -> {b.dataset_version}" if b.dataset_version else ""))
        lines.append(f"Ground Truth jobs:  {len(self.jobs)} (simulated)")
        for j in self.jobs:
            lines.append(f"  {j['name']}  {j['kind']:9} {j['objects']:6d} objects")
        lines += [
            f"Labels:             {self.labeled} in the dataset: {self.machine_labeled} machine, "
            f"{self.human_labeled} human (automation share {pct(self.automation_share)})",
            f"Accuracy vs truth:  {pct(self.accuracy)} overall; machine {pct(self.machine_accuracy)}, "
            f"human {pct(self.human_accuracy)}",
        ]
        if self.reviewed:
            lines.append(f"Expert review:      {self.reviewed} labels audited, {self.review_confirmed} confirmed "
                         f"({pct(self.review_confirmed / self.reviewed)}), {self.expert_corrected} corrected in "
                         "the dataset")
        else:
            lines.append("Expert review:      no labels audited in this run")
        lines += [
            f"Dataset:            {', '.join(self.dataset_versions) or 'none published'}",
            f"Local copy:         {self.dataset_dir or '-'}",
            f"Elapsed:            {self.elapsed_seconds:.1f} s",
            "",
            self.simulated,
        ]
        return "\n".join(lines)


def registry_figures(report: Report, photos: list[dict[str, Any]], batches: list[dict[str, Any]]) -> None:
    """Fill the intake and batch figures from the registry tables' items."""
    status = Counter(str(p.get("status")) for p in photos)
    report.status_counts = dict(status)
    report.quarantined = dict(Counter(str(p.get("quarantine_reason")) for p in photos
                                      if p.get("status") == "QUARANTINED"))
    report.registered = sum(n for s, n in status.items() if s != "QUARANTINED")
    report.quarantined_files = sorted(
        (str((p.get("original") or {}).get("key", p.get("photo_id"))), str(p.get("quarantine_reason")))
        for p in photos if p.get("status") == "QUARANTINED")
    report.duplicates = sum(max(len(p.get("source_keys") or ()) - 1, 0) for p in photos)
    report.batches = sorted(
        (BatchLine(str(b["batch_id"]), str(b.get("kind", "")), int(b.get("photo_count", 0)), str(b.get("status", "")),
                   b.get("dataset_version")) for b in batches if not str(b["batch_id"]).startswith("#")),
        key=lambda b: b.batch_id,
    )


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The lines of a dataset manifest."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dataset_figures(report: Report, manifests: list[Path], truth: dict[str, str], label_attribute: str,
                    labels: list[str]) -> None:
    """Fill the label, accuracy and review figures from the local copies of the published manifests."""
    meta_key = f"{label_attribute}-metadata"
    right: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for path in manifests:
        for line in read_manifest(path):
            meta = line[meta_key]
            # label-source says who set the label that stands: the model, the taxonomists, or a senior reviewer
            # who corrected it (counted with the human labels).
            raw_source = meta.get("label-source") or ("human" if meta.get("human-annotated") == "yes" else "machine")
            source = "machine" if raw_source == "machine" else "human"
            report.expert_corrected += 1 if raw_source == "expert_review" else 0
            seen[source] += 1
            if truth.get(line["photo-id"]) == labels[line[label_attribute]]:
                right[source] += 1
            review = meta.get("review")
            if isinstance(review, dict) and review.get("decision"):
                report.reviewed += 1
                report.review_confirmed += 1 if review.get("decision") in ("confirm", "confirmed") else 0
    report.machine_labeled, report.human_labeled = seen["machine"], seen["human"]
    report.labeled = seen["machine"] + seen["human"]

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    report.accuracy = ratio(right["machine"] + right["human"], report.labeled)
    report.machine_accuracy = ratio(right["machine"], seen["machine"])
    report.human_accuracy = ratio(right["human"], seen["human"])
