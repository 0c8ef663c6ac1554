"""PNG plots: a training run's loss per epoch and backtest, and the live report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from schemas.daily import DATE, TARGET


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def _figure():
    plt = _pyplot()
    return plt, plt.subplots(figsize=(10, 4.5))


def plot_losses(losses: dict[str, list[float]], validation_label: str, path: Path) -> Path:
    """Training and validation loss per epoch."""
    plt, (figure, axes) = _figure()
    epochs = np.arange(1, len(losses["loss"]) + 1)
    axes.plot(epochs, losses["loss"], label="training")
    if "val_loss" in losses:
        axes.plot(epochs, losses["val_loss"], label=validation_label)
    axes.set(xlabel="epoch", ylabel="loss (scaled units)", title="Loss per epoch")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_backtest(backtest, kind: str, path: Path) -> Path:
    """Actual travellers on the backtest days beside each forecaster's first-step forecast,
    the configured forecaster's widest interval shaded and fold starts marked."""
    plt, (figure, axes) = _figure()
    dates = backtest.dates
    intervals = backtest.scores[kind].intervals
    if intervals:
        level = max(intervals)
        lower, upper = intervals[level]
        axes.fill_between(dates, lower[:, 0], upper[:, 0], alpha=0.2, label=f"{kind} {level}% interval")
    axes.plot(dates, backtest.actual[:, 0], color="black", linewidth=2, label="actual")
    for name, scores in backtest.scores.items():
        axes.plot(
            dates, scores.forecast[:, 0], linestyle="-" if name == kind else "--", linewidth=2 if name == kind else 1, label=name
        )
    for start in dates[np.flatnonzero(np.diff(backtest.fold, prepend=-1))][1:]:
        axes.axvline(start, color="grey", linewidth=0.8, linestyle=":")
    axes.set(xlabel="date", ylabel="travellers", title="Backtest: actual vs one-step forecasts (dotted: refits)")
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_live_report(
    actual: pd.DataFrame,
    shown: pd.DataFrame,
    live_mae: pd.DataFrame,
    backtest_mae: dict[str, float],
    decisions: list[str],
    path: Path,
) -> Path:
    """One page: the weeks' travellers against the forecasts kept for them (widest interval shaded), each champion's
    live MAE of the last 28 days against the backtest MAE it was promoted on, and the decisions taken."""
    from tasks.live import interval_bounds

    plt = _pyplot()
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 11), gridspec_kw={"height_ratios": [3, 2, 1.6]})
    levels = sorted({level for interval in shown["intervals"] for level in interval}, key=int)
    if levels:
        lower, upper = interval_bounds(shown, levels[-1])
        top.fill_between(shown[DATE], lower, upper, alpha=0.2, label=f"{levels[-1]}% interval")
    top.plot(actual[DATE], actual[TARGET], color="black", linewidth=2, label="actual")
    top.plot(shown[DATE], shown["forecast"], color="tab:blue", marker=".", label="forecast (the last kept before the day)")
    top.set(ylabel="travellers", title="Travellers and the champion's forecasts")
    top.legend(fontsize="small", loc="lower left")
    for number, (version, rows) in enumerate(live_mae.groupby("model_version", sort=False)):
        color = f"C{number % 10}"
        middle.plot(rows[DATE], rows["live_mae_28d"], color=color, label=f"v{version} live MAE (28 days)")
        if version in backtest_mae:
            middle.axhline(backtest_mae[version], color=color, linestyle="--", linewidth=1, label=f"v{version} backtest MAE")
    middle.set(ylabel="MAE (travellers)", title="Live error against the backtest's promise")
    if len(live_mae):
        middle.legend(fontsize="x-small", ncol=2)
    else:  # a first retrain: nothing kept has been scored yet (a legend of nothing would only warn)
        middle.text(
            0.5, 0.5, "no day scored yet: kept forecasts are scored as their days arrive", ha="center", transform=middle.transAxes
        )
    middle.sharex(top)
    bottom.axis("off")
    bottom.set_title("Decisions", loc="left")
    bottom.text(0, 1, "\n".join(decisions) or "no decision in these weeks", va="top", family="monospace", fontsize=8)
    for axes in (top, middle):
        axes.tick_params(axis="x", labelbottom=True, labelrotation=30)
        axes.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
