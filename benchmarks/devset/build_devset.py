"""Rebuild the development set's NYC mode files from the bundled long-format file of the MTA modes.

Each file has the sample's columns `date, riders, new_cases, cumulative_cases, day_type`, with
`riders` the mode's total estimated ridership; cases and day types are the sample's (NYC
citywide confirmed cases, US federal holidays). `data/examples/mta_modes.csv` holds them all
(built from the raw MTA file by `data/examples/build_mta_modes.py`). BART (`bart_covid.csv`) is
copied unchanged.

    .venv/bin/python benchmarks/devset/build_devset.py
"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MODES = {"nyc_bus": "bus", "nyc_lirr": "lirr", "nyc_metro_north": "metro_north"}
COLUMNS = ["date", "riders", "new_cases", "cumulative_cases", "day_type"]


def main() -> None:
    modes = pd.read_csv(ROOT / "data/examples/mta_modes.csv")
    for name, series in MODES.items():
        modes[modes["series"] == series][COLUMNS].to_csv(HERE / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()
