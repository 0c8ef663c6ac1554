"""Combining the networks with the peers: weights from validation errors only, exact by hand."""

import json
import re

import joblib
import numpy as np
import pytest

from tasks.calendar import unlike_weekday
from tasks.combination import (
    as_normal_days,
    combination_weights,
    combine,
    holiday_factors,
    surprised_rows,
    unlike_weekday_factors,
    value_range,
    without_holidays,
    without_members,
)
from tasks.config import DataConfig, ModelConfig, load_settings
from tasks.forecasters import load_forecaster, make_forecaster
from tasks.lstm import ENCODER_FILE
from tests.test_forecasters import weekly

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])
COMBINED = ModelConfig(
    lags=7,
    validation_days=14,
    ensemble=1,
    lstm_units=[4],
    dense_units=[4],
    epochs=2,
    combine_with=["auto_ets", "seasonal_naive"],
    weighting_days=0,
    combination="inverse_mse",
    rolling_weights=False,  # the fit's weights on every day (rolling: its own test)
    holidays_as_normal_days=False,  # the peers forecast from the history as it is (holidays as normal days: its own test)
)


def test_inverse_error_weights_by_hand():
    errors = {"lstm": np.array([10.0, -10.0]), "auto_ets": np.array([-20.0, 20.0]), "seasonal_naive": np.array([0.0, 80.0])}
    assert combination_weights(errors, "inverse_mae") == pytest.approx(
        {"lstm": 4 / 7, "auto_ets": 2 / 7, "seasonal_naive": 1 / 7}
    )
    # MSE 100, 400, 3200: weights proportional to 32, 8, 1.
    assert combination_weights(errors, "inverse_mse") == pytest.approx(
        {"lstm": 32 / 41, "auto_ets": 8 / 41, "seasonal_naive": 1 / 41}
    )


def test_equal_trimmed_and_best_weights_and_a_non_finite_member_gets_none():
    errors = {"lstm": np.array([30.0]), "auto_ets": np.array([20.0]), "auto_arima": np.array([np.nan]), "sn": np.array([40.0])}
    assert combination_weights(errors, "equal") == pytest.approx({"lstm": 1 / 3, "auto_ets": 1 / 3, "auto_arima": 0, "sn": 1 / 3})
    assert combination_weights(errors, "trimmed") == {"lstm": 0.5, "auto_ets": 0.5, "auto_arima": 0.0, "sn": 0.0}
    assert combination_weights(errors, "best") == {"lstm": 0.0, "auto_ets": 1.0, "auto_arima": 0.0, "sn": 0.0}
    assert combination_weights({"lstm": np.zeros(3), "auto_ets": np.full(3, 5.0)}, "inverse_mae")["lstm"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no member has a finite validation error"):
        combination_weights({"lstm": np.array([np.inf])}, "equal")


def test_combine_is_the_weighted_sum_of_the_weighted_members():
    forecasts = {"a": np.array([[100.0], [200.0]]), "b": np.array([[300.0], [400.0]])}
    np.testing.assert_allclose(combine(forecasts, {"a": 0.25, "b": 0.75, "c": 0.0}), [[250.0], [350.0]])


def test_the_combined_lstm_forecasts_the_weighted_sum_of_its_members_and_saves_it(tmp_path):
    history = weekly(120)
    lstm = make_forecaster("lstm", DATA, COMBINED).fit(history.iloc[:110])
    assert set(lstm.weights) == {"lstm", "auto_ets", "seasonal_naive"} and sum(lstm.weights.values()) == pytest.approx(1)
    # The weights (inverse_mse) are 1 / validation MSE, normalised; the peers were fitted before the validation days.
    inverse = {name: 1 / np.mean(e**2) for name, e in lstm.validation_errors.items()}
    assert lstm.weights == pytest.approx({name: v / sum(inverse.values()) for name, v in inverse.items()})
    assert lstm.peers["auto_ets"].fitted_through == history["date"].iloc[109]
    rows = np.arange(110, 120)
    members = {"lstm": lstm.decode_networks(history, rows)} | {k: p.forecast_rows(history, rows) for k, p in lstm.peers.items()}
    np.testing.assert_allclose(lstm.forecast_rows(history, rows), combine(members, lstm.weights))
    assert lstm.fit_metrics()["combination_weight_auto_ets"] == lstm.weights["auto_ets"]
    loaded = load_forecaster(lstm.save(tmp_path / "model"))
    assert loaded.weights == lstm.weights
    np.testing.assert_allclose(loaded.forecast_rows(history, rows), lstm.forecast_rows(history, rows))


def test_the_hybrid_lstm_decodes_from_autoets_fitted_before_its_validation_days_and_saves_it(tmp_path):
    history = weekly(120)
    hybrid = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"reference": "ets"})).fit(history.iloc[:110])
    assert hybrid.context_days is None  # the reference's state runs through the whole history
    rows = np.arange(110, 120)
    encoded = hybrid.encoder.encode(history)
    # The networks' reference is AutoETS's forecast, fitted on the rows before the 14 validation days as the peer is.
    before = make_forecaster("auto_ets", DATA, COMBINED).fit(history.iloc[:96])
    np.testing.assert_allclose(np.exp(encoded.reference[rows]), before.forecast_rows(history, rows)[:, 0])
    loaded = load_forecaster(hybrid.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.forecast_rows(history, rows), hybrid.forecast_rows(history, rows))


def test_the_weights_never_see_the_days_after_the_fit():
    history = weekly(120)
    garbled = history.copy()
    garbled.loc[110:, "travellers"] = garbled.loc[110:, "travellers"][::-1].to_numpy() * 3
    fits = [make_forecaster("lstm", DATA, COMBINED).fit(h.iloc[:110]) for h in (history, garbled)]
    assert fits[0].weights == fits[1].weights and fits[0].validation_mae == fits[1].validation_mae


def test_combining_needs_validation_days_and_the_recipe_has_no_peers():
    with pytest.raises(ValueError, match=re.escape("model.validation_days >= 7, or model.combine_with = []")):
        ModelConfig(validation_days=0)
    assert load_settings(None, ["preset=seed"]).model.combine_with == []


def test_an_lstm_saved_before_the_combination_loads_as_the_networks_alone(tmp_path):
    history = weekly(120)
    networks = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"combine_with": []})).fit(history.iloc[:110])
    folder = networks.save(tmp_path / "model")
    (folder / "combination.json").unlink()  # what a version registered before the combination holds
    spec = json.loads((folder / "forecaster.json").read_text())
    for key in ("combine_with", "combination"):
        del spec["model"][key]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    old = load_forecaster(folder)
    assert old.model.combine_with == [] and old.weights == {"lstm": 1.0}
    rows = np.arange(110, 120)
    np.testing.assert_allclose(old.forecast_rows(history, rows), networks.forecast_rows(history, rows))


def test_with_weighting_days_every_member_is_weighted_on_the_last_days_only():
    history = weekly(120)
    config = COMBINED.model_copy(update={"validation_days": 28, "weighting_days": 14, "interval_levels": [80, 95]})
    lstm = make_forecaster("lstm", DATA, config).fit(history.iloc[:110])
    assert {name: len(e) for name, e in lstm.validation_errors.items()} == {"lstm": 14, "auto_ets": 14, "seasonal_naive": 14}
    inverse = {name: 1 / np.mean(e**2) for name, e in lstm.validation_errors.items()}
    assert lstm.weights == pytest.approx({name: v / sum(inverse.values()) for name, v in inverse.items()})
    # The intervals are calibrated on all 28 validation days: with the last 14 alone, 95% would need rank 15 of 14.
    assert len(lstm.calibration) == 28 and all(np.isfinite(w) for w in lstm.half_widths().values())


def test_rolling_weights_weigh_each_day_after_the_fit_on_the_errors_of_the_days_before_it(tmp_path):
    history = weekly(120)
    lstm = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"rolling_weights": True})).fit(history.iloc[:110])
    rows = np.arange(110, 120)
    members = {"lstm": lstm.decode_networks(history, rows)} | {k: p.forecast_rows(history, rows) for k, p in lstm.peers.items()}
    actual = history["travellers"].to_numpy(dtype=float)[rows]
    expected = []
    for day in range(len(rows)):  # the 14 validation days' errors, the oldest giving way to each day since the fit
        errors = {
            name: np.concatenate([lstm.validation_errors[name], actual[:day] - f[:day, 0]])[-14:] for name, f in members.items()
        }
        inverse = {name: 1 / np.mean(e**2) for name, e in errors.items()}
        expected.append(sum(inverse[name] / sum(inverse.values()) * f[day, 0] for name, f in members.items()))
    forecast = lstm.forecast_rows(history, rows)
    np.testing.assert_allclose(forecast[:, 0], expected)
    assert forecast[0, 0] == pytest.approx(combine({k: f[:1] for k, f in members.items()}, lstm.weights)[0, 0])  # the fit's
    # A row's own value and the days after it never change its forecast.
    garbled = history.copy()
    garbled.loc[115:, "travellers"] *= 3
    np.testing.assert_allclose(lstm.forecast_rows(garbled, rows[:6]), forecast[:6])
    # Days ahead of the history are weighted as the day after it: a day fed back is no error to learn from.
    ahead = lstm.predict_days(history.iloc[:115], 3)
    frozen = combination_weights(
        {name: np.concatenate([lstm.validation_errors[name], actual[:5] - f[:5, 0]])[-14:] for name, f in members.items()},
        "inverse_mse",
    )
    assert ahead["forecast"].iloc[0] == pytest.approx(sum(frozen[k] * f[5, 0] for k, f in members.items()))
    # A request that starts near the fit's end (served): a day too early for a member to forecast weighs nothing.
    request = history.iloc[100:].reset_index(drop=True)  # the fit ends at its row 9; members forecast from row 14
    assert (lstm.fit_end_row(request), lstm.first_scored_row(request)) == (10, 14)
    on = np.array([14, 15])
    parts = {"lstm": lstm.decode_networks(request, on)} | {k: p.forecast_rows(request, on) for k, p in lstm.peers.items()}
    weights = combination_weights(
        {
            n: np.concatenate([lstm.validation_errors[n], [request["travellers"].iloc[14] - f[0, 0]]])[-14:]
            for n, f in parts.items()
        },
        "inverse_mse",
    )
    served = lstm.forecast_rows(request, on)
    assert served[0, 0] == pytest.approx(combine({k: f[:1] for k, f in parts.items()}, lstm.weights)[0, 0])
    assert served[1, 0] == pytest.approx(sum(weights[k] * f[1, 0] for k, f in parts.items()))
    folder = lstm.save(tmp_path / "model")
    np.testing.assert_allclose(load_forecaster(folder).forecast_rows(history, rows), forecast)
    # A version saved before the setting existed forecasts as it was backtested: with the fit's weights.
    spec = json.loads((folder / "forecaster.json").read_text())
    del spec["model"]["rolling_weights"]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    old = load_forecaster(folder)
    assert not old.model.rolling_weights
    np.testing.assert_allclose(old.forecast_rows(history, rows), combine(members, lstm.weights))
    fixed = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"rolling_weights": False})).fit(history.iloc[:110])
    assert fixed.weights == lstm.weights  # the same fit: only the days after it are weighted otherwise
    np.testing.assert_allclose(fixed.forecast_rows(history, rows), combine(members, lstm.weights))


def test_a_holiday_is_scaled_as_the_same_holiday_a_year_before_else_as_the_holidays_so_far():
    days = 400
    travellers = np.where(np.arange(days) % 7 >= 5, 500.0, 1000.0)  # day 0 a Monday; weekends half
    day_types = (np.arange(days) % 7 >= 5).astype(int)
    holidays = [(21, 400.0), (28, 800.0), (99, 700.0), (104, 300.0), (132, 200.0), (387, np.nan), (392, 900.0)]
    for day, value in holidays:
        travellers[day], day_types[day] = value, 2
    factors = holiday_factors(travellers, day_types, np.arange(days) % 7, unlike_weekday(day_types))
    # Day 21 (a Monday): no holiday before it. Day 28: a normal Monday is 1000 (day 21, a holiday, is not one of them);
    # no holiday a year before, so the holidays so far (day 21: 0.4). Day 99: the median over days 21 and 28 (on the
    # log scale: sqrt(0.4 * 0.8)). Day 387 (its value unknown): day 21 is 366 days before, day 28 359: day 21's 0.4.
    # Day 392: day 28 is exactly 52 weeks before it (day 21 is 53 weeks, at the drift's edge, but further): 0.8.
    # Day 104, a Sunday: the holidays before it fell on weekdays, none is alike: 1. Day 132, a Sunday: day 104 was
    # 0.6 of a normal Sunday (500).
    expected = np.ones(days)
    expected[[28, 99, 132, 387, 392]] = [0.4, np.sqrt(0.4 * 0.8), 0.6, 0.4, 0.8]
    np.testing.assert_allclose(factors, expected)


def test_the_peers_see_a_holiday_as_a_normal_such_weekday_from_the_days_before_it():
    travellers = np.full(36, 500.0)
    travellers[[0, 7, 14]] = [1000.0, 1100.0, 1200.0]  # Mondays
    day_types = np.zeros(36, dtype=int)
    for day, value in [(3, 50.0), (21, 300.0), (28, 250.0), (35, np.nan)]:
        travellers[day], day_types[day] = value, 2
    expected = travellers.copy()
    # Day 3 (a Thursday): no Thursday before it, kept. Day 21: the Mondays 14, 7, 0 (1200, 1100, 1000): 1100. Day 28:
    # the last four Mondays are 21 (a holiday: not a normal day), 14, 7, 0: 1100 again. Day 35 (its value unknown, a
    # future day): 28 and 21 are holidays, 14 and 7 are not: the median of two, sqrt(1200 * 1100) on the log scale.
    expected[[21, 28, 35]] = [1100.0, 1100.0, np.sqrt(1200.0 * 1100.0)]
    np.testing.assert_allclose(as_normal_days(travellers, day_types, unlike_weekday(day_types)), expected)
    assert travellers[21] == 300.0  # the input is left as it was


def test_a_weekend_day_worked_is_unlike_its_weekday_and_its_peers_forecast_a_workday():
    travellers = np.where(np.arange(36) % 7 >= 5, 500.0, 1000.0)  # day 0 a Monday; weekends half
    travellers[[22, 23, 24]] = [900.0, 1100.0, 1200.0]  # the workdays of the week before the next
    day_types = (np.arange(36) % 7 >= 5).astype(int)
    day_types[[4, 33]] = 2  # holidays (a Friday, a Saturday): not unlike their weekday, whatever their type
    day_types[[34, 35]] = [0, 1]  # a Sunday worked instead of a day off; the Monday after it rested
    np.testing.assert_array_equal(np.flatnonzero(unlike_weekday(day_types)), [34, 35])
    # Day 34: the latest 3 workdays at least a week back (25, 24, 23: 1000, 1200, 1100) against a normal Sunday
    # (27, 20, 13: 500). Day 35 (a rested Monday): the latest 3 weekend days at least a week back (27, 26, 20: 500)
    # against a normal Monday (28, 21, 14: 1000).
    np.testing.assert_allclose(
        unlike_weekday_factors(travellers, day_types, unlike_weekday(day_types)), np.r_[np.ones(34), 2.2, 0.5]
    )
    normal = as_normal_days(travellers, day_types, unlike_weekday(day_types))
    np.testing.assert_allclose(normal[[34, 35]], [500.0, 1000.0])  # the peers see them as a normal such weekday
    travellers[21:28] = np.nan  # the days a factor is measured on unknown: no factor but 1
    np.testing.assert_array_equal(unlike_weekday_factors(travellers, day_types, unlike_weekday(day_types)), np.ones(36))


def test_a_holidays_errors_do_not_weight_the_members():
    errors = {"lstm": np.array([1.0, 50.0, 3.0]), "auto_ets": np.array([2.0, 2.0, 2.0])}
    kept = without_holidays(errors, np.array([False, True, False]))
    np.testing.assert_array_equal(kept["lstm"], [1.0, 3.0])
    np.testing.assert_array_equal(kept["auto_ets"], [2.0, 2.0])
    assert without_holidays(errors, np.ones(3, dtype=bool)) == errors  # nothing else to weight on: every day
    with pytest.raises(ValueError, match="2 holiday flags for errors of 3, 3 days"):
        without_holidays(errors, np.array([False, True]))


def test_the_combined_lstm_scales_the_peers_holidays_and_weights_without_them(tmp_path):
    history = weekly(120)
    for row in (42, 101, 112):  # Mondays: one in the training days, one among the validation days, one after the fit
        history.loc[row, ["travellers", "day_type"]] = [history.loc[row, "travellers"] // 2, 2]
    lstm = make_forecaster("lstm", DATA, COMBINED).fit(history.iloc[:110])
    # The validation days are rows 96..109: row 101 is a holiday, whose errors do not weight the members.
    np.testing.assert_array_equal(np.flatnonzero(lstm.validation_holidays), [5])
    inverse = {name: 1 / np.mean(np.delete(e, 5) ** 2) for name, e in lstm.validation_errors.items()}
    assert lstm.weights == pytest.approx({name: v / sum(inverse.values()) for name, v in inverse.items()})
    rows = np.arange(110, 120)
    factors = factors_of(history, rows)
    assert factors[2] == pytest.approx(0.5, rel=0.05) and np.all(np.delete(factors, 2) == 1)
    peers = {k: p.forecast_rows(history, rows) * factors[:, None] for k, p in lstm.peers.items()}
    members = {"lstm": lstm.decode_networks(history, rows)} | peers
    np.testing.assert_allclose(lstm.forecast_rows(history, rows), combine(members, lstm.weights))
    folder = lstm.save(tmp_path / "model")
    loaded = load_forecaster(folder)
    np.testing.assert_array_equal(loaded.validation_holidays, lstm.validation_holidays)
    np.testing.assert_allclose(loaded.forecast_rows(history, rows), lstm.forecast_rows(history, rows))
    # A version saved before the setting existed forecasts as it was backtested: its peers' holidays unscaled.
    spec = json.loads((folder / "forecaster.json").read_text())
    del spec["model"]["holiday_memory"]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    old = load_forecaster(folder)
    assert not old.model.holiday_memory
    unscaled = {"lstm": members["lstm"]} | {k: p.forecast_rows(history, rows) for k, p in lstm.peers.items()}
    np.testing.assert_allclose(old.forecast_rows(history, rows), combine(unscaled, lstm.weights))
    # Without holiday_memory, a holiday is a day as any other.
    plain = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"holiday_memory": False})).fit(history.iloc[:110])
    assert not plain.validation_holidays.any()
    raw = {"lstm": plain.decode_networks(history, rows)} | {k: p.forecast_rows(history, rows) for k, p in plain.peers.items()}
    np.testing.assert_allclose(plain.forecast_rows(history, rows), combine(raw, plain.weights))


def test_rolling_weights_leave_out_the_holidays_before_each_day():
    history = weekly(120)
    for row in (42, 101, 112):  # a holiday in the training days, among the weighting days, after the fit
        history.loc[row, ["travellers", "day_type"]] = [history.loc[row, "travellers"] // 2, 2]
    lstm = make_forecaster("lstm", DATA, COMBINED.model_copy(update={"rolling_weights": True})).fit(history.iloc[:110])
    rows = np.arange(110, 120)
    factors = factors_of(history, rows)
    members = {"lstm": lstm.decode_networks(history, rows)} | {
        k: p.forecast_rows(history, rows) * factors[:, None] for k, p in lstm.peers.items()
    }
    actual = history["travellers"].to_numpy(dtype=float)[rows]
    actual[2] = np.nan  # row 112, a holiday: its errors weight no later day
    expected = []
    for day in range(len(rows)):  # the 14 days before each, the holidays among them (row 101, row 112) left out
        errors = {
            name: np.concatenate(
                [np.where(lstm.validation_holidays, np.nan, lstm.validation_errors[name]), actual[:day] - f[:day, 0]]
            )[-14:]
            for name, f in members.items()
        }
        inverse = {name: 1 / np.mean(e[np.isfinite(e)] ** 2) for name, e in errors.items()}
        expected.append(sum(inverse[name] / sum(inverse.values()) * f[day, 0] for name, f in members.items()))
    np.testing.assert_allclose(lstm.forecast_rows(history, rows)[:, 0], expected)


def test_with_holidays_as_normal_days_the_peers_forecast_the_week_after_a_holiday_from_a_normal_day(tmp_path):
    history = weekly(130)
    for row in (42, 105, 112):  # Mondays: in the training days, among the validation days, after the fit
        history.loc[row, ["travellers", "day_type"]] = [history.loc[row, "travellers"] // 2, 2]
    model = COMBINED.model_copy(update={"holidays_as_normal_days": True})
    lstm = make_forecaster("lstm", DATA, model).fit(history.iloc[:110])
    seen = history.assign(
        travellers=as_normal_days(
            history["travellers"].to_numpy(dtype=float), history["day_type"].to_numpy(), unlike_weekday(history["day_type"])
        )
    )
    # Row 112: the Mondays before it but row 105, a holiday (rows 98, 91, 84).
    assert seen["travellers"].iloc[112] == pytest.approx(history["travellers"].iloc[[98, 91, 84]].median())
    # Row 119, the Monday a week after the holiday of row 112: seasonal naive forecasts it as that normal Monday.
    rows = np.arange(110, 130)
    naive = lstm.member_forecasts(history, rows, ["seasonal_naive"])["seasonal_naive"]
    assert naive[9, 0] == seen["travellers"].iloc[112]
    assert naive[9, 0] > 1.5 * history["travellers"].iloc[112]
    # Every peer forecasts from that history (and is fitted on the history itself), its holidays then scaled.
    members = {"lstm": lstm.decode_networks(history, rows)} | {
        k: p.forecast_rows(seen, rows) * factors_of(history, rows)[:, None] for k, p in lstm.peers.items()
    }
    np.testing.assert_allclose(lstm.forecast_rows(history, rows), combine(members, lstm.weights))
    # The validation errors too (rows 96..109): each peer fitted on the days before them forecasts from that history.
    before = history.iloc[:96]
    ets = make_forecaster("auto_ets", DATA, model).fit(before).forecast_rows(seen, np.arange(96, 110))[:, 0]
    actual = history["travellers"].to_numpy(dtype=float)[96:110]
    np.testing.assert_allclose(lstm.validation_errors["auto_ets"], actual - ets * factors_of(history, np.arange(96, 110)))
    folder = lstm.save(tmp_path / "model")
    np.testing.assert_allclose(load_forecaster(folder).forecast_rows(history, rows), lstm.forecast_rows(history, rows))
    # A version saved before the setting existed forecasts as it was backtested: from the holidays as they were.
    spec = json.loads((folder / "forecaster.json").read_text())
    del spec["model"]["holidays_as_normal_days"]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    old = load_forecaster(folder)
    assert not old.model.holidays_as_normal_days
    assert old.member_forecasts(history, rows, ["seasonal_naive"])["seasonal_naive"][9, 0] == history["travellers"].iloc[112]


def test_a_worked_sunday_is_forecast_as_a_workday_and_the_sunday_after_it_as_a_sunday(tmp_path):
    history = weekly(140)
    for row in (48, 97, 132):  # Sundays worked instead of a day off: in the training days, the validation days, after
        history.loc[row, ["travellers", "day_type"]] = [history.loc[row - 2, "travellers"], 0]
    model = COMBINED.model_copy(update={"holidays_as_normal_days": True})
    lstm = make_forecaster("lstm", DATA, model).fit(history.iloc[:110])
    np.testing.assert_array_equal(np.flatnonzero(lstm.validation_holidays), [97 - 96])  # its errors weight no member
    rows = np.arange(110, 140)
    travellers, day_types = history["travellers"].to_numpy(dtype=float), history["day_type"].to_numpy()
    seen = history.assign(travellers=as_normal_days(travellers, day_types, unlike_weekday(day_types)))
    scale = factors_of(history, rows) * unlike_weekday_factors(travellers, day_types, unlike_weekday(day_types))[rows]
    assert scale[22] == pytest.approx(1 / 0.55, rel=0.05) and np.all(np.delete(scale, 22) == 1)
    members = {"lstm": lstm.decode_networks(history, rows)} | {
        k: p.forecast_rows(seen, rows) * scale[:, None] for k, p in lstm.peers.items()
    }
    forecast = lstm.forecast_rows(history, rows)[:, 0]
    np.testing.assert_allclose(forecast, combine(members, lstm.weights)[:, 0])
    # The worked Sunday (row 132) is forecast as a workday, the Sunday after it (row 139) as a Sunday, within 10%.
    assert forecast[[22, 29]] == pytest.approx(travellers[[132, 139]], rel=0.1)
    # Without holiday_memory and holidays_as_normal_days the peers forecast both as Sundays are, one was worked.
    plain = COMBINED.model_copy(update={"holiday_memory": False})
    assert (
        make_forecaster("lstm", DATA, plain).fit(history.iloc[:110]).forecast_rows(history, rows)[22, 0] < 0.8 * travellers[132]
    )
    # A version saved before the setting existed (its spec and its encoder without it) forecasts as it did: the
    # worked Sunday compared with Sundays, by the networks' reference and by the peers.
    folder = lstm.save(tmp_path / "model")
    spec = json.loads((folder / "forecaster.json").read_text())
    del spec["model"]["days_unlike_their_weekday"]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    encoder = joblib.load(folder / ENCODER_FILE)
    del vars(encoder)["unlike_weekdays"]
    joblib.dump(encoder, folder / ENCODER_FILE)
    old = load_forecaster(folder)
    assert not (old.model.days_unlike_their_weekday or old.encoder.unlike_weekdays)
    assert old.forecast_rows(history, rows)[22, 0] < 0.8 * travellers[132]
    assert old.decode_networks(history, rows)[22, 0] < 0.7 * lstm.decode_networks(history, rows)[22, 0]


def test_a_day_far_beyond_the_training_residuals_surprises_the_next_lags_days():
    residuals = np.array([np.nan, 0.1, -0.2, 0.0, 1.0, 0.2, 0.1, -1.0, 0.0])
    assert value_range(residuals[:4]) == (-0.2, 0.1)
    # Beyond (-0.2, 0.1) by more than log 2 (0.693): row 4 (1.0 > 0.793) and row 7 (-1.0 < -0.893), not row 5 (0.2).
    assert surprised_rows(residuals, (-0.2, 0.1), 2, np.arange(9)).tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 1]
    assert surprised_rows(residuals, (-0.2, 0.4), 2, np.arange(9)).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert surprised_rows(residuals, (-0.2, 0.1), 3, np.array([8])).tolist() == [1]  # rows 5..7: the window ends before 8
    assert surprised_rows(residuals, (-0.4, 0.1), 1, np.array([8])).tolist() == [0]  # -1.0 < -1.093 does not hold


def test_a_member_held_out_gives_its_weight_to_the_others_in_proportion():
    weights = {"lstm": 0.5, "auto_ets": 0.3, "seasonal_naive": 0.2, "naive": 0.0}
    assert without_members(weights, ["lstm"]) == pytest.approx({"lstm": 0, "auto_ets": 0.6, "seasonal_naive": 0.4, "naive": 0})
    assert without_members(weights, ["lstm", "auto_theta"]) == without_members(weights, ["lstm"])  # not a member: nothing
    assert without_members({"lstm": 1.0, "naive": 0.0}, ["lstm"]) == {"lstm": 1.0, "naive": 0.0}  # none left: unchanged


def test_after_a_surprise_the_held_out_members_weigh_nothing_while_it_is_in_the_networks_window(tmp_path):
    history = weekly(130)
    history.loc[112:114, "travellers"] = (history.loc[112:114, "travellers"] * 1.5).round()  # a busy week: no surprise
    history.loc[115:, "travellers"] *= 20  # a level shift (a change in how travellers are counted) after the fit
    model = COMBINED.model_copy(update={"held_out_after_surprise": ["lstm"]})
    lstm = make_forecaster("lstm", DATA, model).fit(history.iloc[:110])
    # The range of the days the networks trained on: the residuals of every row before the 14 validation days.
    assert lstm.surprise_range == value_range(lstm.encoder.encode(history.iloc[:110]).target[:96])
    assert lstm.surprise_range[1] - lstm.surprise_range[0] < 0.2
    rows = np.arange(110, 130)
    surprised = lstm.surprised(history, rows)
    # Row 115 is the first shifted day (its own forecast is made before it); each later row's 7 lags hold a shifted day
    # whose reference (the median of the same weekdays before it) had not caught up yet.
    assert surprised.tolist() == [False] * 6 + [True] * 14
    members = {"lstm": lstm.decode_networks(history, rows)} | {k: p.forecast_rows(history, rows) for k, p in lstm.peers.items()}
    held_out = without_members(lstm.weights, ["lstm"])
    assert held_out["lstm"] == 0 < lstm.weights["lstm"]
    expected = np.where(surprised[:, None], combine(members, held_out), combine(members, lstm.weights))
    forecast = lstm.forecast_rows(history, rows)
    np.testing.assert_allclose(forecast, expected)
    # A day ahead of the history after the shift: the same rule.
    ahead = lstm.predict_days(history.iloc[:120], 1)["forecast"].iloc[0]
    assert ahead == pytest.approx(forecast[10, 0])
    folder = lstm.save(tmp_path / "model")
    assert load_forecaster(folder).surprise_range == lstm.surprise_range
    np.testing.assert_allclose(load_forecaster(folder).forecast_rows(history, rows), forecast)
    # A version saved before the setting existed forecasts as it was backtested: every day with every member.
    spec = json.loads((folder / "forecaster.json").read_text())
    del spec["model"]["held_out_after_surprise"]
    (folder / "forecaster.json").write_text(json.dumps(spec))
    combination = json.loads((folder / "combination.json").read_text())
    del combination["surprise_range"]
    (folder / "combination.json").write_text(json.dumps(combination))
    old = load_forecaster(folder)
    assert old.model.held_out_after_surprise == [] and old.surprise_range is None
    np.testing.assert_allclose(old.forecast_rows(history, rows), combine(members, lstm.weights))


def test_a_surprised_validation_day_is_calibrated_on_the_combination_its_forecast_would_make():
    history = weekly(120)
    history.loc[100:, "travellers"] *= 20  # a level shift among the 14 validation days (rows 96..109)
    model = COMBINED.model_copy(update={"held_out_after_surprise": ["lstm"]})
    lstm = make_forecaster("lstm", DATA, model).fit(history.iloc[:110])
    rows = np.arange(96, 110)
    surprised = lstm.surprised(history.iloc[:110], rows)
    assert surprised.tolist() == [False] * 5 + [True] * 9  # row 100's own forecast is made before it
    actual = history["travellers"].to_numpy(dtype=float)[rows]
    members = {name: (actual - e)[:, None] for name, e in lstm.validation_errors.items()}
    held_out = without_members(lstm.weights, ["lstm"])
    combined = np.where(surprised[:, None], combine(members, held_out), combine(members, lstm.weights)).ravel()
    np.testing.assert_allclose(lstm.calibration, np.log(actual) - np.log(combined))
    assert not np.allclose(lstm.calibration, np.log(actual) - np.log(combine(members, lstm.weights).ravel()))


def factors_of(history, rows):
    """holiday_factors of `history` on these rows."""
    weekdays = history["date"].dt.day_of_week.to_numpy()
    day_types = history["day_type"].to_numpy()
    return holiday_factors(history["travellers"].to_numpy(dtype=float), day_types, weekdays, unlike_weekday(day_types))[rows]
