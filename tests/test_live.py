"""Live accuracy (pure logic and the kept forecasts): hand-computed values."""

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from schemas.daily import DATE, TARGET
from tasks import history_store, live
from tasks.train_tasks import Evaluation

MADE = datetime(2024, 1, 1, 12, tzinfo=UTC)


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(f"2024-01-{text}")


def kept(version: str, through: str, forecasts: dict[str, tuple[float, float, float]], made_by: str = "retrain"):
    """Rows of the forecasts table: day -> (forecast, lower_80, upper_80)."""
    frame = pd.DataFrame(
        {
            DATE: [day(d) for d in forecasts],
            "forecast": [f for f, _, _ in forecasts.values()],
            "lower_80": [lo for _, lo, _ in forecasts.values()],
            "upper_80": [hi for _, _, hi in forecasts.values()],
        }
    )
    return live.forecast_rows(frame, version, "lstm", day(through), made_by, MADE)


HISTORY = pd.DataFrame({DATE: pd.date_range("2024-01-01", "2024-01-10"), TARGET: [0, 100, 200, 50, 9, 9, 9, 9, 9, 100]})
FORECASTS = pd.concat(
    [
        kept("1", "01", {"02": (110, 90, 120), "03": (150, 100, 160), "04": (80, 70, 90)}),
        kept("1", "02", {"03": (190, 150, 195)}, "predict"),  # made later: it, not 150, is scored for the 3rd
        kept("1", "09", {"10": (100, 90, 110), "11": (100, 90, 110)}),  # the 11th has not arrived
    ],
    ignore_index=True,
)


def test_a_forecast_is_kept_with_its_version_data_day_and_intervals():
    rows = kept("4", "01", {"02": (110.5, 90, 120)})
    assert rows.to_dict("records") == [
        {
            "model_version": "4",
            "data_through": day("01"),
            DATE: day("02"),
            "kind": "lstm",
            "forecast": 110.5,
            "intervals": {"80": [90.0, 120.0]},
            "made_by": "retrain",
            "made_at": MADE,
        }
    ]


def test_an_unbounded_interval_side_is_kept_as_none_and_counts_as_covering():
    rows = kept("4", "01", {"02": (110, -math.inf, math.inf)})
    assert rows["intervals"].tolist() == [{"80": [None, None]}]
    assert live.live_metrics(rows, HISTORY)["live_coverage_80_28d"].tolist() == [1.0]


def test_live_metrics_score_the_last_forecast_before_each_arrived_day_over_calendar_windows():
    scores = live.live_metrics(FORECASTS, HISTORY)
    assert scores[DATE].tolist() == [day("02"), day("03"), day("04"), day("10")]
    assert scores["forecast"].tolist() == [110, 190, 80, 100]
    assert scores["live_days"].tolist() == [1, 2, 3, 4]
    # Errors 10, 10, 30, 0; percentage errors 10, 5, 60, 0.
    assert scores["live_mae_7d"].tolist() == pytest.approx([10, 10, 50 / 3, 15])  # the 10th: the 4th .. 10th
    assert scores["live_mae_28d"].tolist() == pytest.approx([10, 10, 50 / 3, 12.5])
    assert scores["live_mae"].tolist() == pytest.approx([10, 10, 50 / 3, 12.5])
    assert scores["live_mape_7d"].tolist() == pytest.approx([10, 7.5, 25, 30])
    assert scores["live_coverage_80_28d"].tolist() == pytest.approx([1, 0.5, 1 / 3, 0.5])  # 200 and 50 fell outside
    assert live.metric_columns(scores) == [
        "live_days",
        "live_mae_7d",
        "live_mae_28d",
        "live_mae",
        "live_mape_7d",
        "live_mape_28d",
        "live_mape",
        "live_coverage_80_28d",
    ]


def test_each_version_is_scored_on_its_own_days():
    other = kept("2", "03", {"04": (40, 30, 45)})
    scores = live.live_metrics(pd.concat([FORECASTS, other], ignore_index=True), HISTORY)
    second = scores[scores["model_version"] == "2"]
    assert second[DATE].tolist() == [day("04")] and second["live_mae"].tolist() == [10] and second["live_days"].tolist() == [1]


def test_a_day_without_travellers_has_an_error_but_no_percentage_error():
    scores = live.live_metrics(kept("1", "01", {"01": (5, 0, 10)}).assign(data_through=pd.Timestamp("2023-12-31")), HISTORY)
    assert scores["live_mae"].tolist() == [5] and math.isnan(scores["live_mape"].iloc[0])


def test_only_days_not_scored_before_are_new():
    scores = live.live_metrics(FORECASTS, HISTORY)
    done = scores.iloc[:2][["model_version", DATE]]
    assert live.unscored(scores, done)[DATE].tolist() == [day("04"), day("10")]
    assert live.unscored(scores, pd.DataFrame())[DATE].tolist() == scores[DATE].tolist()


def test_the_store_keeps_the_first_forecast_of_a_version_data_and_day(tmp_path):
    store = history_store.open_store(f"sqlite:///{tmp_path / 'history.db'}", ["travellers"])
    assert history_store.save_forecasts(store, FORECASTS) == 6
    again = FORECASTS.assign(forecast=1.0)  # the same version, data and days: already kept
    assert history_store.save_forecasts(store, pd.concat([again, kept("2", "03", {"04": (40, 30, 45)})])) == 1
    read = history_store.read_forecasts(store)
    assert len(read) == 7 and read["forecast"].iloc[0] == 110 and read["intervals"].iloc[0] == {"80": [90.0, 120.0]}
    scores = live.live_metrics(read, HISTORY)
    history_store.save_live_scores(
        store, scores.assign(metrics=[{"live_mae": 1.0}] * len(scores))[["model_version", DATE, "metrics"]]
    )
    assert history_store.read_live_scores(store)["metrics"].tolist() == [{"live_mae": 1.0}] * 5


def test_the_gate_takes_the_backtest_days_after_the_champions_data():
    evaluation = Evaluation(
        "lstm",
        {},
        {},
        {},
        {},
        "2024-01-02",
        "2024-01-05",
        ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"),
        (100.0, 200.0, 50.0, 80.0),
        {"lstm": (90.0, 210.0, 40.0, 100.0), "seasonal_naive": (100.0, 100.0, 100.0, 100.0)},
    )
    assert evaluation.mae_after("2024-01-03") == (2, {"lstm": 15.0, "seasonal_naive": 35.0})
    assert evaluation.mae_after("2024-01-01") == (4, {"lstm": 12.5, "seasonal_naive": 42.5})
    days, maes = evaluation.mae_after("2024-01-05")
    assert days == 0 and all(math.isnan(value) for value in maes.values())


def newest(days: float = 7, mae: float = 160.0, covered: float = 0.75) -> dict:
    return {"live_days": days, "live_mae_28d": mae, "live_coverage_80_28d": 0.9, "live_coverage_95_28d": covered}


def test_a_champion_drifts_when_its_live_error_and_the_intervals_both_say_so():
    reason = live.drift_reason(newest(), backtest_mae=100.0, factor=1.5, coverage_margin=0.15, min_days=7)
    assert reason == (
        "live MAE of the last 28 days 160 is 1.60x its backtest MAE 100 (limit 1.5x); "
        "its 95% interval covered 75% of them (limit 80%)"
    )


@pytest.mark.parametrize(
    "figures",
    [
        newest(mae=150.0),  # at the limit, not over it
        newest(covered=0.8),  # the intervals still cover the days: a bad run of days, not a new regime
        newest(days=6),  # too few days scored to tell
    ],
)
def test_no_drift_within_the_limits_or_on_too_few_days(figures):
    assert live.drift_reason(figures, backtest_mae=100.0, factor=1.5, coverage_margin=0.15, min_days=7) is None


def test_without_intervals_the_error_alone_decides_and_without_a_backtest_there_is_no_drift():
    alone = {"live_days": 7, "live_mae_28d": 160.0}
    assert live.drift_reason(alone, 100.0, 1.5, 0.15, 7).endswith("(limit 1.5x)")
    assert live.drift_reason(alone, math.nan, 1.5, 0.15, 7) is None


def test_the_readmes_drift_automation_is_a_prefect_automation_on_the_drift_event():
    import re
    import uuid

    import yaml
    from conftest import ROOT
    from prefect.events.schemas.automations import AutomationCore

    from tasks.live_tasks import EVENT_DRIFT

    text = re.search(r"```yaml\n(# drift-automation\.yaml.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    block = str(uuid.uuid4())
    document = yaml.safe_load(re.sub(r"<your notification block's id>", block, text))
    automation = AutomationCore.model_validate(document["automations"][0])
    assert automation.trigger.expect == {EVENT_DRIFT} and str(automation.actions[0].block_document_id) == block


def test_the_report_shows_per_day_the_last_forecast_kept_for_it():
    newer = kept("2", "02", {"03": (180, 170, 190)})  # the same data as v1's 190, a newer version: shown
    shown = live.shown_forecasts(pd.concat([FORECASTS, newer], ignore_index=True))
    assert shown[DATE].tolist() == [day(d) for d in ("02", "03", "04", "10", "11")]
    assert shown["forecast"].tolist() == [110, 180, 80, 100, 100]
    lower, upper = live.interval_bounds(shown.assign(intervals=[{"80": [None, 2.0]}, {}, *shown["intervals"][2:]]), "80")
    assert np.isnan(lower[:2]).all() and upper.tolist()[:3] == [2.0, pytest.approx(np.nan, nan_ok=True), 90.0]


def test_a_decision_is_one_line_of_the_report_and_a_drift_a_second():
    from tasks.live_tasks import decision_line

    tags = {"fitted_through": "2024-11-01", "kind": "lstm", "decision": "promoted", "decision_reason": "first model"}
    assert decision_line("3", tags) == "2024-11-01  v3    lstm           promoted      first model"
    drifted = decision_line("12", tags | {"drift": "2024-11-09: live MAE ..."})
    assert drifted.splitlines()[1] == " " * 47 + "drift 2024-11-09: live MAE ..."


def test_the_live_report_of_a_first_retrain_says_nothing_is_scored_yet_without_a_warning(tmp_path):
    import warnings

    from tasks.plots import plot_live_report

    actual = pd.DataFrame({DATE: [day("01"), day("02")], TARGET: [100, 120]})
    shown = pd.DataFrame({DATE: [day("02")], "forecast": [110.0], "intervals": [{"80": [90.0, 130.0]}]})
    scores = pd.DataFrame(columns=["model_version", DATE, "live_mae_28d"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found to put in legend" before
        path = plot_live_report(actual, shown, scores, {}, [], tmp_path / "live-report.png")
    assert path.stat().st_size > 0
