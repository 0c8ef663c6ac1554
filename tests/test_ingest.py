"""The input schema through the real reader: every rule's failure names file, line, column, value and rule."""

import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pandera.errors
import pytest

from schemas.daily import DailyHistory
from tasks.config import DataConfig
from tasks.errors import InputUnreadable
from tasks.input_file import InputValidationError, format_report, read_history_file, write_report

ROOT = Path(__file__).resolve().parents[1]

CONFIG = DataConfig()  # the sample's format: date, riders, cumulative_cases, day_type
GOOD = """date,riders,cumulative_cases,day_type,note
2024-07-01,100,5,0,x
2024-07-02,110,7,0,
2024-07-03,120,7,0,
2024-07-04,90,9,2,holiday
2024-07-05,130,12,0,
"""


def write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def failures(tmp_path: Path, text: str, config: DataConfig = CONFIG) -> pd.DataFrame:
    path = write(tmp_path, text)
    with pytest.raises(InputValidationError) as caught:
        read_history_file(path, config)
    assert caught.value.path == path
    return caught.value.report


def test_good_file_passes_and_becomes_typed_history(tmp_path):
    history = read_history_file(write(tmp_path, GOOD), CONFIG)
    assert list(history.columns) == ["date", "travellers", "cumulative_cases", "day_type"]
    assert history["travellers"].tolist() == [100, 110, 120, 90, 130]
    assert str(history["travellers"].dtype) == "int64" and str(history["date"].dtype).startswith("datetime64")
    DailyHistory.validate(history)


def test_rows_out_of_order_are_accepted_and_sorted(tmp_path):
    lines = GOOD.splitlines()
    history = read_history_file(write(tmp_path, "\n".join([lines[0], lines[3], lines[1], lines[2], lines[5], lines[4]])), CONFIG)
    assert history["date"].dt.day.tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("old", "new", "line", "column", "value", "check"),
    [
        ("2024-07-03,120", "2024-07-03,-120", 4, "riders", "-120", "greater_than_or_equal_to(0)"),
        ("2024-07-03,120", "2024-07-03,12.5", 4, "riders", "12.5", "whole_number"),
        ("2024-07-03,120", "2024-07-03,inf", 4, "riders", "inf", "finite"),
        ("2024-07-03,120", "2024-07-03,1e30", 4, "riders", "1e30", "not_huge"),
        ("2024-07-05,130,12", "2024-07-05,130,1e20", 6, "cumulative_cases", "1e20", "not_huge"),
        ("2024-07-03,120", "2024-07-03,lots", 4, "riders", "lots", "not_nullable"),
        ("2024-07-03,120", "2024-07-03,", 4, "riders", "", "not_nullable"),
        ("2024-07-03,120", "2024-07-03,NaN", 4, "riders", "NaN", "not_nullable"),
        ("2024-07-03,120,7", "2024-07-03,120,", 4, "cumulative_cases", "", "not_nullable"),
        ("2024-07-03,120,7", "2024-07-03,120,6", 4, "cumulative_cases", "6", "non_decreasing"),
        ("2024-07-04,90,9,2", "2024-07-04,90,9,5", 5, "day_type", "5", "day_type_code"),
        ("2024-07-03,120", "2024-13-03,120", 4, "date", "2024-13-03", "not_nullable"),
        ("2024-07-03,120", "2024-07-02,120", 4, "date", "2024-07-02", "field_uniqueness"),
        ("2024-07-03,120", "2024-07-06,120", 5, "date", "2024-07-04", "no_missing_days"),  # 07-03 missing
        ("2024-07-05,130", "2999-07-05,130", 6, "date", "2999-07-05", "not_in_future"),
    ],
)
def test_each_rule_reports_line_column_value_and_rule(tmp_path, old, new, line, column, value, check):
    report = failures(tmp_path, GOOD.replace(old, new))
    hit = report[(report["check"] == check) & (report["column"] == column) & (report["line"] == line)]
    assert len(hit) == 1, report.to_string()
    assert hit.iloc[0]["value"] == value
    assert hit.iloc[0]["file"] == str(tmp_path / "in.csv")
    assert hit.iloc[0]["rule"] != check  # the rule in words


def test_missing_required_column_is_reported_by_name(tmp_path):
    text = "\n".join(",".join(row.split(",")[:2] + row.split(",")[3:]) for row in GOOD.splitlines())
    report = failures(tmp_path, text)
    row = report[report["check"] == "column_in_dataframe"].iloc[0]
    assert row["column"] == "cumulative_cases" and pd.isna(row["line"])
    assert row["rule"] == "required column is missing"


def test_every_failure_is_reported_at_once(tmp_path):
    bad = GOOD.replace("2024-07-02,110,7", "2024-07-02,x,7").replace("2024-07-04,90,9,2", "2024-07-04,-1,3,9")
    report = failures(tmp_path, bad)
    assert set(zip(report["line"], report["column"], report["check"], strict=True)) == {
        (3, "riders", "not_nullable"),
        (5, "riders", "greater_than_or_equal_to(0)"),
        (5, "cumulative_cases", "non_decreasing"),
        (5, "day_type", "day_type_code"),
    }


def test_a_bad_date_does_not_make_its_row_look_out_of_order(tmp_path):
    report = failures(tmp_path, GOOD.replace("2024-07-05,130,12", "07/05/2024,130,1"))
    assert report[["line", "column", "check"]].values.tolist() == [[6, "date", "not_nullable"]]


def test_gap_policy_interpolate_fills_missing_days(tmp_path):
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith("2024-07-03"))
    history = read_history_file(write(tmp_path, text), CONFIG.model_copy(update={"gap_policy": "interpolate"}))
    assert history["date"].dt.day.tolist() == [1, 2, 3, 4, 5]
    assert history.loc[2, ["travellers", "cumulative_cases", "day_type"]].tolist() == [100, 8, 0]


def test_day_types_are_derived_when_the_format_has_none(tmp_path):
    config = DataConfig(day_type_column="", target_column="riders")
    text = "\n".join(",".join(row.split(",")[:3]) for row in GOOD.splitlines())
    history = read_history_file(write(tmp_path, text), config)
    assert history["day_type"].tolist() == [0, 0, 0, 2, 0]  # July 4th from the US calendar


def test_report_is_written_as_csv_and_json(tmp_path):
    report = failures(tmp_path, GOOD.replace("2024-07-03,120", "2024-07-03,-120"))
    csv_path, json_path = write_report(report, tmp_path / "run")
    assert pd.read_csv(csv_path)["check"].tolist() == ["greater_than_or_equal_to(0)"]
    assert pd.read_json(json_path)["line"].tolist() == [4]


def test_unreadable_or_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputUnreadable, match=r"nope\.csv: no such input file"):
        read_history_file(tmp_path / "nope.csv", CONFIG)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InputUnreadable, match=r"folder\.csv: a folder, not a file"):
        read_history_file(tmp_path / "folder.csv", CONFIG)
    with pytest.raises(ValueError, match=r"empty\.csv: not a readable CSV"):
        read_history_file(write(tmp_path, "", "empty.csv"), CONFIG)


def test_a_header_without_rows_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"header.csv: a header and no data rows"):
        read_history_file(write(tmp_path, GOOD.splitlines()[0] + "\n", "header.csv"), CONFIG)


def test_random_bytes_are_refused_as_binary_with_the_line(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(b"date,riders\n" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"noise.csv: line 2: binary content, not a CSV text file"):
        read_history_file(path, CONFIG)


def test_a_gbk_file_is_read_when_configured_and_refused_clearly_when_not(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes(GOOD.replace("holiday", "节假日").encode("gbk"))
    with pytest.raises(ValueError, match=r"gbk.csv: line 5: byte 0x\w\w is not utf-8 text; .*set data.encoding"):
        read_history_file(path, CONFIG)
    history = read_history_file(path, CONFIG.model_copy(update={"encoding": "gbk"}))
    assert history["travellers"].tolist() == [100, 110, 120, 90, 130]


def test_a_wrong_delimiter_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"semi.csv: line 1: one column .* separated by ';', not ','"):
        read_history_file(write(tmp_path, GOOD.replace(",", ";"), "semi.csv"), CONFIG)
    history = read_history_file(write(tmp_path, GOOD.replace(",", ";"), "semi.csv"), CONFIG.model_copy(update={"delimiter": ";"}))
    assert len(history) == 5


def test_wrong_columns_are_each_named_and_extra_columns_are_left_out(tmp_path):
    report = failures(tmp_path, GOOD.replace("date,riders,cumulative_cases,day_type", "Day,Trips,Cases,Kind"))
    assert sorted(report["column"]) == ["cumulative_cases", "date", "day_type", "riders"]
    assert set(report["check"]) == {"column_in_dataframe"}
    history = read_history_file(write(tmp_path, GOOD), CONFIG)  # GOOD has an extra `note` column
    assert "note" not in history.columns


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.csv"
    day = date(1000, 1, 1)  # before what a nanosecond timestamp holds: plain dates
    with path.open("w") as out:  # one million rows, ~30 MB
        out.write("date,riders,cumulative_cases,day_type\n")
        out.writelines(f"{(day + timedelta(days=i)).isoformat() if i < 1000 else '2024-01-01'},1,1,0\n" for i in range(1_000_000))
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"huge.csv: [\d,]+ bytes, over the 10,000,000-byte limit \(data.max_file_bytes\)"):
        read_history_file(path, CONFIG)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000  # the file was never read into memory


def test_history_schema_refuses_a_gap():
    history = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01", "2024-01-03"]),
            "travellers": [1, 2],
            "day_type": [0, 0],
        }
    )
    with pytest.raises(pandera.errors.SchemaError, match="consecutive_days"):
        DailyHistory.validate(history)


def test_counts_published_in_ten_thousands_with_decimals_are_read_as_travellers_with_one_setting(tmp_path):
    from tasks.config import load_settings
    from tasks.input_file import to_input_format

    rows = pd.read_csv(ROOT / "data" / "examples" / "seed_format.csv", dtype=str).iloc[:10]
    rows["Num"] = [f"{int(n) / 10000:.2f}" for n in rows["Num"]]  # 2212965 -> "221.30", as a Chinese operator publishes
    path = tmp_path / "wan.csv"
    rows.to_csv(path, index=False)
    config = load_settings(ROOT / "config" / "seed-format.toml").data
    with pytest.raises(InputValidationError, match="a whole number"):
        read_history_file(path, config)
    config = config.model_copy(update={"target_unit": 10000})
    history = read_history_file(path, config)
    assert history["travellers"].tolist()[:3] == [2213000, 5329900, 5481100]
    assert rows["Num"].tolist()[:3] == ["221.30", "532.99", "548.11"]
    assert to_input_format(history, config)["Num"].tolist()[:3] == [221.3, 532.99, 548.11]  # back in the file's unit


def test_a_trailing_delimiter_on_every_row_does_not_shift_the_columns(tmp_path):
    rows = "".join(",".join(line.split(",")[:4]) + ",\n" for line in GOOD.splitlines()[1:])  # "2024-07-01,100,5,0,"
    for header in ("date,riders,cumulative_cases,day_type\n", "date,riders,cumulative_cases,day_type,\n"):
        history = read_history_file(write(tmp_path, header + rows), CONFIG)
        assert history["travellers"].tolist() == [100, 110, 120, 90, 130]
        assert history["cumulative_cases"].tolist() == [5, 7, 7, 9, 12]


def test_values_in_fields_the_header_does_not_name_are_refused_with_their_lines(tmp_path):
    rows = ["date,riders,cumulative_cases,day_type", "2024-07-01,100,5,0", "2024-07-02,110,7,0,9", "2024-07-03,120,7,0"]
    with pytest.raises(InputUnreadable, match=r"in\.csv: line 3: more values than the header has columns \(4\)"):
        read_history_file(write(tmp_path, "\n".join(rows) + "\n"), CONFIG)


def test_a_long_report_is_summarised_per_rule_and_column_with_lines_and_examples(tmp_path):
    from tasks.input_file import summarize_report

    rows = [f"2024-07-{day:02d},{-day},5,0" for day in range(1, 32)] + ["2024-08-01,7,5,9"]
    report = failures(tmp_path, "date,riders,cumulative_cases,day_type\n" + "\n".join(rows) + "\n")
    assert len(report) == 32
    assert summarize_report(report).splitlines() == [
        "31 x riders: not negative (lines 2, 3, 4, 5, 6, ...; e.g. '-1', '-2', '-3')",
        "1 x day_type: one of the day-type codes in data.day_type_codes (line 33; e.g. '9')",
    ]
    assert summarize_report(report.iloc[:3]) == format_report(report.iloc[:3])  # short reports stay whole
