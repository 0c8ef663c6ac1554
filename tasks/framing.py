"""Supervised framing: windows of past days as inputs, the following days as targets.

The notebook's `series_to_supervised` with n_in=lags, n_out=horizon, done by indexing:
the sample for first target day t has input rows t-lags .. t-1 and targets t .. t+horizon-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.encoding import Encoded


@dataclass(frozen=True)
class Samples:
    """Model inputs and targets, one sample per first target day.

    X [samples, lags, features]; future [samples, horizon * k] (known-future inputs of the
    target days, k may be 0); y [samples, horizon] (NaN past the data); reference
    [samples, horizon] (what decoding adds back); target_rows: row of each first target.
    """

    X: np.ndarray
    future: np.ndarray
    y: np.ndarray
    reference: np.ndarray
    target_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.target_rows)

    @property
    def inputs(self) -> list[np.ndarray]:
        """What the network takes: the window, plus the known future when there is any."""
        return [self.X, self.future] if self.future.shape[1] else [self.X]


def target_days(first_targets: np.ndarray, horizon: int) -> np.ndarray:
    """[len(first_targets), horizon]: the rows of the days forecast from each first target row."""
    return np.asarray(first_targets, dtype=int)[:, None] + np.arange(horizon)[None, :]


def frame_windows(encoded: Encoded, lags: int, horizon: int, first_targets: np.ndarray | None = None) -> Samples:
    """Samples for the given first target rows (default: every row with a full window and full targets).

    Rows past the end of `encoded` may not be asked for; to forecast beyond the data, encode
    the future days too (their targets are NaN).
    """
    n_rows = len(encoded.past)
    rows = np.arange(lags, n_rows - horizon + 1) if first_targets is None else np.asarray(first_targets, dtype=int)
    if len(rows) and (rows.min() < lags or rows.max() + horizon > n_rows):
        raise ValueError(f"first targets must lie in [{lags}, {n_rows - horizon}] for {n_rows} rows")
    window = rows[:, None] - lags + np.arange(lags)[None, :]
    targets = target_days(rows, horizon)
    return Samples(
        X=encoded.past[window].reshape(len(rows), lags, encoded.past.shape[1]),
        future=encoded.future[targets].reshape(len(rows), -1),
        y=encoded.target[targets].reshape(len(rows), horizon),
        reference=encoded.reference[targets].reshape(len(rows), horizon),
        target_rows=rows,
    )


def select(samples: Samples, mask: np.ndarray) -> Samples:
    """The samples where `mask` is true."""
    return Samples(
        X=samples.X[mask],
        future=samples.future[mask],
        y=samples.y[mask],
        reference=samples.reference[mask],
        target_rows=samples.target_rows[mask],
    )


def complete(samples: Samples) -> np.ndarray:
    """Mask of samples with no missing input or target (the first days lack a week of history)."""
    return ~np.isnan(samples.X).any(axis=(1, 2)) & ~np.isnan(samples.y).any(axis=1)
