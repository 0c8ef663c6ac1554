import pandas as pd

from tasks.calendar import HOLIDAY, WEEKEND, WORKDAY, derive_day_types


def test_day_types_from_the_us_calendar():
    dates = pd.Series(
        pd.to_datetime(
            [
                "2024-07-03",  # Wednesday
                "2024-07-04",  # Independence Day (Thursday)
                "2024-07-06",  # Saturday
                "2021-07-05",  # Monday, observed holiday for Sunday July 4
                "2020-12-25",  # Christmas on a Friday
                "2022-12-25",  # Christmas on a Sunday: a holiday wins over the weekend
            ]
        )
    )
    assert derive_day_types(dates, "US").tolist() == [WORKDAY, HOLIDAY, WEEKEND, HOLIDAY, HOLIDAY, HOLIDAY]


def test_country_and_subdivision_change_the_holidays():
    dates = pd.Series(pd.to_datetime(["2024-10-01", "2024-02-12"]))  # PRC National Day; Lincoln's Birthday (NY)
    assert derive_day_types(dates, "CN").tolist()[0] == HOLIDAY
    assert derive_day_types(dates, "US").tolist() == [WORKDAY, WORKDAY]
    assert derive_day_types(dates, "US", "NY").tolist() == [WORKDAY, HOLIDAY]


def test_a_weekend_day_worked_instead_of_a_day_off_is_a_workday():
    dates = pd.Series(
        pd.to_datetime(
            [
                "2020-06-25",  # Dragon Boat Festival (Thursday)
                "2020-06-26",  # Friday off, worked on Sunday the 28th instead
                "2020-06-27",  # Saturday
                "2020-06-28",  # Sunday, a make-up workday
                "2020-07-05",  # the next Sunday
            ]
        )
    )
    assert derive_day_types(dates, "CN").tolist() == [HOLIDAY, HOLIDAY, WEEKEND, WORKDAY, WEEKEND]


def test_derived_day_types_match_the_bundled_sample():
    from conftest import SAMPLE

    sample = pd.read_csv(SAMPLE, parse_dates=["date"])
    assert (derive_day_types(sample["date"], "US").to_numpy() == sample["day_type"].to_numpy()).all()


def test_unknown_country_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="unknown country/subdivision 'XX'"):
        derive_day_types(pd.Series(pd.to_datetime(["2024-01-01"])), "XX")
