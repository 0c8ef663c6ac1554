from pathlib import Path

import pytest

from tasks.config import PRESETS, load_settings, parse_override
from tasks.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model.epochs=20", (["model", "epochs"], 20)),
        ("model.learning_rate=0.01", (["model", "learning_rate"], 0.01)),
        ("data.case_columns=['a', 'b']", (["data", "case_columns"], ["a", "b"])),
        ("data.date_column=Date", (["data", "date_column"], "Date")),
        ('data.date_format="%Y/%m/%d"', (["data", "date_format"], "%Y/%m/%d")),
        ("model.shuffle=true", (["model", "shuffle"], True)),
    ],
)
def test_parse_override_reads_toml_values_and_falls_back_to_text(text, expected):
    assert parse_override(text) == expected


def test_parse_override_rejects_text_without_equals():
    with pytest.raises(ValueError, match="key=value"):
        parse_override("model.epochs")


def test_defaults_resolve_paths_under_root(tmp_path):
    settings = load_settings(root=tmp_path)
    assert settings.data.path == tmp_path / "data/sample/nyc_subway_covid.csv"
    assert settings.mlflow.store_dir == tmp_path / "mlruns"
    assert settings.model.lags == 14 and settings.preset == "default"


def test_file_then_overrides_then_updates_win_in_order(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nepochs = 7\nlags = 3\n[data]\npath = "a.csv"\n')
    settings = load_settings(config, ["model.epochs=9"], updates={"data": {"path": "/x/b.csv"}}, root=tmp_path)
    assert (settings.model.epochs, settings.model.lags) == (9, 3)
    assert settings.data.path == Path("/x/b.csv")


def test_seed_preset_is_the_notebook_recipe_and_overrides_still_apply(tmp_path):
    settings = load_settings(None, ["preset=seed", "model.epochs=2"], root=tmp_path)
    expected = PRESETS["seed"]["model"] | {"epochs": 2}
    assert settings.model.model_dump() == {**settings.model.model_dump(), **expected}
    assert settings.model.lstm_units == [256, 256] and settings.model.activation == "relu"
    assert settings.model.batch_size == 0 and settings.model.lags == 5 and settings.backtest.test_days == 31


def test_shipped_default_config_equals_built_in_defaults():
    assert load_settings(ROOT / "config" / "default.toml", root=ROOT) == load_settings(root=ROOT)


def test_empty_day_type_column_means_derive_from_calendar(tmp_path):
    settings = load_settings(None, ['data.day_type_column=""'], root=tmp_path)
    assert settings.data.day_type_column is None
    assert "day_type" not in settings.data.required_columns


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.epochs=0", r"^invalid setting model\.epochs: Input should be greater than or equal to 1 \(got 0\)$"),
        ("model.unknown=1", r"^invalid setting model\.unknown: Extra inputs are not permitted \(got 1\)$"),
        ("data.gap_policy=skip", r"^invalid setting data\.gap_policy: Input should be 'reject' or 'interpolate' \(got 'skip'\)$"),
        ("model.learning_rate=-1", r"^invalid setting model\.learning_rate: Input should be greater than 0 \(got -1\)$"),
        ("model.lstm_units=[0]", r"^invalid setting model\.lstm_units\.0: Input should be greater than or equal to 1 \(got 0\)$"),
        ("model.loss=mea", r"^invalid setting model\.loss: Input should be 'mae', 'mse', 'huber' or 'log_cosh' \(got 'mea'\)$"),
        ('retrain.timezone="Mars/Base"', r"^invalid setting retrain\.timezone: unknown time zone 'Mars/Base'; use an IANA name"),
        ('retrain.cron="daily"', r"^invalid setting retrain\.cron: 'daily' is not a cron expression of five fields"),
        ("model.epochs=abc", r"^invalid setting model\.epochs: Input should be a valid integer, unable to parse string"),
        ("epochs", r"^--set expects key=value, got 'epochs'$"),
        (
            "model.weighting_days=22",
            r"^invalid setting model: model\.weighting_days = 22 needs a week of its own and a week of stopping days before it: "
            r"set it between 7 and model\.validation_days - 7 \(21\), or 0$",
        ),
        (
            "model.reference=ets model.horizon=2",
            r"^invalid setting model: model\.reference='ets' forecasts one day per sample \(horizon = 1\)$",
        ),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(None, override.split(" "), root=tmp_path)


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        load_settings(None, ["preset=fast"], root=tmp_path)


def test_a_broken_or_missing_config_file_is_named(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nepochs = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML \(Expected '\]' at the end of a table declaration"):
        load_settings(broken)
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot be read \(No such file or directory\)"):
        load_settings(tmp_path / "missing.toml")


def test_relative_paths_are_under_the_project_folder_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings().data.path == ROOT / "data" / "sample" / "nyc_subway_covid.csv"


def test_a_config_for_another_registered_model_gets_its_own_history_and_landing_folder():
    own = load_settings(ROOT / "config" / "seed-format.toml")
    assert own.retrain.history_path == ROOT / "data" / "travel-forecast-seed-format" / "history.db"
    assert own.retrain.incoming_dir == ROOT / "data" / "travel-forecast-seed-format" / "incoming"
    assert load_settings().retrain.history_path == ROOT / "data" / "history.db"
    named = load_settings(ROOT / "config" / "seed-format.toml", ['retrain.history_path="/srv/h.db"'])
    assert named.retrain.history_path == Path("/srv/h.db")


def test_run_parameters_are_checked_as_settings_are():
    settings = load_settings()
    assert settings.updated({"model": {"epochs": 3}}).model.epochs == 3
    with pytest.raises(ConfigError, match=r"^invalid setting model\.epochs: Input should be greater than or equal to 1"):
        settings.updated({"model": {"epochs": 0}})


def test_the_fit_key_changes_with_what_a_fit_depends_on_and_only_with_it(tmp_path):
    base = load_settings(root=tmp_path)
    same = {
        "the data file": {"data": {"path": "elsewhere.csv"}},
        "the backtest": {"backtest": {"test_days": 3, "reuse_fit_days": 1}},
        "the gate": {"retrain": {"min_unseen_days": 3}},
    }
    other = {
        "the epochs": {"model": {"epochs": 5}},
        "the peers": {"model": {"combine_with": []}},
        "the case columns": {"data": {"case_columns": [], "cumulative_columns": []}},
        "the preset": {"preset": "seed"},
    }
    assert {name: base.updated(change).fit_key() == base.fit_key() for name, change in (same | other).items()} == dict.fromkeys(
        same, True
    ) | dict.fromkeys(other, False)
    assert len(base.fit_key()) == 16
