"""Side by side in one process: each preset trained on the bundled sample, accuracy and time.

Times are reported as ratios to the default preset, measured in the same run (the machines
are shared and noisy); with --repeat N the presets alternate and the median is used.
Run from the repository root:  .venv/bin/python benchmarks/presets.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tasks.config import PRESETS, load_settings  # noqa: E402
from tasks.dataset import frame_dataset, scale_history  # noqa: E402
from tasks.evaluation import format_metrics, metrics_table, score_test_window  # noqa: E402
from tasks.ingest import ingest_file  # noqa: E402
from tasks.model import fit_model, predict_scaled  # noqa: E402
from tasks.scaling import inverse_scale_target  # noqa: E402


def train_preset(preset: str, root: Path) -> tuple[float, int, dict[str, dict[str, float]]]:
    """Seconds to fit, epochs run, and test-window metrics of one preset (no Prefect, no MLflow)."""
    settings = load_settings(None, [f"preset={preset}"], root=root)
    history = ingest_file(settings.data.path, settings.data)
    dataset = frame_dataset(scale_history(history, settings.data.case_columns, settings.model), settings.model)
    monitored = dataset.validation if settings.model.validation_days else dataset.test
    start = time.perf_counter()
    model, losses = fit_model(settings.model, dataset.train, monitored)
    seconds = time.perf_counter() - start
    series = dataset.series
    forecast = inverse_scale_target(series.scaler, predict_scaled(model, dataset.test))
    scores = score_test_window(series.actual, series.first_test_row, dataset.test.target_rows, forecast)
    return seconds, len(losses["loss"]), scores.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    presets = list(PRESETS)
    seconds: dict[str, list[float]] = {p: [] for p in presets}
    results = {}
    for round_ in range(args.repeat):
        for preset in presets if round_ % 2 == 0 else presets[::-1]:
            took, epochs, metrics = train_preset(preset, root)
            seconds[preset].append(took)
            results[preset] = (epochs, metrics)
    baseline = statistics.median(seconds["default"])
    print(f"fit time, median of {args.repeat}, relative to the default preset:")
    for preset in presets:
        epochs = results[preset][0]
        print(f"  {preset:8s} {statistics.median(seconds[preset]) / baseline:5.2f}x   ({epochs} epochs)")
    for preset in presets:
        print(f"\ntest window, preset {preset}:")
        print(format_metrics(metrics_table(results[preset][1])))


if __name__ == "__main__":
    main()
