"""Cross-series (global) pretraining: networks fitted on other series' windows, which a series' fit starts from.

The seasonal encoding is scale-free (residuals to a same-weekday reference, inputs standardised per
series), so windows from several cities can train one network. A fit with no earlier fit of its own to
start from (`model.warm_start_days`) starts from networks fitted on the series of `data.pretrain_paths`,
each cut after the fit's last day, and stops after `model.warm_start_patience` epochs without gain on its
own validation days, as a refit starting from the fit before it does. A series joins with at least
`model.pretrain_min_days` days: on the development set's validation windows, pooled windows of the
first months of the pandemic made the networks worse, and years of other series made them better; on
its test days they did not, so nothing is pretrained unless asked (benchmarks/README.md).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from schemas.daily import DATE
from tasks.config import DataConfig, ModelConfig
from tasks.framing import Samples

logger = logging.getLogger(__name__)


def pooled(parts: list[Samples]) -> Samples:
    """The samples of several series as one set (each sample keeps its own series' row number)."""
    join = lambda field: np.concatenate([getattr(p, field) for p in parts])
    return Samples(X=join("X"), future=join("future"), y=join("y"), reference=join("reference"), target_rows=join("target_rows"))


def pretraining_pool(series: dict[str, pd.DataFrame], through: pd.Timestamp, min_days: int) -> dict[str, pd.DataFrame]:
    """Each series cut after `through` (no day the fit does not see), kept if it still has `min_days` days."""
    cut = {name: history[history[DATE] <= through].reset_index(drop=True) for name, history in series.items()}
    return {name: history for name, history in cut.items() if len(history) >= min_days}


def read_pretraining_series(data: DataConfig) -> dict[str, pd.DataFrame]:
    """Every series of `data.pretrain_paths` (validated as input files are) but the one `data` reads, by
    `<file>` or `<file>:<series>`."""
    from tasks.input_file import read_every_series

    every = data.model_copy(update={"series": None})
    found = {}
    for path in data.pretrain_paths:
        for name, history in read_every_series(path, every.model_copy(update={"path": path})).items():
            if not (path == data.path and name == data.series):  # the fitted series itself
                found[path.name if name is None else f"{path.name}:{name}"] = history
    return found


def pretrained_networks(data: DataConfig, model: ModelConfig, series: dict[str, pd.DataFrame]):
    """Networks fitted on every series' training samples, stopped early on their validation samples pooled;
    each series encoded by its own encoder, fitted on its own rows."""
    from tasks.lstm import LstmForecaster
    from tasks.network import fit_network

    trains, validations = zip(*(LstmForecaster(data, model).fit_encoding(h) for h in series.values()), strict=True)
    network, losses = fit_network(model, pooled(list(trains)), pooled(list(validations)))
    logger.info("networks pretrained on %s: %d epochs", ", ".join(series), len(losses["loss"]))
    return network
