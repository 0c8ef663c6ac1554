"""The reference of benchmarks/speed.py: the notebook recipe as a plain Keras script.

Same data, same model, same epochs as the `seed` preset: 5 lags of [travellers, cases,
day type] MinMax-scaled, LSTM 256 relu x2 with dropout, Dense 16, Dense 1, mae, Adam,
200 full-batch epochs on every day but the last 31, then their forecasts. No Prefect,
no MLflow, no validation, no files.

    .venv/bin/python benchmarks/bare_seed.py [--data FILE] [--config FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()

    import keras
    import numpy as np
    import pandas as pd
    from sklearn.preprocessing import MinMaxScaler

    from tasks.config import load_settings  # column names only

    data = load_settings(args.config, ["preset=seed"], {"data": {"path": str(args.data)}} if args.data else None).data
    frame = pd.read_csv(data.path)
    columns = [data.target_column, *data.case_columns, data.day_type_column]
    values = frame[columns].to_numpy(dtype="float32")
    lags, test_days = 5, 31
    scaler = MinMaxScaler().fit(values[:-test_days])
    scaled = scaler.transform(values)
    X = np.stack([scaled[i - lags : i] for i in range(lags, len(scaled))])
    y = scaled[lags:, 0]
    X_train, y_train, X_test = X[:-test_days], y[:-test_days], X[-test_days:]

    keras.utils.set_random_seed(42)
    model = keras.Sequential(
        [
            keras.Input(shape=(lags, len(columns))),
            keras.layers.LSTM(256, activation="relu", return_sequences=True),
            keras.layers.Dropout(0.2),
            keras.layers.LSTM(256, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(16),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(loss="mae", optimizer="adam")
    fit_start = time.perf_counter()
    model.fit(X_train, y_train, epochs=200, batch_size=len(X_train), shuffle=False, verbose=0)
    fit_seconds = time.perf_counter() - fit_start
    forecast = model.predict(X_test, verbose=0)[:, 0] * scaler.data_range_[0] + scaler.data_min_[0]
    mae = float(np.mean(np.abs(forecast - values[-test_days:, 0])))
    print(
        f"bare seed recipe: {len(X_train)} samples, fit {fit_seconds:.1f} s, total {time.perf_counter() - started:.1f} s, test MAE {mae:,.0f}"
    )


if __name__ == "__main__":
    main()
