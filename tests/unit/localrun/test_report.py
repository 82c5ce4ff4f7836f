"""The demo report's per-batch figures: who labeled what, the model's labels against the truth, the engine's
decision summary, the audit and the cost, and the measured/simulated wording."""

from __future__ import annotations

import json

from localrun.report import ENGINE_REAL, GROUNDTRUTH_SIMULATED, BatchLine, Report, batch_figures

SUMMARY = {"method": "ltt-fixed-sequence-clopper-pearson", "alpha": 0.05, "delta": 0.05, "threshold": 0.41,
           "coverage": 0.5, "auto_count": 3, "human_count": 3, "calibration_size": 250, "certified_bound": 0.031,
           "blocked_species": [{"species": "not-a-tree-or-cannot-tell", "reason": "never auto-labeled (configured)"}],
           "species_thresholds": [{"species": "ash", "threshold": 0.537, "reason": "class-conditional guard: ..."}]}


def _photo(pid: str, batch: str, label: str, source: str, **extra: str) -> dict[str, str]:
    return {"photo_id": pid, "batch_id": batch, "status": "LABELED", "label": label, "label_source": source, **extra}


def _report(engine: str = "model") -> tuple[Report, dict[str, str]]:
    report = Report(engine=engine, batches=[BatchLine("b1", "model", 3, "PUBLISHED", "v000001-b1"),
                                            BatchLine("b2", "model", 6, "PUBLISHED", "v000002-b2")])
    truth = {f"p{i}": "oak" for i in range(9)}
    photos = [
        _photo("p0", "b1", "oak", "human"), _photo("p1", "b1", "beech", "human"), _photo("p2", "b1", "oak", "human"),
        _photo("p3", "b2", "oak", "machine"), _photo("p4", "b2", "beech", "machine"),
        # a machine label a reviewer corrected: the model said "ash", which is what its accuracy is measured on
        _photo("p5", "b2", "oak", "expert_review", machine_label="ash"),
        # a human label a reviewer corrected stays human
        _photo("p6", "b2", "oak", "expert_review", previous_label="beech"),
        _photo("p7", "b2", "oak", "human"), _photo("p8", "b2", "oak", "human"),
        {"photo_id": "q", "status": "QUARANTINED"},
    ]
    batches = [{"batch_id": "b1", "engine_summary": json.dumps({**SUMMARY, "threshold": None, "auto_count": 0})},
               {"batch_id": "b2", "engine_summary": json.dumps(SUMMARY)}]
    statistics = {"v000002-b2": {"engine": {"decision": SUMMARY, "audit": {"accuracy": 0.9, "n": 10}},
                                 "estimated_cost": {"total_usd": 6.0, "all_human_total_usd": 10.0}},
                  "v000001-b1": {"estimated_cost": {"total_usd": 5.0, "all_human_total_usd": 5.0}}}
    batch_figures(report, photos, batches, statistics, truth)
    return report, truth


def test_who_labeled_what_and_the_model_accuracy_against_the_truth() -> None:
    report, _ = _report()
    b1, b2 = report.batches
    assert (b1.machine_labeled, b1.human_labeled, b1.machine_known) == (0, 3, 0)
    assert b1.automation_share == 0.0 and b1.machine_accuracy is None
    # p3 right, p4 wrong, p5's model label "ash" wrong (even though the review fixed the dataset label)
    assert (b2.machine_labeled, b2.human_labeled) == (3, 3)
    assert (b2.machine_right, b2.machine_known) == (1, 3)
    assert b2.automation_share == 0.5
    assert b2.engine == SUMMARY and b2.audit == {"accuracy": 0.9, "n": 10}
    assert report.cost_totals() == {"total_usd": 11.0, "all_human_total_usd": 15.0, "savings_share": 0.2667}
    saved = report.to_dict()
    assert saved["batches"][1]["machine_accuracy"] == 1 / 3 and saved["cost"]["total_usd"] == 11.0


def test_the_text_says_what_is_measured_and_what_is_simulated() -> None:
    report, _ = _report()
    text = report.render()
    assert ENGINE_REAL in text and GROUNDTRUTH_SIMULATED not in text
    assert "MEASURED" in text and "SIMULATED" in text
    assert "33.3 % (1/3)" in text and "3.1 %" in text and "0.410" in text and "250" in text
    assert "not auto-labeled into 1 species: not-a-tree-or-cannot-tell" in text
    assert "auto-labeled only above a higher threshold of their own: ash 0.537" in text
    assert "$11.00 for these batches vs $15.00 human-only (26.7 % saved" in text

    gt, _ = _report("groundtruth")
    gt_text = gt.render()
    assert GROUNDTRUTH_SIMULATED in gt_text and ENGINE_REAL not in gt_text
    assert "SIMULATED automated labeling (a coin)" in gt_text


def _reviewed(pid: str, source: str, under: str, decision: str, *, flagged: bool = False) -> dict[str, object]:
    label = under if decision in ("confirmed", "needs_adjudication") else "oak"
    return {"photo_id": pid, "batch_id": "b1", "status": "LABELED", "label": label, "label_source": source,
            "review": {"decision": decision, "label_source": source, "label_under_review": under,
                       "needs_adjudication": flagged}}


def test_review_figures_separate_audits_from_re_reviews_and_measure_audits_against_the_truth() -> None:
    report = Report(batches=[BatchLine("b1", "automated", 7, "PUBLISHED", "v1")])
    truth = {f"r{i}": "oak" for i in range(7)}
    photos = [
        # audits of machine labels: two right, one wrong that the reviewers nevertheless confirmed (their verdict is
        # an opinion; the accuracy is measured against the truth), one wrong they corrected
        _reviewed("r0", "machine", "oak", "confirmed"), _reviewed("r1", "machine", "oak", "confirmed"),
        _reviewed("r2", "machine", "ash", "confirmed"), _reviewed("r3", "machine", "ash", "corrected"),
        # re-reviews of low-agreement human labels: one changed, one kept, one left for adjudication
        _reviewed("r4", "human", "ash", "corrected"), _reviewed("r5", "human", "oak", "confirmed"),
        _reviewed("r6", "human", "beech", "needs_adjudication", flagged=True),
    ]
    batch_figures(report, photos, [{"batch_id": "b1"}], {}, truth)
    r = report.batches[0].review
    assert (r.audits, r.audits_known, r.audits_right) == (4, 4, 2)
    assert r.audit_verdicts == {"confirmed": 3, "corrected": 1}
    assert (r.rereviews, r.rereviews_changed, r.adjudications) == (3, 1, 1)
    assert r.audit_accuracy == 0.5
    lo, hi = r.audit_interval or (0.0, 0.0)
    assert 0.15 < lo < 0.5 < hi < 0.85  # Wilson 95 % for 2/4: about 15 % - 85 %
    report.reviewed = 7
    text = report.render()
    assert ("audits of machine labels 4 (50.0 % right vs truth (2/4, 95 % interval 15.0 %-85.0 %); reviewers' "
            "verdict: confirmed 3, corrected 1); re-reviews of low-agreement human labels 3 (1 changed); "
            "adjudications 1") in text
    assert "4 audits of machine labels, 3 re-reviews of low-agreement human labels" in text
    assert "accuracy" not in text.split("Expert review:")[1].split("\n")[0]
    saved = report.to_dict()["batches"][0]["review"]
    assert saved["audit_accuracy"] == 0.5 and saved["audits"] == 4


def test_reviewers_table_figures_and_wording() -> None:
    from localrun.report import reviewer_figures

    report = Report()
    reviewer_figures(report, [{"worker_id": "sub:b", "answers": 9, "job_order": ["j1", "j2"]},
                              {"worker_id": "private.x", "answers": 2}])
    assert report.reviewers == [{"key": "private.x", "answers": 2, "jobs": []},
                                {"key": "sub:b", "answers": 9, "jobs": ["j1", "j2"]}]
    text = report.render()
    assert "2 people (1 keyed by their Cognito sub)" in text and "not accuracy" in text
