"""Rebuild the development set's NYC mode files from the bundled long-format file of the MTA modes.

Each file has the sample's columns `date, riders, new_cases, cumulative_cases, day_type`, with
`riders` the mode's total estimated ridership; cases and day types are the sample's (NYC
citywide confirmed cases, US federal holidays). `data/examples/mta_modes.csv` holds them all
(built from the raw MTA file by `data/examples/build_mta_modes.py`). BART (`bart_covid.csv`) is
copied unchanged. The other three MTA modes go to `confirm/`: series whose validation windows
confirm a choice made on the development set's (`accuracy.py --validation --data confirm/*.csv`),
never scored on their test days.

    .venv/bin/python benchmarks/devset/build_devset.py
"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MODES = {"nyc_bus": "bus", "nyc_lirr": "lirr", "nyc_metro_north": "metro_north"}
CONFIRMATION = {
    "nyc_staten_island_railway": "staten_island_railway",
    "nyc_access_a_ride": "access_a_ride",
    "nyc_bridges_tunnels": "bridges_tunnels",
}
COLUMNS = ["date", "riders", "new_cases", "cumulative_cases", "day_type"]


def main() -> None:
    modes = pd.read_csv(ROOT / "data/examples/mta_modes.csv")
    (HERE / "confirm").mkdir(exist_ok=True)
    for folder, names in ((HERE, MODES), (HERE / "confirm", CONFIRMATION)):
        for name, series in names.items():
            modes[modes["series"] == series][COLUMNS].to_csv(folder / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()
