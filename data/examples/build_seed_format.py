"""Rebuild seed_format.csv: the bundled NYC sample, 2020-03-01 .. 2020-08-31, in the notebook's CSV format.

The notebook's file had `Date, Num, ConfirmedCount, SuspectedCount, currentConfirmedCount,
DeadCount, DiffconfirmedCount, CuredCount, DateType` with dates like 2020/03/01. Mapping:
  Num                   <- riders (subway, total estimated)
  ConfirmedCount        <- cumulative_cases
  DiffconfirmedCount    <- new_cases
  SuspectedCount        <- probable cases that day (new_cases_incl_probable - new_cases)
  currentConfirmedCount <- confirmed cases of the last 14 days (a stand-in for "active")
  DeadCount, CuredCount <- 0: the sample has no deaths or recoveries
  DateType              <- day_type (0 workday, 1 weekend, 2 US federal holiday)
Run from the repository root: python data/examples/build_seed_format.py
"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
SAMPLE = HERE.parent / "sample" / "nyc_subway_covid.csv"


def main() -> None:
    sample = pd.read_csv(SAMPLE, parse_dates=["date"])
    days = sample[(sample["date"] >= "2020-03-01") & (sample["date"] <= "2020-08-31")]
    seed = pd.DataFrame({
        "Date": days["date"].dt.strftime("%Y/%m/%d"),
        "Num": days["riders"],
        "ConfirmedCount": days["cumulative_cases"],
        "SuspectedCount": days["new_cases_incl_probable"] - days["new_cases"],
        "currentConfirmedCount": days["new_cases"].rolling(14, min_periods=1).sum().astype(int),
        "DeadCount": 0,
        "DiffconfirmedCount": days["new_cases"],
        "CuredCount": 0,
        "DateType": days["day_type"],
    })
    seed.to_csv(HERE / "seed_format.csv", index=False)


if __name__ == "__main__":
    main()
