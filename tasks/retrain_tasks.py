"""Prefect tasks of the retrain flow: new data in, the champion scored, the decision recorded."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.daily import DATE
from tasks.champion import Decision, UnseenDays, decide
from tasks.config import GATE_REFERENCE, PROJECT_ROOT, Settings
from tasks.errors import HistoryTooShort, RunStopped
from tasks.history_store import AdvisoryLock
from tasks.landing import IngestResult, ingest_landing, open_history
from tasks.train_tasks import TrainSummary

if TYPE_CHECKING:  # the model side loads only when a model is trained
    from tasks.forecasters import Forecaster


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's version and its figures on the challenger's unseen days (None if it could not be scored)."""

    version: str
    unseen: UnseenDays | None
    error: str | None = None


@task(cache_policy=NO_CACHE)
def run_date(timezone: str) -> str:
    """Today in the schedule's timezone, computed when the run starts (never frozen at deploy time)."""
    return datetime.now(ZoneInfo(timezone)).strftime("%Y-%m-%d")


@task(cache_policy=NO_CACHE)
def with_run_parameters(settings: Settings | None, epochs: int | None) -> Settings:
    """Settings for this run (the defaults if none): relative paths under the project folder, epochs overridden and checked."""
    settings = (settings or Settings()).resolved(PROJECT_ROOT)
    return settings if epochs is None else settings.updated({"model": {"epochs": epochs}})


RETRAIN_LOCK = "travel-forecast retrain"  # one per history store's database (and schema: a series of a long-format file)


class RetrainBusy(RunStopped):
    """Another retrain held the lock for longer than this run would wait."""


@contextmanager
def exclusive_retrain(settings: Settings) -> Iterator[None]:
    """Hold the retrain lock: runs started together (schedule, event, by hand) go one after another.

    With the history store on PostgreSQL, an advisory lock in its database, so retrains on
    several machines sharing the store wait for each other; otherwise an OS file lock in the
    landing folder. A killed run releases either.
    """
    lock, where = retrain_lock(settings)
    wait = settings.retrain.lock_wait_seconds
    if not lock.acquire(timeout=0):
        get_run_logger().info("another retrain is running (%s): waiting up to %.0f s", where, wait)
        if not lock.acquire(timeout=wait):
            raise RetrainBusy(
                f"another retrain held {where} for over {wait:.0f} s (retrain.lock_wait_seconds); this run changed nothing"
            )
    try:
        yield
    finally:
        lock.release()


class _FileLock:
    """filelock's lock with the advisory lock's acquire(timeout) -> bool."""

    def __init__(self, path: Path):
        from filelock import FileLock

        self.lock = FileLock(path)

    def acquire(self, timeout: float) -> bool:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=timeout)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self.lock.release()


def retrain_lock(settings: Settings) -> tuple[_FileLock | AdvisoryLock, str]:
    """The lock that serialises retrains on this history store, and how to name it in a message."""
    url = sa.make_url(settings.retrain.store_url)
    if url.get_backend_name() == "postgresql":
        schema = settings.retrain.history_schema
        name = f"{RETRAIN_LOCK} {schema}" if schema else RETRAIN_LOCK
        return AdvisoryLock(settings.retrain.store_url, name), f"the advisory lock '{name}' of {url}"
    path = settings.retrain.incoming_dir / ".retrain.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return _FileLock(path), str(path)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def ingest_new_data(settings: Settings, init: bool = False) -> IngestResult:
    """Move the landing folder's files into the history store (started from data.path when `init` and empty)."""
    result = ingest_landing(settings, init)
    logger = get_run_logger()
    for outcome in result.files:
        logger.info("%s: %s (%s)", outcome.name, outcome.outcome, outcome.reason)
    logger.info("%d new day(s), %d revised day(s); history through %s", result.days_added, result.days_revised, result.last_date)
    return result


@task(cache_policy=NO_CACHE)
def mark_trained(settings: Settings, arrived: IngestResult, challenger: TrainSummary) -> None:
    """Record that the history as ingested is trained on, so a failed run's data is not left untrained."""
    from tasks.history_store import record_training

    record_training(open_history(settings)[0], arrived.changes_through, challenger.model_version, challenger.run_id)
    get_run_logger().info(
        "the history's %d change(s) are marked trained on (version %s)", arrived.changes_through, challenger.model_version
    )


@task(cache_policy=NO_CACHE)
def load_history(settings: Settings) -> pd.DataFrame:
    """Every stored day, validated."""
    from tasks.history_store import read_history

    return read_history(open_history(settings)[0])


@task(cache_policy=NO_CACHE)
def find_backtest_fit(settings: Settings, history: pd.DataFrame) -> tuple[Forecaster | None, dict[str, str]]:
    """A registered fit of these settings the backtest can forecast with instead of fitting the model afresh
    (`backtest.reuse_fit_days`, tasks/backtest.reusable_fit), and the run tag that says which (`backtest_fit`).

    A daily retrain's first test day is the one after the days of the version registered `test_days` runs
    ago: its backtest then fits nothing of the model, and, the peers combined into it being fitted on those
    very days, none of the compared peers it combines either; only the final fit on every day is left.
    """
    from tasks.backtest import history_before_test

    config, logger = settings.backtest, get_run_logger()
    fresh = None, {"backtest_fit": "fresh"}
    if not config.reuse_fit_days or config.refit_every or config.window_days or not config.refit_final:
        return fresh  # several folds, windowed fits, or the notebook's one fit registered: always fitted here
    try:
        before_test = history_before_test(history, config, settings.model.horizon)
    except HistoryTooShort:
        return fresh  # the training says how many days it needs (require_enough_history)
    last_train_day = before_test[DATE].iloc[-1]
    first_test_day = last_train_day + pd.Timedelta(days=1)
    forecaster, version, why = load_recent_fit(settings, history, first_test_day, config.reuse_fit_days)
    if forecaster is None:
        (logger.warning if version else logger.info)("the backtest fits %s afresh: %s", settings.model.kind, why)
        return fresh
    logger.info("the backtest forecasts with %s (backtest.reuse_fit_days) instead of fitting %s afresh", why, forecaster.kind)
    on_its_days = forecaster.fitted_through == last_train_day and hasattr(forecaster, "keep_peer_fits")  # its peers stand in too
    if on_its_days and (offered := forecaster.keep_peer_fits(before_test)):
        logger.info("its %d statistical peer fit(s) stand for the compared peers' fits on the same days", offered)
    return forecaster, {"backtest_fit": f"v{version}"}


@task(cache_policy=NO_CACHE)
def find_warm_start(settings: Settings, history: pd.DataFrame) -> tuple[Forecaster | None, dict[str, str]]:
    """The registered fit the model's networks start from (`model.warm_start_days`): the newest version of these
    settings fitted on the stored days as they are, at most `warm_start_days` before the last day the fit sees;
    and the run tag that says which (`warm_start`)."""
    from tasks.backtest import history_before_test

    model, logger = settings.model, get_run_logger()
    cold = None, {"warm_start": "none"}
    if not model.warm_start_days or model.kind != "lstm":  # only networks start from weights
        return cold
    try:  # the days the fit will see: all of them, or the notebook's days before the test days
        rows = history if settings.backtest.refit_final else history_before_test(history, settings.backtest, model.horizon)
    except HistoryTooShort:
        return cold
    day_after = rows[DATE].iloc[-1] + pd.Timedelta(days=1)  # its days ended at most warm_start_days before the last
    forecaster, version, why = load_recent_fit(settings, history, day_after, model.warm_start_days + 1)
    if forecaster is None:
        (logger.warning if version else logger.info)("the networks start from random weights: %s", why)
        return cold
    logger.info("the networks start from the weights of %s (model.warm_start_days)", why)
    return forecaster, {"warm_start": f"v{version}"}


@task(cache_policy=NO_CACHE)
def keep_registered_peer_fits(
    settings: Settings, history: pd.DataFrame, loaded: list[Forecaster | None]
) -> list[Forecaster | None]:
    """Registered versions fitted on exactly the days the model's fit forecasts its held-out days from (with a
    retrain a day: the ones registered `weighting_days` and `validation_days` retrains ago) offer their
    statistical peers as those fits (LstmForecaster.keep_peer_fits), so the fit fits its peers on every day only.
    `loaded`: versions this run already loaded, not loaded again. Returns what it loaded (None: nothing found)."""
    from tasks.lstm import held_out_ends

    model, logger, loaded_here = settings.model, get_run_logger(), []
    if model.kind != "lstm" or not model.combine_with or not settings.backtest.refit_final:
        return loaded_here  # no peers, or the notebook's one fit before the test days
    for end in (end for end in held_out_ends(model, len(history)) if end > 0):  # (too short: the training says so)
        day = history[DATE].iloc[end - 1]
        forecaster = next((f for f in loaded if f is not None and f.fitted_through == day), None)
        if forecaster is None:
            forecaster = load_recent_fit(settings, history, day + pd.Timedelta(days=1), 1)[0]  # fitted through that day
            loaded_here.append(forecaster)
        if forecaster is not None and (offered := forecaster.keep_peer_fits(history.iloc[:end])):
            logger.info("the %d statistical peer fit(s) of the version fitted through %s stand in", offered, day.date())
    return loaded_here


@contextmanager
def final_peers_fitted_ahead(settings: Settings, history: pd.DataFrame) -> Iterator[None]:
    """The final fit's statistical peers on every day, fitted in a helper process from here on, while the run
    loads registered versions and backtests; the fit collects them (tasks/peer_fits.py): the same fits, which
    no longer wait at the end of the networks' training (a daily retrain's networks stop in seconds)."""
    from tasks.lstm import every_day_peer_fits
    from tasks.peer_fits import peers_fitted_ahead

    with peers_fitted_ahead(every_day_peer_fits(settings.model, history) if settings.backtest.refit_final else []):
        yield


def load_recent_fit(
    settings: Settings, history: pd.DataFrame, first_unseen_day: pd.Timestamp, within_days: int
) -> tuple[Forecaster | None, str | None, str]:
    """The newest registered fit of these settings whose days ended within the `within_days` days before
    `first_unseen_day` and are the history's days as they are now (tasks/backtest.reusable_fit), loaded; its
    version; and why (for the log). A version that cannot be loaded (its artifacts lost, say) is None, with why."""
    from tasks.backtest import reusable_fit
    from tasks.registry import Registry, UntrustedModel

    registry = Registry(settings.mlflow)
    fit, why = reusable_fit(registry.registered_fits(settings.fit_key()), history, first_unseen_day, within_days)
    if fit is None:
        return None, None, why
    try:
        return registry.load(registry.version(fit.version)), fit.version, why
    except UntrustedModel:
        raise
    except Exception as error:
        return None, fit.version, f"v{fit.version} could not be loaded: {error}"


@task(cache_policy=NO_CACHE)
def write_ingest_report(result: IngestResult, run_dir: Path) -> Path:
    """What happened to each landing file, beside the run (and logged with it)."""
    path = run_dir / "ingest_report.csv"
    columns = ["name", "outcome", "reason", "days_added", "days_revised"]
    pd.DataFrame([vars(f) for f in result.files], columns=columns).to_csv(path, index=False)
    return path


@task(cache_policy=NO_CACHE)
def score_champion(
    settings: Settings, history: pd.DataFrame, challenger: TrainSummary, loaded: Iterable[Forecaster | None] = ()
) -> ChampionScore | None:
    """Score the current champion, one step ahead, on the challenger's backtest days after the champion's fit ended
    (`loaded`: versions this run already loaded, not loaded again)."""
    from tasks.registry import Registry, UntrustedModel

    registry = Registry(settings.mlflow)
    current = registry.champion()
    if current is None:
        get_run_logger().info("no champion yet")
        return None
    evaluation, version = challenger.evaluation, str(current.version)
    try:
        forecaster = None
        fitted_through = current.tags.get("fitted_through")
        if fitted_through is None:  # versions registered before the tag: their fit knows
            forecaster = registry.load(current, loaded)
            fitted_through = f"{forecaster.fitted_through:%Y-%m-%d}"
        days, maes = evaluation.mae_after(fitted_through)
        champion_mae = math.nan
        if days:
            forecaster = forecaster or registry.load(current, loaded)
            champion_mae = champion_mae_on(forecaster, history, evaluation.days[-days:], evaluation.actual[-days:])
    except UntrustedModel:
        raise
    except Exception as error:  # artifacts lost, another input format: say so; the gate then keeps the champion
        get_run_logger().warning("champion v%s could not be scored: %s", version, error)
        return ChampionScore(version, None, str(error))
    unseen = UnseenDays(version, fitted_through, days, maes[evaluation.kind], champion_mae, maes[GATE_REFERENCE])
    get_run_logger().info(
        "champion v%s (fitted through %s) on the %d backtest day(s) after it: MAE %s, the challenger's %s",
        version,
        fitted_through,
        days,
        f"{champion_mae:,.0f}",
        f"{unseen.challenger_mae:,.0f}",
    )
    return ChampionScore(version, unseen)


def champion_mae_on(forecaster, history: pd.DataFrame, days: tuple[str, ...], actual: tuple[float, ...]) -> float:
    """A fitted forecaster's one-step MAE on the given (last) days of the history."""
    dates = pd.DatetimeIndex(days)
    visible = history[history[DATE] <= dates[-1]]
    forecast = forecaster.predict(visible, pd.Series(dates))
    step_one = forecast.loc[forecast["step"] == 1, "forecast"].to_numpy(dtype=float)
    return float(np.mean(np.abs(np.array(actual) - step_one)))


@task(cache_policy=NO_CACHE)
def decide_champion(
    settings: Settings, challenger: TrainSummary, champion: ChampionScore | None, champion_drift: str | None = None
) -> Decision:
    """Decide, tag both versions with the decision and figures, and move the alias if promoted."""
    from tasks.prefect_api import require_prefect_api
    from tasks.registry import Registry

    require_prefect_api("moving the champion alias")
    evaluation = challenger.evaluation
    decision = decide(
        evaluation.model["mae"],
        evaluation.reference["mae"],
        champion.unseen if champion else None,
        champion.version if champion else None,
        settings.retrain.max_baseline_ratio,
        (evaluation.best_peer, evaluation.metrics[evaluation.best_peer]["mae"]) if evaluation.best_peer else None,
        settings.retrain.max_peer_ratio,
        settings.retrain.min_unseen_days,
        champion_drift if settings.retrain.replace_drifting_champion else None,
    )
    Registry(settings.mlflow).record_decision(
        challenger.model_version, champion.version if champion else None, challenger.run_id, decision, unseen_metrics(champion)
    )
    get_run_logger().info("v%s %s: %s", challenger.model_version, decision.tags()["decision"], decision.reason)
    return decision


def unseen_metrics(champion: ChampionScore | None) -> dict[str, float]:
    """The gate's figures for the challenger's run; NaN without a (scorable) champion, so every retrain run has the
    same metric names in the compare view."""
    unseen = champion.unseen if champion else None
    return {
        "unseen_days": unseen.days if unseen else 0,
        "unseen_challenger_mae": unseen.challenger_mae if unseen else math.nan,
        "unseen_champion_mae": unseen.champion_mae if unseen else math.nan,
        "unseen_seasonal_naive_mae": unseen.seasonal_naive_mae if unseen else math.nan,
    }


def summary_markdown(
    run_day: str,
    trigger: str,
    result: IngestResult,
    challenger: TrainSummary | None,
    champion: ChampionScore | None,
    decision: Decision | None,
    links: dict[str, str],
    refused: tuple[TrainSummary, Decision] | None = None,
    drift: str | None = None,
) -> str:
    """The run at a glance: new data, metrics side by side, the decision, links into MLflow."""
    lines = [
        f"# Retrain {run_day} ({trigger})",
        "",
        f"History through **{result.last_date}**: {result.days_added} new day(s), {result.days_revised} revised day(s).",
        "",
    ]
    if result.earlier_changes > 0:
        lines += [f"Also trained on: {result.earlier_changes} change(s) stored by an earlier run that did not finish.", ""]
    if result.files:
        lines += ["| file | outcome | reason |", "|---|---|---|"]
        lines += [f"| {f.name} | {f.outcome} | {f.reason} |" for f in result.files] + [""]
    if drift is not None:
        lines += [f"**The champion drifts**: {drift}.", ""]
    if challenger is None:
        return "\n".join([*lines, "**No new data**: nothing trained."])
    metrics = challenger.evaluation.metrics
    rows = {f"challenger v{challenger.model_version} ({challenger.kind})": challenger.evaluation.model}
    rows |= {name: values for name, values in metrics.items() if name != challenger.kind}
    lines += ["| forecaster | RMSE | MAE | MAPE | R² | MASE |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {name} | {m['rmse']:,.0f} | {m['mae']:,.0f} | {m['mape']:.2f}% | {m['r2']:.3f} | {m['mase']:.3f} |"
        for name, m in rows.items()
    ]
    lines += ["", f"The challenger's MAE is {challenger.evaluation.comparison()}."]
    if champion is not None:
        lines += ["", unseen_line(champion)]
    if refused is not None:
        first, why = refused
        lines += [
            "",
            f"The configured {first.kind} (v{first.model_version}) was not promoted: {why.reason}. "
            f"{challenger.kind} was registered as v{challenger.model_version} and put through the gate instead.",
        ]
    lines += ["", f"**Decision: {decision.tags()['decision']}** — {decision.reason}", ""]
    lines += [
        f"- MLflow run: [{challenger.run_id}]({links['run']})",
        f"- Model version: [v{challenger.model_version}]({links['model_version']})",
    ]
    lines += [f"- Forecasters side by side: [runs table]({links['compare']}) (the training run and its child runs)"]
    return "\n".join(lines)


def unseen_line(champion: ChampionScore) -> str:
    """The gate's comparison with the champion in one sentence."""
    unseen = champion.unseen
    if unseen is None:
        return f"Champion v{champion.version} could not be scored: {champion.error}"
    on = f"{unseen.days} backtest day(s) after its data ended ({unseen.champion_fitted_through})"
    if not unseen.days:
        return f"Champion v{champion.version} was fitted on every backtest day: {on}."
    return (
        f"Champion v{champion.version} on the {on}: MAE {unseen.champion_mae:,.0f}; the challenger "
        f"{unseen.challenger_mae:,.0f}, seasonal naive {unseen.seasonal_naive_mae:,.0f}."
    )


@task(cache_policy=NO_CACHE)
def publish_summary(
    settings: Settings,
    run_day: str,
    trigger: str,
    result: IngestResult,
    challenger: TrainSummary | None = None,
    champion: ChampionScore | None = None,
    decision: Decision | None = None,
    refused: tuple[TrainSummary, Decision] | None = None,
    drift: str | None = None,
) -> str:
    """A Prefect markdown artifact summarising the run; returns its text."""
    from tasks.registry import Registry

    links = Registry(settings.mlflow).ui_links(challenger.run_id, challenger.model_version) if challenger else {}
    markdown = summary_markdown(run_day, trigger, result, challenger, champion, decision, links, refused, drift)
    create_markdown_artifact(markdown=markdown, key="retrain-summary", description=f"retrain {run_day}")
    return markdown
