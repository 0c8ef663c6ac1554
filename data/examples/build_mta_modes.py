"""Rebuild mta_modes.csv: the seven MTA modes of the sample's source in one long-format file.

Columns `date, series, riders, new_cases, cumulative_cases, day_type`: one row per mode and
day, 2020-03-01 .. 2024-11-14, `riders` the mode's daily total as the MTA publishes it (estimated
ridership; scheduled trips for Access-A-Ride; vehicles for bridges and tunnels). Cases and day
types are the bundled sample's (NYC citywide confirmed cases, US federal holidays).

    .venv/bin/python data/examples/build_mta_modes.py [path/to/MTA_Daily_Ridership_Data__Beginning_2020.csv]
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
MODES = {
    "subway": "Subways: Total Estimated Ridership",
    "bus": "Buses: Total Estimated Ridership",
    "lirr": "LIRR: Total Estimated Ridership",
    "metro_north": "Metro-North: Total Estimated Ridership",
    "staten_island_railway": "Staten Island Railway: Total Estimated Ridership",
    "access_a_ride": "Access-A-Ride: Total Scheduled Trips",
    "bridges_tunnels": "Bridges and Tunnels: Total Traffic",
}
CONTEXT = ["date", "new_cases", "cumulative_cases", "day_type"]


def main() -> None:
    mta = pd.read_csv(MTA)
    mta["date"] = pd.to_datetime(mta["Date"], format="%m/%d/%Y").dt.strftime("%Y-%m-%d")
    sample = pd.read_csv(ROOT / "data/sample/nyc_subway_covid.csv")[CONTEXT]
    modes = []
    for series, column in MODES.items():
        riders = mta[["date", column]].rename(columns={column: "riders"}).assign(series=series)
        merged = sample.merge(riders, on="date", how="inner")
        assert len(merged) == len(sample), f"{series}: days missing"
        modes.append(merged)
    long = pd.concat(modes).sort_values(["date", "series"], kind="stable")
    long[["date", "series", "riders", "new_cases", "cumulative_cases", "day_type"]].to_csv(HERE / "mta_modes.csv", index=False)


if __name__ == "__main__":
    main()
