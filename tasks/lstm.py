"""The LSTM forecaster: an encoding (tasks/encoding.py) fitted on the training rows, an ensemble of
Keras networks (tasks/network.py) trained on its framed samples (tasks/framing.py), and by
default combined with the statistical peers, weighted on the validation days (tasks/combination.py).

The one way the LSTM is fitted and the one way it forecasts: the backtest's folds, the final
model, the registered MLflow model and `predict` all call `fit` and `forecast_rows` here.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from schemas.daily import DATE, DAY_TYPE, TARGET
from tasks.calendar import HOLIDAY, unlike_weekday
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
from tasks.config import DataConfig, ModelConfig
from tasks.evaluation import SEASON
from tasks.forecasters import (
    CALIBRATION_DAYS,
    Forecaster,
    StatsForecaster,
    keep_fitted,
    load_forecaster,
    make_forecaster,
    series_key,
)
from tasks.framing import Samples, complete, frame_windows, select, target_days
from tasks.intervals import log_residuals

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tasks.encoding import FeatureEncoder
    from tasks.network import EpochReport
    from tasks.peer_fits import PeerFit

ENCODER_FILE, KERAS_FILE, WEIGHTS_FILE, PEERS_DIR = "encoder.joblib", "model.keras", "combination.json", "peers"
NETWORKS = "lstm"  # the networks' name among the combination's members


def days_before(samples: Samples) -> int:
    """How many rows come before the samples' first target: the days the peers forecasting them are fitted on."""
    return int(samples.target_rows.min())


def held_out_ends(model: ModelConfig, days: int) -> list[int]:
    """For a fit on `days` days, how many days the peers forecasting its held-out parts are fitted on: the days
    before its weighting days and before its stopping days (`days_before` of each part), or before its
    in-sample calibration days without validation days."""
    if not model.validation_days:
        return [days - CALIBRATION_DAYS]
    return sorted({days - model.validation_days, days - (model.weighting_days or model.validation_days)})


def every_day_peer_fits(model: ModelConfig, history: pd.DataFrame) -> list[PeerFit]:
    """The statsforecast fits on every day of `history` that a fit on it asks for (the last of
    `LstmForecaster.peer_fits`): no registered version lends these (none was fitted on these days)."""
    if model.kind != "lstm" or model.peer_fits == "inline":
        return []
    return [(StatsForecaster.MODELS[kind], series_key(history)) for kind in model.combine_with if kind in StatsForecaster.MODELS]


class LstmForecaster(Forecaster):
    """Encoder + network ensemble; forecasts in travellers.

    Without validation days (the notebook recipe) the last training days calibrate the
    intervals: their residuals are in-sample, so those intervals are optimistic.

    With `combine_with` peers, each peer is fitted on the rows before the weighting days (the
    last `weighting_days` validation days, or all of them with 0) and forecasts them; the
    members' errors there give the weights; the peers are then refitted on every row. The
    networks never learn from the validation days either (they only stop early on them; with
    `weighting_days`, only on the ones before), so every member is weighted on days it was not
    fitted on, and with `weighting_days` not stopped on either (split_validation).
    """

    kind = "lstm"

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        super().__init__(data, model, report)
        self.encoder: FeatureEncoder | None = None
        self.network = None
        self.peers: dict[str, Forecaster] = {}  # refitted on every training row
        self.weights: dict[str, float] = {NETWORKS: 1.0}  # member -> weight, summing to 1
        self.validation_errors: dict[str, np.ndarray] = {}  # member -> actual - forecast on the validation days
        # which of those errors are a holiday's or a day's unlike its weekday (holiday_memory; holidays_among)
        self.validation_holidays = np.zeros(0, dtype=bool)
        self.start = None  # an earlier fit's networks the next fit starts from (warm_from)
        self.surprise_range: tuple[float, float] | None = None  # the training days' residuals (seasonal encoding)

    @property
    def min_history_days(self) -> int:
        warm_up = SEASON if self.model.encoding == "seasonal" else 0  # the reference needs a week behind it
        peers = [self.peer(kind).min_history_days for kind in self.model.combine_with]
        return max([warm_up + self.model.lags, *peers])

    @property
    def context_days(self) -> int | None:
        # A statistical peer's or the ETS reference's state (level, season) is filtered through the whole history.
        return None if self.peers or self.model.ets_reference else super().context_days

    @property
    def min_fit_days(self) -> int:
        """Enough days for `lags` training samples beside the validation days."""
        return self.min_history_days + self.model.lags + self.horizon + self.model.validation_days

    @property
    def epochs_run(self) -> int:
        return len(self.losses.get("loss", []))

    def describe(self) -> str:
        m = self.model
        combined = f", combined with {'/'.join(m.combine_with)} ({m.combination})" if m.combine_with else ""
        reference = ", reference=ets" if m.ets_reference else ""
        return f"lstm (encoding={m.encoding}{reference}, lags={m.lags}, horizon={m.horizon}, validation_days={m.validation_days}{combined})"

    def fit_metrics(self) -> dict[str, float]:
        """Each member's combination weight and validation MAE (and with data.pretrain_paths, the series pretrained on)."""
        weights = {f"combination_weight_{name}": w for name, w in self.weights.items()}
        pretrained = {} if self.pretrained_on is None else {"pretrained_series": float(len(self.pretrained_on))}
        return weights | {f"validation_mae_{name}": e for name, e in self.validation_mae.items()} | pretrained

    @property
    def validation_mae(self) -> dict[str, float]:
        return {name: float(np.mean(np.abs(e))) for name, e in self.validation_errors.items()}

    def peer(self, kind: str) -> Forecaster:
        """An unfitted peer with this forecaster's data format and horizon."""
        return make_forecaster(kind, self.data, self.model)

    def warm_from(self, earlier: Forecaster | None) -> LstmForecaster:
        self.start = earlier.network if isinstance(earlier, LstmForecaster) else None
        return self

    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        from tasks.network import fit_network, raise_if_diverged
        from tasks.peer_fits import peers_fitted_beside

        train, validation = self.fit_encoding(history)
        self.surprise_range = self.training_surprise_range(history)
        stopping, weighing = self.split_validation(validation, len(history))
        held_out = weighing if len(weighing) else select(train, np.arange(len(train)) >= len(train) - CALIBRATION_DAYS)
        forecast_parts = [held_out, stopping] if self.model.weighting_days else [held_out]
        with peers_fitted_beside(self.peer_fits(history, forecast_parts)):
            if self.start is None and self.data.pretrain_paths:  # the helper fits the peers meanwhile
                self.start = self.pretrained_start(history)
            self.network, self.losses = fit_network(self.model, train, stopping, self.report, self.start)
        self.start = None  # its weights are in this fit now
        raise_if_diverged(self.losses)
        actual, forecasts = self.held_out_forecasts(history, held_out)
        self.validation_errors = {name: (actual - f).ravel() for name, f in forecasts.items()}
        self.validation_holidays = self.holidays_among(history, held_out.target_rows).ravel()
        self.weights = combination_weights(
            without_holidays(self.validation_errors, self.validation_holidays), self.model.combination
        )
        residuals = self.calibration_residuals(history, held_out, actual, forecasts)
        if self.model.weighting_days:  # the intervals still see every validation day: 14 residuals leave 95% unbounded
            actual, forecasts = self.held_out_forecasts(history, stopping)
            residuals = np.concatenate([self.calibration_residuals(history, stopping, actual, forecasts), residuals])
        self.peers = {kind: self.peer(kind).fit(history) for kind in self.model.combine_with}
        return residuals

    def calibration_residuals(
        self, history: pd.DataFrame, samples: Samples, actual: np.ndarray, forecasts: dict[str, np.ndarray]
    ) -> np.ndarray:
        """log(actual / forecast) of these validation samples, combined as a forecast of them would be: the fit's
        weights, without model.held_out_after_surprise on a row after a surprise."""
        rows = samples.target_rows
        return log_residuals(actual, self.combine_rows(forecasts, [self.weights] * len(rows), self.surprised(history, rows)))

    def pretrained_start(self, history: pd.DataFrame):
        """Networks pretrained on the series of `data.pretrain_paths` with enough days up to `history`'s last day
        (tasks/pretraining.py), or None when none has."""
        from tasks.pretraining import pretrained_networks, pretraining_pool, read_pretraining_series

        enough = max(self.model.pretrain_min_days, self.min_fit_days)  # a series shorter than a fit gives no sample
        pool = pretraining_pool(read_pretraining_series(self.data), history[DATE].iloc[-1], enough)
        self.pretrained_on = list(pool)
        return pretrained_networks(self.data, self.model, pool) if pool else None

    def keep_peer_fits(self, history: pd.DataFrame) -> int:
        """Offer the peers' fits to this process's kept fits (tasks/forecasters.fitted_statsforecast) as fits on
        `history`, which must be the days this forecaster was fitted on, as they were: a retrain's backtest that
        reuses this fit then scores its compared peers without fitting them again. Returns how many were offered."""
        if history[DATE].iloc[-1] != self.fitted_through:
            raise ValueError(f"fitted through {self.fitted_through.date()}, offered {history[DATE].iloc[-1].date()}")
        fits = {peer.MODELS[kind]: peer.fitted for kind, peer in self.peers.items() if isinstance(peer, StatsForecaster)}
        key = series_key(history)
        for name, fitted in fits.items():
            keep_fitted(name, key, fitted)
        return len(fits)

    def fit_encoding(self, history: pd.DataFrame) -> tuple[Samples, Samples]:
        """Fit the encoder on `history`; return the networks' training and validation samples."""
        from tasks.encoding import fit_encoder

        data = self.data
        self.encoder = fit_encoder(
            self.model.encoding,
            history,
            data.case_columns,
            data.cumulative_columns,
            data.day_type_codes,
            self.model.reference,
            len(history) - self.model.validation_days,  # the reference never fitted on the validation days
            self.model.days_unlike_their_weekday,
        )
        return self.training_samples(history)

    def training_surprise_range(self, history: pd.DataFrame) -> tuple[float, float] | None:
        """The range of the residuals (log travellers minus the reference) of the days the networks train on (before
        the validation days); None with the notebook encoding, which has none."""
        if self.model.encoding != "seasonal":
            return None
        return value_range(self.encoder.encode(history).target[: len(history) - self.model.validation_days])

    def surprised(self, history: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Per row: whether its forecast leaves out the members of model.held_out_after_surprise, the networks' input
        window holding a day far beyond the training days' residuals (tasks/combination.surprised_rows)."""
        if not (self.model.held_out_after_surprise and self.surprise_range):
            return np.zeros(len(rows), dtype=bool)
        return surprised_rows(self.encoder.encode(history).target, self.surprise_range, self.model.lags, rows)

    def combine_rows(
        self, forecasts: dict[str, np.ndarray], weights: list[dict[str, float]], surprised: np.ndarray
    ) -> np.ndarray:
        """Row i of the members' forecasts combined with weights[i], without model.held_out_after_surprise where
        surprised[i]."""
        out = np.empty((len(weights), self.horizon))
        for i, w in enumerate(weights):
            used = without_members(w, self.model.held_out_after_surprise) if surprised[i] else w
            out[i] = combine({name: f[i] for name, f in forecasts.items() if name in used}, used)
        return out

    def held_out_forecasts(self, history: pd.DataFrame, samples: Samples) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """These samples' actual values and each member's forecast of them, every peer fitted on the days before them."""
        actual = self.encoder.decode(samples.y, samples.reference)
        before = history.iloc[: days_before(samples)]
        seen = self.peer_input(history)
        peers = {kind: self.peer(kind).fit(before).forecast_rows(seen, samples.target_rows) for kind in self.model.combine_with}
        return actual, {NETWORKS: self.decode(samples)} | self.remember_holidays(history, samples.target_rows, peers)

    def peer_fits(self, history: pd.DataFrame, forecast_parts: list[Samples]) -> list[PeerFit]:
        """The statsforecast fits `_fit` will ask for: each peer on the days before each part it forecasts,
        then on every day (every_day_peer_fits); none with `peer_fits = "inline"`."""
        if self.model.peer_fits == "inline":
            return []
        ends = [days_before(part) for part in forecast_parts]
        kinds = [kind for kind in self.model.combine_with if kind in StatsForecaster.MODELS]
        held_out = [
            (StatsForecaster.MODELS[kind], series_key(history, end))
            for kind in kinds
            for end in ends
            if end >= self.peer(kind).min_fit_days
        ]
        return held_out + every_day_peer_fits(self.model, history)

    def training_samples(self, history: pd.DataFrame) -> tuple[Samples, Samples]:
        """Every complete sample, split by date: validation = first target in the last `validation_days` days,
        train = all targets before them."""
        samples = frame_windows(self.encoder.encode(history), self.model.lags, self.horizon)
        samples = select(samples, complete(samples))
        first_validation_row = len(history) - self.model.validation_days
        last_target = samples.target_rows + self.horizon - 1
        return select(samples, last_target < first_validation_row), select(samples, samples.target_rows >= first_validation_row)

    def split_validation(self, validation: Samples, history_days: int) -> tuple[Samples, Samples]:
        """The validation samples that stop the networks early and those that weight the members.

        Early stopping keeps the epoch that did best on its days, so on those days the networks look
        better than they will on new ones; with `weighting_days`, the weights come from later days
        that neither fitted nor stopped any member. The intervals are calibrated on both parts (each
        peer fitted before the part it forecasts), so a 95% interval has enough residuals to be finite.
        """
        if not self.model.weighting_days:
            return validation, validation
        first_weighing_row = history_days - self.model.weighting_days
        last_target = validation.target_rows + self.horizon - 1
        return select(validation, last_target < first_weighing_row), select(
            validation, validation.target_rows >= first_weighing_row
        )

    def decode(self, samples: Samples) -> np.ndarray:
        """The members' mean forecast for these samples, in travellers."""
        from tasks.network import predict_outputs

        return self.encoder.decode(predict_outputs(self.network, samples, self.horizon), samples.reference)

    def decode_networks(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """The networks' forecast alone; each sample's window ends the day before its first target."""
        return self.decode(frame_windows(self.encoder.encode(history), self.model.lags, self.horizon, first_targets))

    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """The members' weighted forecast: a row's own value never feeds its forecast. With `model.rolling_weights`,
        a row after the fit's days is weighted on the members' errors on the days before it (rolling_weights); a
        row after a surprise (surprised), without the members of `model.held_out_after_surprise`."""
        rows = np.asarray(first_targets, dtype=int)
        surprised = self.surprised(history, rows)
        fit_end = self.fit_end_row(history)
        if not (self.rolls and len(rows) and rows.max() > fit_end):
            forecasts = self.member_forecasts(history, rows, [k for k, w in self.weights.items() if w > 0])
            return self.combine_rows(forecasts, [self.weights] * len(rows), surprised)
        first = self.first_scored_row(history)
        scored = np.arange(first, rows.max())  # the days after the fit that weight a later row
        wanted = np.union1d(rows, scored)  # each member forecasts each row once (a backtest's: the same rows)
        forecasts = self.member_forecasts(history, wanted, self.validation_errors)
        later = self.errors_on(history, scored, {name: f[np.searchsorted(wanted, scored)] for name, f in forecasts.items()})
        at = np.searchsorted(wanted, rows)
        weights = [self.rolling_weights(later, row - first) for row in rows]
        return self.combine_rows({name: f[at] for name, f in forecasts.items()}, weights, surprised)

    @property
    def rolls(self) -> bool:
        """Whether days after the fit are weighted on the errors before them: the setting, members to weigh, and
        one-step forecasts (a day's error is known the day after; a longer horizon keeps the fit's weights)."""
        return self.model.rolling_weights and len(self.validation_errors) > 1 and self.horizon == 1

    def predict_days(self, history: pd.DataFrame, days: int) -> pd.DataFrame:
        """As Forecaster.predict_days; with `model.rolling_weights`, every day ahead is weighted as the day after the
        history (a day fed back is a forecast, not an error to learn from)."""
        if not self.rolls:
            return super().predict_days(history, days)
        self.require_history(history)  # too short says so with its numbers, before any member forecasts from it
        frozen = copy.copy(self)
        frozen.weights = self.rolling_weights(
            self.errors_after_fit(history, len(history)), len(history) - self.first_scored_row(history)
        )
        frozen.model = self.model.model_copy(update={"rolling_weights": False})
        return Forecaster.predict_days(frozen, history, days)

    def member_forecasts(self, history: pd.DataFrame, rows: np.ndarray, members: Iterable[str]) -> dict[str, np.ndarray]:
        """The networks' and each peer's forecast [len(rows), horizon] of these rows, for the members listed
        (a peer without weight need not forecast); the networks always."""
        seen = self.peer_input(history)
        peers = {kind: peer.forecast_rows(seen, rows) for kind, peer in self.peers.items() if kind in members}
        return {NETWORKS: self.decode_networks(history, rows)} | self.remember_holidays(history, rows, peers)

    def peer_input(self, history: pd.DataFrame) -> pd.DataFrame:
        """The history the peers forecast from: with model.holidays_as_normal_days, its holidays as normal days
        (tasks/combination.as_normal_days); the peers are fitted on the history itself (their fits are shared with
        the backtest's compared peers)."""
        if not self.model.holidays_as_normal_days:
            return history
        day_types = history[DAY_TYPE].to_numpy()
        travellers = as_normal_days(history[TARGET].to_numpy(dtype=float), day_types, self.unlike_weekday(day_types))
        return history.assign(**{TARGET: travellers})

    def unlike_weekday(self, day_types: np.ndarray) -> np.ndarray:
        """Per day: whether it is unlike its weekday (tasks/calendar.unlike_weekday; none without
        model.days_unlike_their_weekday)."""
        if not self.model.days_unlike_their_weekday:
            return np.zeros(len(day_types), dtype=bool)
        return unlike_weekday(day_types)

    def holidays_among(self, history: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """[len(rows), horizon]: which days forecast are public holidays or days unlike their weekday (a worked
        Sunday, with model.days_unlike_their_weekday), whose errors do not weight the members (all False without
        model.holiday_memory)."""
        if not self.model.holiday_memory:
            return np.zeros((len(rows), self.horizon), dtype=bool)
        day_types = history[DAY_TYPE].to_numpy()
        return ((day_types == HOLIDAY) | self.unlike_weekday(day_types))[target_days(rows, self.horizon)]

    def remember_holidays(self, history: pd.DataFrame, rows: np.ndarray, peers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The peers' forecasts with each holiday scaled as the same holiday a year before differed from a normal
        such weekday (tasks/combination.holiday_factors), and each day unlike its weekday as recent days of its type
        differ from a normal such weekday (unlike_weekday_factors); unchanged without model.holiday_memory. The
        networks know the day type and are not scaled."""
        if not (self.model.holiday_memory and peers):
            return peers
        travellers, day_types = history[TARGET].to_numpy(dtype=float), history[DAY_TYPE].to_numpy()
        unlike = self.unlike_weekday(day_types)
        factors = holiday_factors(travellers, day_types, history[DATE].dt.day_of_week.to_numpy(), unlike)
        factors = factors * unlike_weekday_factors(travellers, day_types, unlike)
        scale = factors[target_days(rows, self.horizon)]
        return {kind: f * scale for kind, f in peers.items()}

    def fit_end_row(self, history: pd.DataFrame) -> int:
        """The first row of `history` after the days this forecaster was fitted on."""
        return int(history[DATE].searchsorted(self.fitted_through, side="right"))

    def first_scored_row(self, history: pd.DataFrame) -> int:
        """The first row whose error weights a later one: after the fit's days, with enough history before it for
        every member (a served request may hold only days after the fit)."""
        return max(self.fit_end_row(history), self.min_history_days)

    def errors_after_fit(self, history: pd.DataFrame, end: int) -> dict[str, np.ndarray]:
        """Each member's one-step error (actual - forecast) on the rows after the fit's days (first_scored_row), up
        to row `end`; a holiday's is NaN with model.holiday_memory (it does not weight the members)."""
        rows = np.arange(min(self.first_scored_row(history), end), end)
        if not len(rows):
            return {name: np.empty(0) for name in self.validation_errors}
        return self.errors_on(history, rows, self.member_forecasts(history, rows, self.validation_errors))

    def errors_on(self, history: pd.DataFrame, rows: np.ndarray, forecasts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's one-step error (actual - forecast) on these rows, from its forecasts of them; NaN on a
        holiday whose errors do not weight the members (holidays_among)."""
        actual = np.where(self.holidays_among(history, rows)[:, 0], np.nan, history[TARGET].to_numpy(dtype=float)[rows])
        return {name: actual - f[:, 0] for name, f in forecasts.items()}

    def rolling_weights(self, later: dict[str, np.ndarray], days_after: int) -> dict[str, float]:
        """The weights of a day `days_after` days after the first scored row: from each member's errors on the last
        weighting days before it, the fit's own weighting days (validation_errors) followed by the days scored
        since (`later`, from first_scored_row on); a day with none scored before it has the fit's weights."""
        if days_after <= 0:
            return self.weights
        window = len(next(iter(self.validation_errors.values())))
        errors = {
            name: np.concatenate([np.where(self.validation_holidays, np.nan, e), later[name][:days_after]])[-window:]
            for name, e in self.validation_errors.items()
        }
        return combination_weights({name: e[np.isfinite(e)] for name, e in errors.items()}, self.model.combination)

    def _save(self, directory: Path) -> None:
        import joblib

        self.network.save(directory / KERAS_FILE)
        joblib.dump(self.encoder, directory / ENCODER_FILE)
        (directory / WEIGHTS_FILE).write_text(
            json.dumps(
                {
                    "weights": self.weights,
                    "validation_errors": {k: e.tolist() for k, e in self.validation_errors.items()},
                    "validation_holidays": self.validation_holidays.tolist(),
                    "surprise_range": self.surprise_range,
                }
            )
        )
        for kind, peer in self.peers.items():
            peer.save(directory / PEERS_DIR / kind)

    def _load(self, directory: Path) -> None:
        import joblib

        from tasks.native_output import import_keras

        keras = import_keras()

        self.encoder = joblib.load(directory / ENCODER_FILE)
        with warnings.catch_warnings():
            # Each member was saved with the optimizer it was compiled with, never stepped (a shared model trained
            # it); loaded uncompiled, that state is not used, and Keras's "Skipping variable loading" is noise.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            self.network = keras.models.load_model(directory / KERAS_FILE, compile=False)
        if not (directory / WEIGHTS_FILE).exists():  # saved before the combination existed: the networks alone
            self.model = self.model.model_copy(update={"combine_with": []})
            return
        combination = json.loads((directory / WEIGHTS_FILE).read_text())
        self.weights = combination["weights"]
        self.validation_errors = {name: np.asarray(e) for name, e in combination["validation_errors"].items()}
        window = len(next(iter(self.validation_errors.values()), []))  # saved before holiday_memory: no holidays
        self.validation_holidays = np.asarray(combination.get("validation_holidays", [False] * window), dtype=bool)
        known = combination.get("surprise_range")  # saved before held_out_after_surprise: never surprised
        self.surprise_range = tuple(known) if known else None
        self.peers = {kind: load_forecaster(directory / PEERS_DIR / kind) for kind in self.model.combine_with}
