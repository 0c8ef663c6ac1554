"""PNG plots of a training run: loss per epoch, and the test window's actual vs forecasts."""

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


def plot_forecasts(dates: np.ndarray, actual: np.ndarray, forecasts: dict[str, np.ndarray], path: Path) -> Path:
    """Actual travellers on the test days beside each forecaster's next-day forecast."""
    plt, (figure, axes) = _figure()
    axes.plot(dates, actual, color="black", linewidth=2, label="actual")
    for name, values in forecasts.items():
        axes.plot(dates, values, linestyle="-" if name == "model" else "--", label=name)
    axes.set(xlabel="date", ylabel="travellers", title="Test days: actual vs forecast")
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
