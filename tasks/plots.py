"""PNG plots of a training run: loss per epoch, and the backtest's actual vs forecasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in CI
    import matplotlib.pyplot as plt

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
