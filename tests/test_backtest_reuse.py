"""A retrain's backtest forecasts with a registered version fitted just before its test days instead of fitting
the model again (backtest.reuse_fit_days), and its final fit's networks start from the newest version's weights
(model.warm_start_days), unless the days that version saw were revised since."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import SAMPLE
from test_reliability import arrive, make_workspace, outcome, retrain, runs

pytestmark = pytest.mark.integration  # real Prefect server and MLflow store, CLI processes

# Three test days: the first is the day after v1's, so v1 (the --init run's fit) was fitted just before them.
# min_unseen_days 3: the gate compares the challenger and v1 on those days, which shows which fit forecast them.
THREE_TEST_DAYS = ["--set", "backtest.test_days=3", "--set", "retrain.min_unseen_days=3"]


def retrain_run(root, day: str):
    """The retrain run whose data ends on `day`."""
    (run,) = [r for r in runs(root) if r.data.tags.get("data_through") == day and r.info.run_name.startswith("retrain")]
    return run


def test_the_backtest_reuses_the_version_fitted_before_its_test_days_unless_its_days_were_revised(tmp_path, prefect_env):
    reused_root, revised_root = tmp_path / "reused", tmp_path / "revised"
    reused_root.mkdir()
    config = make_workspace(reused_root)
    first = retrain(config, prefect_env, "--init")  # v1, fitted through the sample's last day but three
    assert first.returncode == 0, first.stderr[-3000:]
    rows = pd.read_csv(SAMPLE, dtype=str)
    last = rows["date"].iloc[-1]
    shutil.copytree(reused_root, revised_root)
    for root in (reused_root, revised_root):
        for day in rows["date"].iloc[-3:]:
            arrive(root, day)

    reused = retrain(config, prefect_env, *THREE_TEST_DAYS)
    assert reused.returncode == 0, reused.stderr[-3000:]
    assert outcome(reused).startswith(("promoted", "not promoted")), reused.stdout
    assert "the backtest forecasts with v1, fitted through" in reused.stdout + reused.stderr
    run = retrain_run(reused_root, last)
    assert run.data.tags["backtest_fit"] == "v1"
    assert run.data.tags["warm_start"] == "v1"  # the final fit's networks start from v1's, fitted 3 days before
    assert "the networks start from the weights of v1, fitted through" in reused.stdout + reused.stderr
    # The challenger's backtest forecasts are v1's: on the three days both were scored on, the same MAE.
    assert run.data.metrics["unseen_days"] == 3
    assert run.data.metrics["unseen_challenger_mae"] == run.data.metrics["unseen_champion_mae"]

    # The same day, after a file revised a day v1 was fitted on: fitted afresh, and the log says why.
    revision = rows.iloc[[-10]].copy()
    revision["riders"] = str(int(revision["riders"].iloc[0]) + 1000)
    revision.to_csv(revised_root / "incoming" / "revision.csv", index=False)
    revised_config = revised_root / "config.toml"
    revised_config.write_text(config.read_text().replace(str(reused_root), str(revised_root)))
    fresh = retrain(revised_config, prefect_env, *THREE_TEST_DAYS)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "the backtest fits lstm afresh: the days v1 saw have changed since (revised)" in fresh.stdout + fresh.stderr
    assert retrain_run(revised_root, last).data.tags["backtest_fit"] == "fresh"
    assert retrain_run(revised_root, last).data.tags["warm_start"] == "none"  # nor from v1's weights


# A fit on every day forecasts its held-out days (the last 7 weighting, the 7 before them stopping) with AutoETS
# fitted on the days before each part: versions fitted on exactly those days lend theirs.
HELD_OUT_PEERS = [
    "--set",
    "model.validation_days=14",
    "--set",
    "model.weighting_days=7",
    "--set",
    'model.combine_with=["auto_ets"]',
]


def test_versions_fitted_on_the_days_before_the_held_out_days_lend_their_peer_fits(tmp_path, prefect_env):
    config = make_workspace(tmp_path)
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-14].to_csv(tmp_path / "initial.csv", index=False)  # v1: the days before the stopping days
    assert retrain(config, prefect_env, "--init", *HELD_OUT_PEERS).returncode == 0
    (tmp_path / "incoming").mkdir(exist_ok=True)
    rows.iloc[-14:-7].to_csv(tmp_path / "incoming" / "week-1.csv", index=False)  # v2: the days before the weighting days
    assert retrain(config, prefect_env, *HELD_OUT_PEERS).returncode == 0
    rows.iloc[-7:].to_csv(tmp_path / "incoming" / "week-2.csv", index=False)

    result = retrain(config, prefect_env, *HELD_OUT_PEERS)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    for version, day in (("v1", rows["date"].iloc[-15]), ("v2", rows["date"].iloc[-8])):
        assert f"the 1 statistical peer fit(s) of the version fitted through {day} stand in" in log, version
    assert retrain_run(tmp_path, rows["date"].iloc[-1]).data.tags["warm_start"] == "v2"
