"""``fieldlabel cost``: the cost model from the command line (no AWS)."""

from __future__ import annotations

import json


def _config(tmp_path):
    prices = {
        "gt_tiers": [{"up_to": 50_000, "usd_per_object": 0.08}, {"up_to": None, "usd_per_object": 0.04}],
        "training_instance_hour": {"usd": 4.0}, "transform_instance_hour": {"usd": 0.2},
        "lambda_request": {"usd": 0.0000002}, "lambda_gb_second": {"usd": 0.00002},
        "sfn_transition": {"usd": 0.000025}, "s3_put": {"usd": 0.000005}, "s3_get": {"usd": 0.0000004},
        "taxonomist_hour": {"usd": 60.0},
    }
    assumptions = {"transform_seconds_per_object": 0.036, "workers_per_object": 2, "seconds_per_task": 18,
                   "lambda_invocations_per_photo": 2}
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": prices, "assumptions": assumptions}))
    return path


def test_cost_json_matches_the_hand_computed_example(tmp_path, cli, aws_calls):
    # Same batch as tests/unit/costs: 120 (GT) + 4 (training) + 0.046 (transform) + 480 (people) + 0.075902 (infra)
    r = cli("cost", "--photos", "2000", "--machine-labeled", "1200", "--earlier-this-month", "49000",
            "--config", str(_config(tmp_path)), "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert round(data["total_usd"], 6) == 604.121902
    assert round(data["all_human_total_usd"], 6) == 1320.075902
    assert aws_calls.calls == []


def test_cost_with_the_own_engine_and_on_label_studio(tmp_path, cli):
    # Own engine: only the 800 taxonomists' photos pay the fee (800 x 0.08) and no active learning runs
    r = cli("cost", "--photos", "2000", "--machine-labeled", "1200", "--earlier-this-month", "49000",
            "--engine", "model", "--config", str(_config(tmp_path)), "--json")
    assert r.code == 0, r.stderr
    assert round(r.json()["total_usd"], 6) == 544.075902 and r.json()["iterations"] == 0
    # Label Studio: no per-object fee on either side
    r = cli("cost", "--photos", "2000", "--machine-labeled", "1200", "--engine", "model", "--backend",
            "label_studio", "--config", str(_config(tmp_path)), "--json")
    assert round(r.json()["total_usd"], 6) == 480.075902
    assert round(r.json()["all_human_total_usd"], 6) == 1200.075902
    # Ground Truth's automated labeling does not exist on Label Studio
    r = cli("cost", "--photos", "10", "--machine-labeled", "2", "--backend", "label_studio")
    assert r.code == 2 and "engine 'model'" in r.stderr


def test_cost_human_output_marks_unconfirmed_prices(cli):
    r = cli("cost", "--photos", "5000", "--machine-share", "0.6")
    assert r.code == 0
    assert "saving" in r.stdout
    assert "Ground Truth per-object fee, tier 1" in r.stdout
    assert "* price not confirmed" in r.stdout


def test_cost_usage_errors_exit_2(cli, tmp_path, capsys):
    assert cli("cost", "--photos", "10", "--machine-labeled", "11").code == 2
    assert cli("cost", "--photos", "10", "--machine-share", "0.5", "--human-only").code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"prices": {"taxonomist_hour": {"usd": -1}}}')
    r = cli("cost", "--photos", "10", "--config", str(bad))
    assert r.code == 2 and "taxonomist_hour" in r.stderr
