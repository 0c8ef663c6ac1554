"""Rebuild the development set's NYC mode files from the raw MTA file and the bundled sample.

Each file has the sample's columns `date, riders, new_cases, cumulative_cases, day_type`, with
`riders` the mode's total estimated ridership; cases and day types are the sample's (NYC
citywide confirmed cases, US federal holidays). BART (`bart_covid.csv`) is copied unchanged.

    .venv/bin/python benchmarks/devset/build_devset.py [path/to/MTA_Daily_Ridership_Data__Beginning_2020.csv]
"""

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MTA = (
    Path(sys.argv[1])
    if len(sys.argv) > 1
    else ROOT.parent / "shared/data/nyc-subway-covid/MTA_Daily_Ridership_Data__Beginning_2020.csv"
)
MODES = {"nyc_bus": "Buses", "nyc_lirr": "LIRR", "nyc_metro_north": "Metro-North"}
COLUMNS = ["date", "riders", "new_cases", "cumulative_cases", "day_type"]


def main() -> None:
    mta = pd.read_csv(MTA)
    mta["date"] = pd.to_datetime(mta["Date"], format="%m/%d/%Y").dt.strftime("%Y-%m-%d")
    sample = pd.read_csv(ROOT / "data/sample/nyc_subway_covid.csv")
    for name, mode in MODES.items():
        riders = mta[["date", f"{mode}: Total Estimated Ridership"]].rename(
            columns={f"{mode}: Total Estimated Ridership": "riders"}
        )
        merged = sample.drop(columns="riders").merge(riders, on="date", how="inner")
        assert len(merged) == len(sample), f"{name}: days missing"
        merged[COLUMNS].to_csv(HERE / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()
