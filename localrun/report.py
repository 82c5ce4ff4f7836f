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
    "Simulated: Ground Truth itself (a stand-in writes the labeling job's output manifest in the real format and "
    "answers for a panel of simulated taxonomists and senior reviewers, who answer from the photos' truth with a "
    "configurable per-person accuracy), and the AWS APIs (moto, in this process). "
    "Real: the synthesized templates (cdk.out) the resources were made from, the S3 -> SQS notification, the "
    "register, dispatch and workflow Lambda handlers (the pre- and post-annotation Lambdas of custom jobs included), "
    "and the state machine definition."
)
LABEL_STUDIO_SIMULATED = (
    "Real: a Label Studio server (the PyPI package the deployed image pins, SQLite, on 127.0.0.1): its projects, the "
    "tasks with the model's suggestion as prediction, the people's accounts and answers, its webhooks and the "
    "export; the submit, webhook and poll Lambdas and the state machine's waitForTaskToken run states; the "
    "synthesized templates, the S3 -> SQS notification, the register, dispatch and workflow Lambda handlers. "
    "Simulated: the people's clicks (their answers are posted through Label Studio's API as their own accounts), the "
    "webhook function's Function URL (a local relay hands each webhook to the real function), and the AWS APIs "
    "(moto, in this process)."
)
ENGINE_REAL = (
    "labeling.engine 'model': every machine label comes from the REAL engine (fieldlabel.engine): embeddings "
    "computed at intake by the ONNX image model, a classifier trained after each batch on the expert labels so far, "
    "and a certified threshold. Its accuracy against the photos' true species is MEASURED."
)
GROUNDTRUTH_SIMULATED = (
    "labeling.engine 'groundtruth': Ground Truth's automated labeling cannot run offline, so its machine labels are "
    "SIMULATED by a coin (the panel's --machine-share and --machine-accuracy); their accuracy is those settings "
    "coming back, not a measurement."
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
class ReviewFigures:
    """One batch's expert review, read from the photos' ``review`` records (fieldlabel.review.apply).

    The review job holds two kinds of photo, told apart by the source of the label under review: audits of machine
    labels (a random sample; their accuracy is MEASURED here against the generator's truth, the reviewers' verdict
    is only their opinion) and re-reviews of human labels whose taxonomists agreed too little.
    """

    audits: int = 0  # machine labels sent to review
    audits_known: int = 0  # ... whose photo has a known truth
    audits_right: int = 0  # ... whose machine label names the true species (MEASURED)
    audit_verdicts: dict[str, int] = field(default_factory=dict)  # reviewers' decision -> count (SIMULATED answers)
    rereviews: int = 0  # low-agreement human labels sent to review
    rereviews_changed: int = 0  # ... that the review corrected (or marked cannot-tell)
    adjudications: int = 0  # reviewed photos flagged needs_adjudication

    @property
    def audit_accuracy(self) -> float | None:
        """Audited machine labels that name the true species, over those with a known truth."""
        return self.audits_right / self.audits_known if self.audits_known else None

    @property
    def audit_interval(self) -> tuple[float, float] | None:
        """95 % Wilson interval of :attr:`audit_accuracy` (None without audits)."""
        if not self.audits_known:
            return None
        from fieldlabel.review.accuracy import wilson_interval

        return wilson_interval(self.audits_right, self.audits_known)

    def add(self, review: dict[str, Any], truth: str | None) -> None:
        """Count one photo's review record."""
        decision = str(review.get("decision"))
        if review.get("needs_adjudication"):
            self.adjudications += 1
        if review.get("label_source") == "machine":
            self.audits += 1
            self.audit_verdicts[decision] = self.audit_verdicts.get(decision, 0) + 1
            if truth is not None:
                self.audits_known += 1
                self.audits_right += int(review.get("label_under_review") == truth)
        else:
            self.rereviews += 1
            self.rereviews_changed += int(decision in ("corrected", "cannot_tell"))


@dataclass
class BatchLine:
    """One labeling batch as the batches table holds it, with what the engine decided and what its labels were
    worth (filled by :func:`batch_figures`)."""

    batch_id: str
    kind: str
    photo_count: int
    status: str
    dataset_version: str | None
    machine_labeled: int = 0  # labels the model set (before any reviewer's correction)
    human_labeled: int = 0  # labels the taxonomists set
    machine_right: int = 0  # model labels equal to the photo's true species (MEASURED)
    machine_known: int = 0  # model labels whose photo has a known truth
    engine: dict[str, Any] | None = None  # the engine's decision summary (threshold, bound, calibration, ...)
    audit: dict[str, Any] | None = None  # the expert audit of the machine labels (dataset statistics)
    cost: dict[str, Any] | None = None  # the published cost estimate (total, all-human, savings)
    review: ReviewFigures = field(default_factory=lambda: ReviewFigures())  # the expert review, from the registry

    @property
    def automation_share(self) -> float | None:
        """Model labels over the batch's labels."""
        n = self.machine_labeled + self.human_labeled
        return self.machine_labeled / n if n else None

    @property
    def machine_accuracy(self) -> float | None:
        """Model labels that name the true species, over the model labels with a known truth."""
        return self.machine_right / self.machine_known if self.machine_known else None


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
    reviewers: list[dict[str, Any]] = field(default_factory=list)  # the reviewers table: {"key", "answers", "jobs"}
    dataset_versions: list[str] = field(default_factory=list)
    dataset_dir: str | None = None
    elapsed_seconds: float = 0.0
    engine: str = "groundtruth"  # labeling.engine of the run's config
    backend: str = "groundtruth"  # labeling.backend of the run's config
    taxonomy_source: str = "the dev config"
    simulated: str = SIMULATED

    @property
    def automation_share(self) -> float | None:
        """Machine labels over all labels of the published dataset."""
        return self.machine_labeled / self.labeled if self.labeled else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written to ``report.json``)."""
        d = asdict(self)
        d["automation_share"] = self.automation_share
        for line, b in zip(d["batches"], self.batches, strict=True):
            line["automation_share"] = b.automation_share
            line["machine_accuracy"] = b.machine_accuracy
            line["review"]["audit_accuracy"] = b.review.audit_accuracy
            line["review"]["audit_interval"] = b.review.audit_interval
        d["cost"] = self.cost_totals()
        return d

    def cost_totals(self) -> dict[str, float] | None:
        """The published cost estimates summed over the batches, with the all-human figure and the share saved."""
        costs = [b.cost for b in self.batches if b.cost]
        if not costs:
            return None
        total = sum(float(c.get("total_usd") or 0) for c in costs)
        human = sum(float(c.get("all_human_total_usd") or 0) for c in costs)
        return {"total_usd": round(total, 2), "all_human_total_usd": round(human, 2),
                "savings_share": round((human - total) / human, 4) if human else 0.0}

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
        lines += self._engine_lines(pct)
        if self.backend == "label_studio":
            lines.append(f"Label Studio:       {len(self.jobs)} batch stages on the REAL local server")
            for j in self.jobs:
                lines.append(f"  {j['name']}  {j['kind']:11} {j['objects']:6d} tasks  {j.get('status') or ''}")
        else:
            lines.append(f"Ground Truth jobs:  {len(self.jobs)} (simulated)")
            for j in self.jobs:
                lines.append(f"  {j['name']}  {j['kind']:11} {j['objects']:6d} objects")
        lines += [
            f"Labels:             {self.labeled} in the dataset: {self.machine_labeled} machine, "
            f"{self.human_labeled} human (automation share {pct(self.automation_share)})",
            f"Accuracy vs truth:  {pct(self.accuracy)} overall; machine {pct(self.machine_accuracy)}, "
            f"human {pct(self.human_accuracy)}",
        ]
        if self.reviewed:
            audits = sum(b.review.audits for b in self.batches)
            lines.append(f"Expert review:      {self.reviewed} labels reviewed ({audits} audits of machine labels, "
                         f"{self.reviewed - audits} re-reviews of low-agreement human labels); reviewers kept "
                         f"{self.review_confirmed}, {self.expert_corrected} corrected in the dataset")
        else:
            lines.append("Expert review:      no labels reviewed in this run")
        lines += self._review_lines(pct)
        cost = self.cost_totals()
        if cost:
            lines.append(f"Cost (estimate):    ${cost['total_usd']:.2f} for these batches vs "
                         f"${cost['all_human_total_usd']:.2f} human-only ({pct(cost['savings_share'])} saved; "
                         "docs/costs.md, from each version's statistics.json)")
        lines += [
            f"Dataset:            {', '.join(self.dataset_versions) or 'none published'}",
            f"Local copy:         {self.dataset_dir or '-'}",
            f"Elapsed:            {self.elapsed_seconds:.1f} s",
            "",
            ENGINE_REAL if self.engine == "model" else GROUNDTRUTH_SIMULATED,
            "SIMULATED: the taxonomists' and senior reviewers' answers (the truth, or with the panel's per-person "
            "error rate another label): their accuracy above is a setting coming back, not a measurement.",
            LABEL_STUDIO_SIMULATED if self.backend == "label_studio" else self.simulated,
        ]
        return "\n".join(lines)

    def _review_lines(self, pct: Any) -> list[str]:
        """Per batch: audits (MEASURED accuracy vs truth), re-reviews, adjudications, cost; then the reviewers."""
        out: list[str] = []
        for b in self.batches:
            r = b.review
            if not (r.audits or r.rereviews):
                continue
            lo_hi = r.audit_interval
            measured = (f"{pct(r.audit_accuracy)} right vs truth ({r.audits_right}/{r.audits_known}, 95 % interval "
                        f"{pct(lo_hi[0])}-{pct(lo_hi[1])})" if lo_hi else
                        "no machine labels to audit" if not r.audits else "no known truth")
            verdict = ", ".join(f"{k} {n}" for k, n in sorted(r.audit_verdicts.items())) or "-"
            cost = (f"; cost ${float(b.cost.get('total_usd') or 0):.2f} vs "
                    f"${float(b.cost.get('all_human_total_usd') or 0):.2f} human-only" if b.cost else "")
            out.append(f"  {b.batch_id}: audits of machine labels {r.audits} ({measured}; reviewers' verdict: "
                       f"{verdict}); re-reviews of low-agreement human labels {r.rereviews} ({r.rereviews_changed} "
                       f"changed); adjudications {r.adjudications}{cost}")
        if self.reviewers:
            by_sub = sum(1 for x in self.reviewers if str(x["key"]).startswith("sub:"))
            out.append(f"Reviewers table:    {len(self.reviewers)} people ({by_sub} keyed by their Cognito sub), "
                       "jobs counted per person: " + ", ".join(
                           f"{str(x['key'])[:12]}.. {len(x['jobs'])}" for x in self.reviewers[:6]))
            out.append("  (reliability is agreement with the review's consensus of SIMULATED answers, not accuracy)")
        return out

    def _engine_lines(self, pct: Any) -> list[str]:
        """Per batch: who labeled what, the engine's certified figures and its MEASURED accuracy vs the truth."""
        source = "the REAL engine" if self.engine == "model" else "SIMULATED automated labeling (a coin)"
        out = [f"Who labeled what, per batch (machine labels: {source}; human labels: SIMULATED taxonomists):",
               "  batch                               machine  human  automated  machine acc. vs truth   certified "
               "bound  threshold       calib.  reviewers agree"]
        for b in self.batches:
            e = b.engine or {}
            threshold = e.get("threshold")
            if isinstance(threshold, int | float):
                shown_threshold = f"{threshold:.3f}"
            elif e.get("thresholds"):
                shown_threshold = f"per species ({len(e['thresholds'])})"
            else:
                shown_threshold = "-" if not e else "none"
            accuracy = (f"{pct(b.machine_accuracy)} ({b.machine_right}/{b.machine_known})"
                        if b.machine_known else "n/a")
            bound = e.get("certified_bound")
            audit = b.audit or {}
            # The statistics' audit figure is the reviewers' agreement with the machine labels, an opinion of
            # SIMULATED people; the measured audit accuracy is in the review lines.
            audit_text = (f"{pct(audit.get('accuracy'))} of {audit.get('n')}" if audit.get("n") else "-")
            out.append(f"  {b.batch_id:35} {b.machine_labeled:7d} {b.human_labeled:6d}  {pct(b.automation_share):>9}"
                       f"  {accuracy:22} {pct(bound) if isinstance(bound, int | float) else '-':>16}  "
                       f"{shown_threshold:15} {str(e.get('calibration_size', '-')):>6}  {audit_text}")
            blocked = e.get("blocked_species") or []
            if blocked:
                # Entries are {"species", "reason"} (or plain labels); the reasons are in the dataset statistics.
                names = [str(x.get("species") or x.get("label") or x) if isinstance(x, dict) else str(x)
                         for x in blocked]
                out.append(f"      not auto-labeled into {len(names)} species: {', '.join(names[:8])}"
                           + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                           + " (too few human-confirmed examples, failed their own bound, or never: the unknown "
                             "label)")
            raised = [x for x in e.get("species_thresholds") or [] if isinstance(x, dict)]
            if raised:
                out.append("      auto-labeled only above a higher threshold of their own: " + ", ".join(
                    f"{x.get('species')} {float(x.get('threshold') or 0):.3f}" for x in raised[:8])
                           + (f" and {len(raised) - 8} more" if len(raised) > 8 else ""))
        if self.engine == "model":
            alpha = next((b.engine.get("alpha") for b in self.batches if b.engine and b.engine.get("alpha")), None)
            delta = next((b.engine.get("delta") for b in self.batches if b.engine and b.engine.get("delta")), None)
            out.append(f"  MEASURED: the engine's decisions and its labels against the photos' true species. The "
                       f"certified bound is the engine's own upper bound on its error (target {pct(alpha)} at "
                       f"{pct(1 - delta) if isinstance(delta, int | float) else 'n/a'} confidence), computed before "
                       "the batch; 'calib.' is the number of expert labels behind it; 'reviewers agree' is how "
                       "often the SIMULATED reviewers kept the audited machine labels (their opinion, not a "
                       "measurement).")
        return out


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


def read_statistics(dataset_dir: Path, version: str) -> dict[str, Any]:
    """A dataset version's ``statistics.json`` from the local copy (empty when it has none)."""
    path = dataset_dir / version / "statistics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def batch_figures(report: Report, photos: list[dict[str, Any]], batches: list[dict[str, Any]],
                  statistics: dict[str, dict[str, Any]], truth: dict[str, str]) -> None:
    """Fill each batch line's engine figures: who labeled what (the registry), the model's labels against the truth,
    the engine's decision summary (the batch item), the audit and the cost estimate (the published statistics).

    The model's label of a photo is its label when ``label_source`` is ``machine``, or the ``machine_label`` a
    reviewer's correction kept: the engine's accuracy is measured on what it said, not on what the review fixed.
    """
    items = {str(b["batch_id"]): b for b in batches}
    for line in report.batches:
        item = items.get(line.batch_id, {})
        raw = item.get("engine_summary")
        if isinstance(raw, str) and raw:
            line.engine = json.loads(raw)
        stats = statistics.get(line.dataset_version or "", {})
        engine_block = stats.get("engine") if isinstance(stats.get("engine"), dict) else None
        if engine_block and line.engine is None:
            line.engine = engine_block.get("decision")
        line.audit = (engine_block or {}).get("audit")
        line.cost = stats.get("estimated_cost") if isinstance(stats.get("estimated_cost"), dict) else None
    by_id = {b.batch_id: b for b in report.batches}
    for p in photos:
        if p.get("status") != "LABELED":
            continue
        batch = by_id.get(str(p.get("batch_id") or p.get("last_batch_id") or ""))
        if batch is None:
            continue
        review = p.get("review")
        if isinstance(review, dict) and review.get("decision"):
            batch.review.add(review, truth.get(str(p.get("photo_id"))))
        source = p.get("label_source") or ("human" if p.get("human_annotated") else "machine")
        model_label = p.get("label") if source == "machine" else p.get("machine_label")
        if model_label is None:
            batch.human_labeled += 1
            continue
        batch.machine_labeled += 1
        true = truth.get(str(p.get("photo_id")))
        if true is not None:
            batch.machine_known += 1
            batch.machine_right += int(model_label == true)


def reviewer_figures(report: Report, reviewers: list[dict[str, Any]]) -> None:
    """The reviewers table as the run left it: each key, its answers counted and the jobs applied (oldest first)."""
    report.reviewers = sorted(
        ({"key": str(r["worker_id"]), "answers": int(r.get("answers", 0)),
          "jobs": [str(j) for j in r.get("job_order") or []]} for r in reviewers),
        key=lambda x: str(x["key"]))


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
