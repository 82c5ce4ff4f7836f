"""Per-batch and over-time figures: photos, human vs machine, audit accuracy, estimated cost and savings.

Sources: the batches table (which batches were published, when, their kind and dataset) and each published
version's ``statistics.json`` (docs/dataset-format.md), which carries the labeling counts, the expert review's
machine-label accuracy and, since the publish step records it, the ``estimated_cost`` block. A cost missing from
the statistics (older versions), or every cost when ``--config`` is given, is computed here with the same function
(:func:`fieldlabel.costs.estimated_cost`) from the batch's counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.costs import Assumptions, PriceBook, estimated_cost, usage_from_counts
from fieldlabel.labeling.publish import STATS_NAME

from fieldlabel_cli.errors import CliError, error_code, translate_aws_error
from fieldlabel_cli.status import FAILED, PUBLISHED

Row = dict[str, Any]


def read_statistics(s3: Any, dataset_uri: str) -> dict[str, Any] | None:
    """The version's ``statistics.json`` (None when it is missing)."""
    bucket, prefix = parse_s3_uri(dataset_uri)
    key = prefix.rstrip("/") + "/" + STATS_NAME
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise translate_aws_error(exc, what=f"s3://{bucket}/{key}") from exc
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _accuracy(review: Mapping[str, Any] | None) -> dict[str, Any]:
    overall = ((review or {}).get("machine_accuracy") or {}).get("overall") or {}
    return {"accuracy": overall.get("accuracy"), "ci_low": overall.get("ci_low"), "ci_high": overall.get("ci_high"),
            "audited": int(overall.get("n") or (review or {}).get("audited") or 0)}


def batch_row(batch: Mapping[str, Any], statistics: Mapping[str, Any] | None) -> Row:
    """One report row from a published batch record and its dataset statistics (counts only; cost comes later)."""
    stats = dict(statistics or {})
    recorded = batch.get("stats") or {}
    photos = int(stats.get("photos", recorded.get("photos", 0)) or 0)
    human = int(stats.get("human_labeled", recorded.get("human_labeled", 0)) or 0)
    machine = int(stats.get("machine_labeled", recorded.get("machine_labeled", 0)) or 0)
    review = stats.get("review") if isinstance(stats.get("review"), dict) else None
    acc = _accuracy(review)
    labeling = stats.get("labeling") or batch.get("labeling_stats") or {}
    return {
        "batch_id": batch["batch_id"],
        "published_at": batch.get("updated_at"),
        "month": str(batch.get("updated_at") or "")[:7],
        "kind": batch.get("kind"),
        "dataset_version": batch.get("dataset_version"),
        "photos": photos,
        "human_labeled": human,
        "machine_labeled": machine,
        "automation_share": round(machine / photos, 4) if photos else 0.0,
        "not_labeled": int(labeling.get("failed", 0) or 0),
        "reviewed": int((review or {}).get("reviewed") or 0),
        "corrections": int((review or {}).get("corrections") or 0),
        **acc,
        "statistics": "read" if statistics is not None else "missing",
        "_recorded_cost": stats.get("estimated_cost") if isinstance(stats.get("estimated_cost"), dict) else None,
    }


def _job_objects(row: Row) -> int:
    """The objects a published row put through Ground Truth jobs this month (what its cost block says, else all)."""
    cost = row.get("cost") or {}
    if isinstance(cost.get("job_objects"), int):
        return int(cost["job_objects"])
    return int(row["photos"]) + int(row["reviewed"])


def add_costs(rows: list[Row], prices: PriceBook, assumptions: Assumptions, *, recompute: bool,
              prices_from: str) -> None:
    """Give every row its ``cost`` (recorded at publish time, or computed here) in place.

    Rows must be in publish order: the per-object tiers count the objects labeled earlier in the same month.
    """
    earlier: dict[str, int] = {}
    for row in rows:
        month = row["month"]
        recorded = row.pop("_recorded_cost", None)
        if recorded is not None and not recompute:
            row["cost"] = {**recorded, "source": "recorded at publish"}
        else:
            # Which objects paid the per-object fee follows the deployment the batch ran on, recorded with its cost
            # at publish (batches published before that was recorded ran on Ground Truth).
            ran_on = recorded or {}
            usage = usage_from_counts(human_labeled=row["human_labeled"], machine_labeled=row["machine_labeled"],
                                      kind=row["kind"], reviewed=row["reviewed"],
                                      objects_labeled_earlier_this_month=earlier.get(month, 0),
                                      engine=ran_on.get("engine"), backend=ran_on.get("backend"))
            row["cost"] = {**estimated_cost(usage, prices, assumptions, prices_from=prices_from),
                           "source": "computed by fieldlabel report"}
        earlier[month] = earlier.get(month, 0) + _job_objects(row)


def load_rows(ddb: Any, s3: Any, batches: list[dict[str, Any]]) -> list[Row]:
    """Rows of the published batches among ``batches``, oldest publication first."""
    published = sorted((b for b in batches if b.get("status") == PUBLISHED),
                       key=lambda b: (str(b.get("updated_at", "")), b["batch_id"]))
    rows = []
    for b in published:
        statistics = read_statistics(s3, b["dataset_uri"]) if b.get("dataset_uri") else None
        rows.append(batch_row(b, statistics))
    return rows


def summarize(rows: list[Row], *, key: str = "all") -> Row:
    """Totals over ``rows``; accuracy is the audit-weighted mean of the batches' accuracies."""
    photos = sum(r["photos"] for r in rows)
    machine = sum(r["machine_labeled"] for r in rows)
    audited = [(r["accuracy"], r["audited"]) for r in rows if r["accuracy"] is not None and r["audited"]]
    n = sum(a for _, a in audited)
    total = sum(r["cost"]["total_usd"] for r in rows)
    all_human = sum(r["cost"]["all_human_total_usd"] for r in rows)
    return {
        "period": key,
        "batches": len(rows),
        "photos": photos,
        "human_labeled": sum(r["human_labeled"] for r in rows),
        "machine_labeled": machine,
        "automation_share": round(machine / photos, 4) if photos else 0.0,
        "not_labeled": sum(r["not_labeled"] for r in rows),
        "reviewed": sum(r["reviewed"] for r in rows),
        "audited": n,
        "accuracy": round(sum(acc * a for acc, a in audited) / n, 4) if n else None,
        "cost_usd": round(total, 2),
        "all_human_usd": round(all_human, 2),
        "savings_usd": round(all_human - total, 2),
        "savings_share": round((all_human - total) / all_human, 4) if all_human > 0 else 0.0,
    }


def by_month(rows: list[Row]) -> list[Row]:
    """:func:`summarize` per calendar month of publication, oldest first."""
    months: dict[str, list[Row]] = {}
    for r in rows:
        months.setdefault(r["month"], []).append(r)
    return [summarize(rs, key=m) for m, rs in sorted(months.items())]


def failed_in(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed batches, most recent first (id, time, photos, reason)."""
    failed = sorted((b for b in batches if b.get("status") == FAILED), key=lambda b: str(b.get("updated_at", "")),
                    reverse=True)
    return [{"batch_id": b["batch_id"], "failed_at": b.get("updated_at"), "photo_count": b.get("photo_count"),
             "failure_reason": b.get("failure_reason")} for b in failed]


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "-"


def _usd(x: Any) -> str:
    return f"{x:,.2f}" if isinstance(x, int | float) else "-"


def render_table(rows: list[Row], total: Row, *, months: list[Row] | None = None) -> str:
    """A fixed-width table of the batches (or of the months), with a totals line."""
    if months is not None:
        head = (f"{'MONTH':<8} {'BATCHES':>7} {'PHOTOS':>8} {'HUMAN':>7} {'MACHINE':>7} {'AUTO':>6} {'AUDITED':>7} "
                f"{'ACCURACY':>8} {'COST $':>10} {'ALL-HUMAN $':>11} {'SAVING $':>10}")
        body = [f"{m['period']:<8} {m['batches']:>7} {m['photos']:>8,} {m['human_labeled']:>7,} "
                f"{m['machine_labeled']:>7,} {_pct(m['automation_share']):>6} {m['audited']:>7,} "
                f"{_pct(m['accuracy']):>8} {_usd(m['cost_usd']):>10} {_usd(m['all_human_usd']):>11} "
                f"{_usd(m['savings_usd']):>10}" for m in months]
        first = f"{'total':<8} {total['batches']:>7}"
    else:
        head = (f"{'PUBLISHED':<10} {'BATCH':<28} {'KIND':<10} {'PHOTOS':>7} {'HUMAN':>7} {'MACHINE':>7} {'AUTO':>6} "
                f"{'AUDITED':>7} {'ACCURACY':>8} {'COST $':>10} {'ALL-HUMAN $':>11} {'SAVING $':>10}")
        body = [f"{str(r['published_at'] or '')[:10]:<10} {r['batch_id']:<28} {str(r['kind'] or '-'):<10} "
                f"{r['photos']:>7,} {r['human_labeled']:>7,} {r['machine_labeled']:>7,} "
                f"{_pct(r['automation_share']):>6} {r['audited']:>7,} {_pct(r['accuracy']):>8} "
                f"{_usd(r['cost']['total_usd']):>10} {_usd(r['cost']['all_human_total_usd']):>11} "
                f"{_usd(r['cost']['savings_usd']):>10}" for r in rows]
        first = f"{'total':<10} {str(total['batches']) + ' batch(es)':<28} {'':<10} {total['photos']:>7,}"
    if months is not None:
        tail = (f"{first} {total['photos']:>8,} {total['human_labeled']:>7,} {total['machine_labeled']:>7,} "
                f"{_pct(total['automation_share']):>6} {total['audited']:>7,} {_pct(total['accuracy']):>8} "
                f"{_usd(total['cost_usd']):>10} {_usd(total['all_human_usd']):>11} {_usd(total['savings_usd']):>10}")
    else:
        tail = (f"{first} {total['human_labeled']:>7,} {total['machine_labeled']:>7,} "
                f"{_pct(total['automation_share']):>6} {total['audited']:>7,} {_pct(total['accuracy']):>8} "
                f"{_usd(total['cost_usd']):>10} {_usd(total['all_human_usd']):>11} {_usd(total['savings_usd']):>10}")
    rule = "-" * len(head)
    return "\n".join([head, rule, *body, rule, tail])


def render_batch(row: Row) -> str:
    """The detail of one batch: counts, review, and the cost's line items."""
    c = row["cost"]
    lines = [
        f"Batch {row['batch_id']} ({row['kind']}), published {row['published_at']} as {row['dataset_version']}",
        f"  photos {row['photos']:,}: {row['human_labeled']:,} by taxonomists, {row['machine_labeled']:,} by the "
        f"machine ({_pct(row['automation_share'])}); not labeled {row['not_labeled']:,}",
        f"  expert review: {row['reviewed']:,} reviewed, {row['corrections']:,} corrected; machine-label accuracy "
        f"{_pct(row['accuracy'])}"
        + (f" (95% CI {_pct(row['ci_low'])}-{_pct(row['ci_high'])}, {row['audited']} audited)" if row['audited']
           else ""),
        f"  estimated cost ({c['source']}; prices: {c.get('prices_from', '-')}):",
    ]
    for item in c.get("line_items", []):
        mark = "" if item.get("confirmed") else "*"
        lines.append(f"    {item['description']:<56} ${item['usd']:>10,.2f}{mark}")
    lines += [
        f"    {'total':<56} ${c['total_usd']:>10,.2f}",
        f"    {'all photos to taxonomists':<56} ${c['all_human_total_usd']:>10,.2f}",
        f"    {'saving':<56} ${c['savings_usd']:>10,.2f} ({_pct(c['savings_share'])})",
    ]
    if c.get("unconfirmed_prices"):
        lines.append("  * price not confirmed on an AWS page, or an assumption: see docs/costs.md")
    return "\n".join(lines)


def write_chart(rows: list[Row], path: Path) -> None:
    """A PNG with the automation share (and audit accuracy) and the cost per photo, per batch over time.

    Raises:
        CliError: matplotlib is not installed, or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--chart needs matplotlib: pip install matplotlib (it is in requirements-dev.txt)") from None
    labels = [f"{str(r['published_at'] or '')[:10]}\n{r['batch_id'][-8:]}" for r in rows]
    x = list(range(len(rows)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.9 * len(rows) + 3), 7), sharex=True)
    top.bar(x, [100 * r["automation_share"] for r in rows], color="#4c9a2a", label="labeled by the machine")
    acc = [(i, 100 * r["accuracy"]) for i, r in zip(x, rows, strict=True) if r["accuracy"] is not None]
    if acc:
        top.plot([i for i, _ in acc], [a for _, a in acc], "o-", color="#1f3b73",
                 label="machine-label accuracy (audit)")
    top.set_ylim(0, 125)  # headroom for the legend above the bars
    top.set_yticks([0, 20, 40, 60, 80, 100])
    top.set_ylabel("%")
    top.set_title("Automated labeling per batch")
    top.legend(loc="upper left", ncol=2, fontsize=8)
    per_photo = [(r["cost"]["total_usd"] / r["photos"]) if r["photos"] else 0.0 for r in rows]
    human_per_photo = [(r["cost"]["all_human_total_usd"] / r["photos"]) if r["photos"] else 0.0 for r in rows]
    bottom.plot(x, human_per_photo, "s--", color="#a33", label="all photos to taxonomists")
    bottom.plot(x, per_photo, "o-", color="#4c9a2a", label="actual (estimated)")
    bottom.set_ylabel("USD per photo")
    bottom.set_ylim(0, 1.3 * max(human_per_photo + per_photo + [0.01]))
    bottom.set_title("Estimated labeling cost per photo")
    bottom.legend(loc="upper left", ncol=2, fontsize=8)
    bottom.set_xticks(x, labels, fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CliError(f"cannot write the chart to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
