"""The LSTM forecaster: its training split, its minimum history, its calibration, its peers fitted beside it."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import counting_history

from tasks.config import DataConfig, ModelConfig
from tasks.encoding import fit_encoder
from tasks.forecasters import fitted_statsforecast, forget_fitted, is_fitted, load_forecaster, make_forecaster, series_key
from tasks.lstm import LstmForecaster, days_before, every_day_peer_fits, held_out_ends
from tasks.peer_fits import peers_fitted_ahead, peers_fitted_beside

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])


_history = counting_history


def _split(config: ModelConfig, history: pd.DataFrame):
    lstm = LstmForecaster(DATA, config)
    lstm.encoder = fit_encoder(config.encoding, history, ["cases"], ["cases"], [0, 1, 2])
    return lstm.training_samples(history)


def test_training_split_is_chronological_and_complete():
    config = ModelConfig(lags=2, horizon=2, validation_days=3, weighting_days=0, combine_with=[])
    train, validation = _split(config, _history(30))
    # The first week has no reference: the first complete window starts at row 7 -> first target 9.
    np.testing.assert_array_equal(validation.target_rows, [27, 28])  # first target in 27..29, both targets present
    np.testing.assert_array_equal(train.target_rows, np.arange(9, 26))  # last target before row 27
    train, _ = _split(config.model_copy(update={"encoding": "notebook"}), _history(30))
    assert train.target_rows[0] == 2


def test_weighting_days_are_the_last_validation_days_and_stop_nothing():
    config = ModelConfig(lags=2, horizon=2, validation_days=16, weighting_days=7, combine_with=[])
    lstm = LstmForecaster(DATA, config)
    _, validation = _split(config, _history(50))
    stopping, weighing = lstm.split_validation(validation, 50)
    # Validation: first targets 34..48; weighting days are rows 43..49, so a stopping sample's last target is before 43.
    np.testing.assert_array_equal(validation.target_rows, np.arange(34, 49))
    np.testing.assert_array_equal(stopping.target_rows, np.arange(34, 42))
    np.testing.assert_array_equal(weighing.target_rows, np.arange(43, 49))
    same = LstmForecaster(DATA, config.model_copy(update={"weighting_days": 0})).split_validation(validation, 50)
    assert all(part is validation for part in same)


@pytest.mark.parametrize(("weighting_days", "ends"), [(7, [34, 43]), (0, [34])])
def test_held_out_ends_are_the_days_before_each_held_out_part(weighting_days, ends):
    # A retrain looks for registered versions fitted on exactly these days, whose peers then stand for those fits.
    config = ModelConfig(lags=2, horizon=2, validation_days=16, weighting_days=weighting_days, combine_with=[])
    _, validation = _split(config, _history(50))
    parts = LstmForecaster(DATA, config).split_validation(validation, 50)
    assert sorted({days_before(part) for part in parts}) == held_out_ends(config, 50) == ends


def test_too_short_history_is_refused_with_the_numbers():
    lstm = LstmForecaster(DATA, ModelConfig(lags=2, validation_days=14, weighting_days=0, combine_with=[]))
    assert (lstm.min_history_days, lstm.min_fit_days) == (7 + 2, 7 + 4 + 1 + 14)
    with pytest.raises(ValueError, match=r"training history has 20 days; lstm \(encoding=seasonal, lags=2.*needs at least 26"):
        lstm.fit(_history(20))


@pytest.mark.parametrize(("validation_days", "weighting_days", "weighted_days"), [(5, 0, 5), (14, 7, 7)])
def test_intervals_are_calibrated_on_every_validation_day_and_the_losses_kept(validation_days, weighting_days, weighted_days):
    # The intervals see every validation day; the weights, the last weighting_days of them (or all with 0).
    config = ModelConfig(
        lags=3,
        validation_days=validation_days,
        weighting_days=weighting_days,
        ensemble=2,
        lstm_units=[4],
        dense_units=[],
        epochs=3,
        early_stopping_patience=0,
        combine_with=[],
    )
    lstm = LstmForecaster(DATA, config).fit(_history(60))
    assert len(lstm.calibration) == validation_days and len(lstm.validation_errors["lstm"]) == weighted_days
    assert lstm.epochs_run == 3 and set(lstm.losses) == {"loss", "val_loss"}


def _weekly_history(days: int) -> pd.DataFrame:
    """counting_history's days with travellers of a weekly shape and noise, so the peers fit something real."""
    history = _history(days)
    weekend = np.arange(days) % 7 >= 5
    noise = np.random.default_rng(7).normal(0, 20, days)
    history["travellers"] = np.round(1000 - 300 * weekend + noise).astype(np.int64)
    return history


PEERS_BESIDE = ModelConfig(
    lags=3,
    validation_days=14,
    weighting_days=7,
    ensemble=1,
    lstm_units=[4],
    dense_units=[],
    epochs=2,
    early_stopping_patience=0,
    combine_with=["auto_ets", "auto_arima", "seasonal_naive"],
)


def test_peers_fitted_beside_the_networks_forecast_exactly_as_peers_fitted_inline(caplog):
    # The helper process runs the same fits (tasks/peer_fits.py): only where they run differs.
    history = _weekly_history(80)
    fitted = {}
    for where in ("beside", "inline"):
        forget_fitted()  # each way fits its own peers
        with caplog.at_level(logging.INFO, logger="tasks.peer_fits"):
            lstm = LstmForecaster(DATA, PEERS_BESIDE.model_copy(update={"peer_fits": where})).fit(history.iloc[:-7])
        fitted[where] = (lstm.predict(history, history["date"].iloc[-7:]), lstm.weights)
    # Two statsforecast peers, each before the weighting days, before the stopping days and on every day; inline: none.
    assert caplog.text.count("fitted 6 statistical peer model(s) in a helper process") == 1
    pd.testing.assert_frame_equal(fitted["beside"][0], fitted["inline"][0], check_exact=True)
    assert fitted["beside"][1] == fitted["inline"][1]


def test_a_fit_collects_its_peers_fitted_ahead_and_forecasts_exactly_as_inline(caplog):
    # A daily retrain starts the final fit's peers on every day before its backtest (tasks/retrain_tasks.py).
    history = _weekly_history(80).iloc[:-7]
    forget_fitted()
    inline = LstmForecaster(DATA, PEERS_BESIDE.model_copy(update={"peer_fits": "inline"})).fit(history)
    forget_fitted()
    ahead = every_day_peer_fits(PEERS_BESIDE, history)
    assert ahead == [("AutoETS", series_key(history)), ("AutoARIMA", series_key(history))]  # seasonal naive fits nothing
    with caplog.at_level(logging.INFO, logger="tasks.peer_fits"), peers_fitted_ahead(ahead):
        assert len(_peer_helpers()) == 1
        lstm = LstmForecaster(DATA, PEERS_BESIDE).fit(history)
    assert len(_peer_helpers()) == 1  # both answered: one is kept, idle, for this process's next fit
    # The fit's own helper fits only the peers before its two held-out parts; the two on every day came from ahead.
    assert "fitted 4 statistical peer model(s) in a helper process beside the networks" in caplog.text
    assert "fitted 2 statistical peer model(s) in a helper process started ahead of the fit" in caplog.text
    pd.testing.assert_frame_equal(
        lstm.predict(history, history["date"].iloc[-7:]), inline.predict(history, history["date"].iloc[-7:]), check_exact=True
    )
    assert every_day_peer_fits(PEERS_BESIDE.model_copy(update={"peer_fits": "inline"}), history) == []


def test_peers_fitted_ahead_that_no_fit_collects_end_with_their_block():
    forget_fitted()
    history = _weekly_history(700)
    with peers_fitted_ahead(every_day_peer_fits(PEERS_BESIDE, history)):  # a retrain stopped before its fit
        assert len(_peer_helpers()) == 1
    assert _peer_helpers() == [] and not is_fitted("AutoARIMA", series_key(history))


def test_a_helper_that_answered_fits_the_next_fit_too():
    # A run over many series starts one helper, not one per series.
    first, second = _weekly_history(80), _weekly_history(90)
    forget_fitted()
    with peers_fitted_beside(every_day_peer_fits(PEERS_BESIDE, first)):
        pass
    idle = _peer_helpers()
    with peers_fitted_beside(every_day_peer_fits(PEERS_BESIDE, second)):
        assert _peer_helpers() == idle and len(idle) == 1
    assert _peer_helpers() == idle
    assert is_fitted("AutoARIMA", series_key(first)) and is_fitted("AutoARIMA", series_key(second))


@pytest.mark.parametrize("ending", ["exit", "killed"])
def test_the_idle_helper_ends_with_its_process(ending):
    # A process that fitted peers beside and then ends, or is killed (no exit handler runs), leaves no helper.
    program = f"""
import os, signal, sys
sys.path[:0] = [{str(Path(__file__).parents[1])!r}, {str(Path(__file__).parent)!r}]
from test_lstm import PEERS_BESIDE, _peer_helpers, _weekly_history
from tasks.lstm import every_day_peer_fits
from tasks.peer_fits import peers_fitted_beside
with peers_fitted_beside(every_day_peer_fits(PEERS_BESIDE, _weekly_history(80))):
    pass
print(*_peer_helpers(), flush=True)
if {ending!r} == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    helpers = [int(pid) for pid in result.stdout.split()]
    assert len(helpers) == 1, result.stderr[-2000:]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{helpers[0]}").exists() and _state(helpers[0]) != "Z" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{helpers[0]}").exists() or _state(helpers[0]) == "Z"


def _state(pid: int) -> str:
    """A process's state letter (Z: ended, not yet reaped by its parent), or "" once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _peer_helpers() -> list[int]:
    """This process's children that are peer-fitting helpers."""
    mine = str(os.getpid())
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            command = (status.parent / "cmdline").read_bytes()
        except OSError:  # ended while read
            continue
        if fields.get("PPid", "").strip() == mine and b"tasks.peer_fits" in command:
            found.append(int(status.parent.name))
    return found


def test_a_fit_stopped_while_the_networks_train_leaves_no_peer_helper_behind():
    def stop(epoch, logs):
        raise KeyboardInterrupt  # as Ctrl-C mid-fit

    forget_fitted()
    with pytest.raises(KeyboardInterrupt):  # 700 days: the helper is still fitting when the first epoch ends
        LstmForecaster(DATA, PEERS_BESIDE, report=stop).fit(_weekly_history(700))
    assert _peer_helpers() == []


def test_a_helper_that_fails_leaves_the_fits_to_this_process_without_a_traceback(caplog, capfd):
    series = np.arange(30, dtype=float).tobytes()
    with caplog.at_level(logging.WARNING, logger="tasks.peer_fits"), peers_fitted_beside([("NoSuchModel", series)]):
        pass
    assert "the helper process fitted no statistical peers; fitting them here instead" in caplog.text
    assert not is_fitted("NoSuchModel", series) and "Traceback" not in capfd.readouterr().err
    with pytest.raises(AttributeError, match="NoSuchModel"):  # here, the peer's own error
        fitted_statsforecast("NoSuchModel", series)


def test_a_saved_fits_peers_stand_for_fits_on_its_own_days_only(tmp_path):
    # A retrain's backtest reusing a registered LSTM scores its compared peers with the LSTM's own peer fits.
    history = _weekly_history(80)
    forget_fitted()
    lstm = LstmForecaster(DATA, PEERS_BESIDE.model_copy(update={"peer_fits": "inline"})).fit(history)
    compared = make_forecaster("auto_arima", DATA, PEERS_BESIDE).fit(history).predict(history, history["date"].iloc[-7:])
    forget_fitted()
    loaded = load_forecaster(lstm.save(tmp_path / "model"))  # as a registered version is loaded
    with pytest.raises(ValueError, match="fitted through 2021-03-21, offered 2021-03-20"):
        loaded.keep_peer_fits(history.iloc[:-1])
    assert loaded.keep_peer_fits(history) == 2  # AutoETS and AutoARIMA; seasonal naive fits nothing
    assert is_fitted("AutoETS", series_key(history)) and is_fitted("AutoARIMA", series_key(history))
    again = make_forecaster("auto_arima", DATA, PEERS_BESIDE).fit(history).predict(history, history["date"].iloc[-7:])
    pd.testing.assert_frame_equal(again, compared, check_exact=True)
