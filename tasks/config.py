"""The one typed configuration: built-in presets, a TOML file, then `--set key=value`."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # relative paths in settings are under it, wherever a command runs

DAY_TYPE_CODES = (0, 1, 2)  # workday, weekend, public holiday

# Every forecaster the workflow can fit, register and compare (tasks/forecasters.py).
ForecasterKind = Literal["lstm", "auto_ets", "auto_theta", "auto_arima", "seasonal_naive", "naive"]
CombinationRule = Literal["inverse_mae", "inverse_mse", "equal", "trimmed", "best"]  # tasks/combination.py
PeerKind = Literal["auto_ets", "auto_theta", "auto_arima", "seasonal_naive", "naive"]
MemberName = ForecasterKind  # a combination's members are named by their kind ("lstm": the networks)
GATE_REFERENCE: ForecasterKind = "seasonal_naive"  # always backtested: the champion gate's floor
Activation = Literal["tanh", "relu", "sigmoid", "elu", "gelu", "swish", "linear"]
Loss = Literal["mae", "mse", "huber", "log_cosh"]
Units = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the daily CSV is and what its columns mean."""

    path: Path = Path("data/sample/nyc_subway_covid.csv")
    date_column: str = "date"
    date_format: str = "%Y-%m-%d"
    target_column: str = "riders"
    target_unit: float = Field(
        1,
        gt=0,
        description="Travellers per unit of the target column: 10000 for counts published in 10,000s with decimals "
        "(1085.26 = 10,852,600 travellers). Stored and modelled in travellers; forecasts are written in this unit.",
    )
    case_columns: list[str] = ["cumulative_cases"]
    cumulative_columns: list[str] = ["cumulative_cases"]
    count_columns: list[str] = Field(default=[], description="Further columns that must hold non-negative whole numbers.")
    series_column: str | None = Field(
        None,
        description="Long format: the column naming each row's series (one file, many series); every series is "
        "validated, trained, registered and forecast on its own ([series.<name>] overrides shared settings).",
    )
    series: str | None = Field(None, description="The one series of a long-format file this config reads (set per series).")
    day_type_column: str | None = "day_type"
    day_type_codes: list[int] = list(DAY_TYPE_CODES)
    holiday_country: str = "US"
    holiday_subdivision: str | None = None
    gap_policy: Literal["reject", "interpolate"] = "reject"
    encoding: str = Field(
        "utf-8", description="Text encoding of input files, e.g. gbk for files from Chinese health commissions."
    )
    delimiter: str = Field(",", min_length=1, max_length=1)
    pretrain_paths: list[Path] = Field(
        [],
        description="Other series' daily files in this format (every series of a long-format file, but the one being "
        "fitted) whose windows pretrain the networks that a fit without an earlier fit to start from starts from "
        "(tasks/pretraining.py); [] = none.",
    )
    max_file_bytes: int = Field(
        10_000_000, ge=1, description="Larger input files are refused unread (a daily file is a few KB; 10 MB is ~250,000 days)."
    )

    @field_validator("day_type_column", "holiday_subdivision", "series_column", "series", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        # TOML has no null: an empty string means "none" (derive day types from the calendar).
        return value or None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None

    @property
    def daily_file(self) -> DataConfig:
        """How a landing folder's file is read: one series' days, without a series column (<series>__<any>.csv)."""
        return self.model_copy(update={"series_column": None, "series": None})

    @property
    def required_columns(self) -> list[str]:
        """Every column the file must have, in a stable order without repeats."""
        named = [self.date_column, self.target_column, *self.case_columns, *self.cumulative_columns]
        named += [*self.count_columns, *([self.day_type_column] if self.day_type_column else [])]
        return list(dict.fromkeys(named))


class ModelConfig(_Strict):
    """Which forecaster, its intervals, and the LSTM's encoding, network and training (tasks/encoding.py)."""

    kind: ForecasterKind = Field("lstm", description="The forecaster trained, backtested and registered.")
    interval_levels: list[int] = Field([80, 95], description="Coverage of the prediction intervals, in percent.")
    encoding: Literal["seasonal", "notebook"] = Field(
        "seasonal",
        description="seasonal: residual to a same-weekday reference, known-future day type; notebook: the recipe's scaled levels.",
    )
    reference: Literal["median", "ets"] = Field(
        "median",
        description="seasonal encoding's reference: median of recent same weekdays, or AutoETS's one-step forecast (horizon 1).",
    )
    lags: int = Field(14, ge=1, description="Input days per sample.")
    horizon: int = Field(1, ge=1, description="Output days per sample.")
    validation_days: int = Field(
        28, ge=0, description="Last training days held out for early stopping (and interval calibration); 0 trains on all."
    )
    weighting_days: int = Field(
        14,
        ge=0,
        description="The last N validation days weight the members and do not stop the networks early (they stop "
        "on the validation days before); 0 = the same validation days for both. The intervals see all of them.",
    )
    ensemble: int = Field(
        3, ge=1, description="Networks trained side by side from different initial weights; forecasts are their mean."
    )
    lstm_units: list[Units] = Field([32], min_length=1)
    activation: Activation = "tanh"
    dropout: float = Field(0.0, ge=0, lt=1)
    dense_units: list[Units] = [16]
    dense_activation: Activation | None = "relu"
    dense_dropout: bool = False
    loss: Loss = "mae"
    learning_rate: float = Field(3e-4, gt=0)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(64, ge=0, description="0 trains on the full batch.")
    shuffle: bool = True
    early_stopping_patience: int = Field(20, ge=0, description="0 trains every epoch.")
    warm_start_days: int = Field(
        7,
        ge=0,
        description="A fit's networks start from the weights of an earlier fit of these settings whose days ended at most "
        "N days before (a retrain: the newest registered version; a backtest's refit: the fold before) and stop early "
        "after warm_start_patience epochs without gain; 0 = from random weights every fit.",
    )
    warm_start_patience: int = Field(5, ge=1, description="Early-stopping patience of a warm-started fit.")
    pretrain_min_days: int = Field(
        365,
        ge=1,
        description="A series of data.pretrain_paths joins the pretraining with at least this many days up to the fit's "
        "last day (a year: every season once; a few months after a shock taught the shock, measured).",
    )
    random_seed: int = Field(42, description="Seeds the initial weights and batch order; member i uses random_seed * 1000 + i.")
    combine_with: list[PeerKind] = Field(
        ["auto_ets", "auto_theta", "auto_arima", "seasonal_naive", "naive"],
        description="Peers whose forecasts are combined with the networks' (tasks/combination.py); [] = the networks alone.",
    )
    combination: CombinationRule = Field(
        "inverse_mse",
        description="How the members are weighted from their errors on the validation days (chosen by tasks/selection.py).",
    )
    rolling_weights: bool = Field(
        True,
        description="A forecast of a day after the fit's days is weighted on the members' errors on the last "
        "weighting_days days before it (the fit's own weighting days, then the days since the fit, each forecast by "
        "the fitted members), so a version used beyond its fit follows the members that did best lately (chosen by "
        "tasks/selection.py). Horizon 1 only: a longer horizon keeps the fit's weights.",
    )
    holiday_memory: bool = Field(
        True,
        description="A peer's forecast of a public holiday (day type 2) is scaled by how much the same holiday a year "
        "before differed from a normal such weekday (without a year of history: the holidays so far that fell on a "
        "weekday, or on a weekend, as it does), and a holiday's errors do not weight the members (tasks/combination.py; "
        "chosen on validation windows, benchmarks/README.md).",
    )
    holidays_as_normal_days: bool = Field(
        True,
        description="The peers forecast from a history whose public holidays (day type 2) are replaced by a normal such "
        "weekday (the median of up to 3 of the last 4 same weekdays that were not holidays), so seasonal naive and a "
        "weekly season do not forecast the same weekday a week after a holiday from its low day; the peers are fitted "
        "as before (tasks/combination.py; chosen on validation windows, benchmarks/README.md).",
    )
    days_unlike_their_weekday: bool = Field(
        True,
        description="A day that is not a holiday and not of the type most days of its weekday have (a weekend day "
        "worked instead of a day off: China's make-up workdays) is compared by the networks' seasonal reference with "
        "recent days of its type, not its weekday; with holiday_memory the peers' forecast of it is scaled as recent "
        "days of its type differ from a normal such weekday and its errors weight no member; with "
        "holidays_as_normal_days the peers see it as a normal such weekday (tasks/calendar.py, tasks/combination.py). "
        "A calendar without such days (the US's) forecasts the same either way.",
    )
    held_out_after_surprise: list[MemberName] = Field(
        ["lstm"],
        description='Members ("lstm": the networks; peers of combine_with) given no weight on a day whose networks\' '
        "input window holds a day twice as far from a normal such weekday (log travellers minus the seasonal reference) "
        "as any day the networks were trained on: a level shift or a change in counting that their inputs never showed "
        "(tasks/combination.py; seasonal encoding only; chosen on validation windows, benchmarks/README.md).",
    )
    peer_fits: Literal["beside", "inline"] = Field(
        "beside",
        description="beside: the statsforecast peers of combine_with are fitted in a helper process while the networks "
        "train (the same fits, sooner with a free core; tasks/peer_fits.py); inline: in this process, after them.",
    )

    @field_validator("dense_activation", mode="before")
    @classmethod
    def _empty_is_linear(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _combination_has_validation_days(self) -> ModelConfig:
        if self.combine_with and self.validation_days < 7:  # a week, so every weekday weighs in
            raise ValueError(
                "model.combine_with weights the members on the validation days: set model.validation_days >= 7, "
                "or model.combine_with = [] for the networks alone"
            )
        return self

    @model_validator(mode="after")
    def _weighting_days_leave_stopping_days(self) -> ModelConfig:
        if self.weighting_days and not 7 <= self.weighting_days <= self.validation_days - 7:  # a week of each
            raise ValueError(
                f"model.weighting_days = {self.weighting_days} needs a week of its own and a week of stopping days before it: "
                f"set it between 7 and model.validation_days - 7 ({self.validation_days - 7}), or 0"
            )
        return self

    @model_validator(mode="after")
    def _reference_is_known(self) -> ModelConfig:
        # The seasonal reference of a day uses days at least a week back: all known at the origin.
        if self.encoding == "seasonal" and self.horizon > 7:
            raise ValueError("encoding='seasonal' forecasts at most 7 days per sample (horizon <= 7)")
        # AutoETS's forecast of a day is known one day ahead only.
        if self.ets_reference and self.horizon > 1:
            raise ValueError("model.reference='ets' forecasts one day per sample (horizon = 1)")
        return self

    @property
    def ets_reference(self) -> bool:
        """Whether the networks' reference is AutoETS's forecast (only the seasonal encoding has a reference)."""
        return self.encoding == "seasonal" and self.reference == "ets"

    @field_validator("interval_levels")
    @classmethod
    def _levels_are_percentages(cls, levels: list[int]) -> list[int]:
        if not all(0 < level < 100 for level in levels):
            raise ValueError(f"interval levels are percentages strictly between 0 and 100, got {levels}")
        return sorted(set(levels))


class BacktestConfig(_Strict):
    """Rolling-origin evaluation: every test day is forecast from models fitted on earlier days only."""

    test_days: int = Field(28, ge=1, description="The last days of the history, each forecast as a first target day.")
    refit_every: int = Field(0, ge=0, description="Refit the model every N test days; 0 fits once, before the first test day.")
    window_days: int = Field(0, ge=0, description="Days of history each fit sees (the latest before its origin); 0 = all.")
    first_days_only: int = Field(0, ge=0, description="Use only the first N days of the data (the notebook's window); 0 = all.")
    refit_final: bool = Field(
        True,
        description="Fit the registered model on the whole history after the backtest; false registers the model "
        "fitted before the test days (one fold only), scored as reported.",
    )
    compare: list[ForecasterKind] = Field(
        ["seasonal_naive", "naive", "auto_ets", "auto_theta", "auto_arima"],
        description="Forecasters scored on the same days as model.kind, each logged as a child MLflow run.",
    )
    reuse_fit_days: int = Field(
        7,
        ge=0,
        description="A retrain's backtest forecasts with a registered version of the same settings whose days ended "
        "within the N days before its first test day (and were not revised since) instead of fitting afresh; 0 = always fit.",
    )

    @model_validator(mode="after")
    def _one_fit_to_register(self) -> BacktestConfig:
        if not self.refit_final and self.refit_every:
            raise ValueError("refit_final=false registers the one fit before the test days: it needs refit_every=0")
        return self


class MlflowConfig(_Strict):
    """Where runs and models are stored: a tracking server if given, else SQLite inside store_dir."""

    tracking_uri: str | None = Field(None, description="e.g. http://localhost:5000; the CLI takes MLFLOW_TRACKING_URI")
    store_dir: Path = Path("mlruns")
    experiment: str = "travel-forecast"
    registered_model: str = "travel-forecast"
    ui_url: str = Field("http://127.0.0.1:5000", description="Where the MLflow UI is served, for links in run summaries.")
    request_retries: int = Field(5, ge=0, description="Retries of a tracking-server request that failed to connect or got a 5xx.")
    request_backoff_seconds: int = Field(
        2, ge=0, description="First wait between retries; each next wait doubles (2, 4, 8, 16, 32 s)."
    )

    @field_validator("tracking_uri", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class RetrainConfig(_Strict):
    """Daily retraining: where new files land, the history store, the schedule, the champion rule."""

    incoming_dir: Path = Field(Path("data/incoming"), description="Landing folder; processed/ and rejected/ go inside it.")
    history_url: str | None = Field(None, description="SQLAlchemy URL of the history store, e.g. postgresql+psycopg://...")
    history_path: Path = Field(Path("data/history.db"), description="SQLite history store used when history_url is empty.")
    history_schema: str | None = Field(
        None,
        description="PostgreSQL schema of the history tables in history_url (each series of a long-format file has its own).",
    )
    revision_window_days: int = Field(14, ge=0, description="How far back a file may revise stored days.")
    deployment: str = "daily"
    cron: str = "0 6 * * *"
    timezone: str = "America/New_York"
    outlier_factor: float = Field(
        10,
        ge=0,
        description="A new or revised day over this many times above or below the median of its 28 days before "
        "rejects its file (the sample's extremes, the 2020 lockdown included, are 0.13x and 1.5x); 0 accepts any value.",
    )
    lock_wait_seconds: float = Field(
        3600, ge=0, description="How long a retrain waits for one already running before it gives up."
    )
    max_baseline_ratio: float = Field(
        1.5, gt=0, description="A challenger whose MAE exceeds this multiple of the seasonal-naive MAE never becomes champion."
    )
    max_peer_ratio: float = Field(
        1.0,
        gt=0,
        description="A challenger whose MAE is not below this multiple of the best compared forecaster's MAE "
        "(on the same backtest days) never becomes champion.",
    )
    allow_peer_champion: bool = Field(
        True,
        description="A challenger that loses to a compared forecaster on its backtest days is never promoted; "
        "true registers that forecaster and puts it through the same gate instead.",
    )
    min_unseen_days: int = Field(
        7,
        ge=1,
        description="A challenger replaces the champion only when it beats it on at least this many of its backtest "
        "days that come after the champion's data ended (days neither was fitted on); until then the champion stays.",
    )
    drift_factor: float = Field(
        1.5,
        gt=0,
        description="The champion drifts when its live MAE over the last 28 days exceeds this multiple of its backtest MAE ...",
    )
    drift_coverage_margin: float = Field(
        0.15, ge=0, le=1, description="... and its widest interval covered those days this far below nominal (0.95 - 0.15) ..."
    )
    drift_min_days: int = Field(7, ge=1, description="... over at least this many scored days.")
    replace_drifting_champion: bool = Field(
        True,
        description="A drifting champion is replaced by a challenger that passes the floors (seasonal naive, the best peer), "
        "without waiting for min_unseen_days.",
    )
    forecast_days: int = Field(
        7, ge=0, description="Days the champion forecasts after each retrain, stored to be scored when they arrive."
    )

    @field_validator("history_url", "history_schema", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _schema_in_a_server_store(self) -> RetrainConfig:
        if self.history_schema and not self.history_url:
            raise ValueError("retrain.history_schema names a PostgreSQL schema: it needs retrain.history_url")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'America/New_York' or 'UTC'") from None
        return value

    @field_validator("cron")
    @classmethod
    def _five_cron_fields(cls, value: str) -> str:
        if len(value.split()) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,?#-]+", f) for f in value.split()):
            raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
        return value

    @property
    def store_url(self) -> str:
        """The history store's SQLAlchemy URL."""
        return self.history_url or f"sqlite:///{self.history_path}"


SERIES_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}")  # part of a registered model's name and of folder names
SERIES_NAME_RULE = "letters, digits, _ . - (at most 60, a letter or digit first)"  # SERIES_NAME in words


class ScaleConfig(_Strict):
    """Where the series of a long-format file are trained: one at a time in the run's process, or on Dask."""

    workers: int = Field(0, ge=0, description="Dask worker processes of a LocalCluster started for the run; 0 = none.")
    dask_address: str | None = Field(None, description="A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (over workers).")

    @field_validator("dask_address", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class Settings(_Strict):
    """Everything a run needs, loaded once at the edge and passed down."""

    preset: str = "default"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    backtest: BacktestConfig = BacktestConfig()
    mlflow: MlflowConfig = MlflowConfig()
    retrain: RetrainConfig = RetrainConfig()
    scale: ScaleConfig = ScaleConfig()
    output_dir: Path = Path("outputs")
    series: dict[str, dict[str, Any]] = Field(
        {}, description="Per-series settings of a long-format file, e.g. [series.lirr.data] target_unit = 1000."
    )

    @field_validator("series")
    @classmethod
    def _series_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if bad := [name for name in value if not SERIES_NAME.fullmatch(name)]:
            raise ValueError(f"series names are {SERIES_NAME_RULE}, got {bad}")
        return value

    @model_validator(mode="after")
    def _series_overrides_valid(self) -> Settings:
        for name in self.series:  # a bad per-series setting is reported at load, as any other
            try:
                self.for_series(name)
            except ConfigError as error:
                raise ValueError(f"[series.{name}] {re.sub(r'^invalid settings? ', '', str(error))}") from None
        return self

    @property
    def many_series(self) -> bool:
        """Whether runs fan out over the series of a long-format file (no one series chosen)."""
        return bool(self.data.series_column) and self.data.series is None

    def for_series(self, name: str) -> Settings:
        """One series' settings: the shared ones, its [series.<name>] overrides, its own registered model
        (`<registered_model>-<name>`), history store (SQLite: `series/<name>/` beside the shared one's file;
        PostgreSQL: the schema `series_<name>` of history_url's database) and landing folder (`<name>/` in the
        shared one)."""
        store, own = self.retrain.history_path, self.series.get(name, {})
        identity = {
            "data": {"series": name},
            "mlflow": {"registered_model": f"{self.mlflow.registered_model}-{name}"},
            "retrain": {
                "history_path": store.parent / "series" / name / store.name,
                "history_schema": f"series_{name}" if self.retrain.history_url else None,
                "incoming_dir": self.retrain.incoming_dir / name,
            },
        }
        return validated(merge(merge(self.model_dump(exclude={"series"}), own), identity))

    @model_validator(mode="before")
    @classmethod
    def _store_per_registered_model(cls, values: Any) -> Any:
        # One registered model, one history and landing folder: a config for another model (another
        # input format, say) that names no store gets its own, never the default's by accident.
        if not isinstance(values, dict):
            return values
        mlflow, default = values.get("mlflow") or {}, MlflowConfig.model_fields["registered_model"].default
        name = mlflow.registered_model if isinstance(mlflow, MlflowConfig) else mlflow.get("registered_model", default)
        retrain = values.get("retrain") or {}
        if name == default or not isinstance(retrain, dict):
            return values
        own = {"history_path": Path("data") / name / "history.db", "incoming_dir": Path("data") / name / "incoming"}
        return values | {"retrain": own | retrain}

    def fit_key(self) -> str:
        """What a fit depends on besides its days (the model and how the data is read), as a short hash: two
        registered versions with the same key are the same forecaster fitted on other days."""
        fit = {"preset": self.preset, "model": self.model.model_dump(mode="json"), "data": self.data.model_dump(mode="json")}
        fit["data"].pop("path")  # a retrain's days come from the history store, whatever file started it
        return hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:16]

    def updated(self, changes: dict[str, Any]) -> Settings:
        """A copy with nested `changes` applied, validated as a loaded config is (ConfigError)."""
        return validated(merge(self.model_dump(), changes))

    def resolved(self, root: Path) -> Settings:
        """Return a copy whose relative paths are absolute under `root`."""
        absolute = lambda p: p if p.is_absolute() else (root / p).resolve()
        retrain = {"incoming_dir": absolute(self.retrain.incoming_dir), "history_path": absolute(self.retrain.history_path)}
        return self.model_copy(
            update={
                "data": self.data.model_copy(
                    update={"path": absolute(self.data.path), "pretrain_paths": [absolute(p) for p in self.data.pretrain_paths]}
                ),
                "mlflow": self.mlflow.model_copy(update={"store_dir": absolute(self.mlflow.store_dir)}),
                "retrain": self.retrain.model_copy(update=retrain),
                "output_dir": absolute(self.output_dir),
            }
        )


# The notebook recipe, kept reproducible: 5 lags of [travellers, cumulative confirmed, day
# type] MinMax-scaled, LSTM 256 relu x2 with dropout, Dense 16 -> Dense 1, mae, Adam, 200
# full-batch epochs, the last 31 days as test, fitted once before them. One difference,
# on purpose: the scaler is fitted on the training rows, not on all rows.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "seed": {
        "model": {
            "encoding": "notebook",
            "lags": 5,
            "horizon": 1,
            "validation_days": 0,
            "weighting_days": 0,
            "ensemble": 1,
            "lstm_units": [256, 256],
            "activation": "relu",
            "dropout": 0.2,
            "dense_units": [16],
            "dense_activation": None,  # linear, as the recipe
            "dense_dropout": True,
            "loss": "mae",
            "learning_rate": 1e-3,
            "epochs": 200,
            "batch_size": 0,
            "shuffle": False,
            "early_stopping_patience": 0,
            "warm_start_days": 0,  # every fit from its seed's weights
            "combine_with": [],  # the recipe's network alone
        },
        # One fit, before the test days; scored beside the two baselines, as the notebook's comparison
        # (the statsforecast peers would add ~6 s to a run whose overhead target is 10%).
        "backtest": {"test_days": 31, "refit_every": 0, "refit_final": False, "compare": ["seasonal_naive", "naive"]},
    },
}


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b=value` into (["a", "b"], value), reading the value as TOML when it parses."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nest(path: list[str], value: Any) -> dict[str, Any]:
    """Turn (["a", "b"], v) into {"a": {"b": v}}."""
    for key in reversed(path):
        value = {key: value}
    return value


def validated(values: dict[str, Any]) -> Settings:
    """Settings from nested values; ConfigError naming every bad key on one line."""
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for e in error.errors():
            message = e["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(e["input"], dict) or repr(e["input"]) in message else f" (got {e['input']!r})"
            problems.append(f"{'.'.join(str(part) for part in e['loc']) or 'settings'}: {message}{shown}")
        raise ConfigError(f"invalid setting{'s' if len(problems) > 1 else ''} {'; '.join(problems)}") from None


def build_settings(file_values: dict[str, Any], overrides: list[str], updates: dict[str, Any] | None = None) -> Settings:
    """Layer preset < file < `--set` overrides < explicit updates (CLI options) and validate."""
    layered = merge(file_values, {})
    for text in overrides:
        try:
            layered = merge(layered, nest(*parse_override(text)))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    layered = merge(layered, updates or {})
    preset = layered.get("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return validated(merge(PRESETS[preset], layered))


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML config file's values; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def load_settings(
    config_file: Path | None = None,
    overrides: list[str] = (),
    updates: dict[str, Any] | None = None,
    root: Path | None = None,
) -> Settings:
    """Read the TOML file (if any), apply overrides, resolve relative paths under `root` (default: the project folder)."""
    file_values = read_config_file(config_file) if config_file else {}
    return build_settings(file_values, list(overrides), updates).resolved(root or PROJECT_ROOT)
