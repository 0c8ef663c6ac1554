"""End to end with real servers started here: `prefect server start`, the served `retrain/daily`
deployment, `prefect deployment run`, a data-arrival event, `predict`, and `mlflow server`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from servers import BIN, CLI, flow_runs, free_port, prefect_api, start, start_mlflow_server, stop, wait_for_deployment, wait_until

pytestmark = pytest.mark.integration  # real servers or processes

MODEL = "travel-forecast-e2e"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A config whose data, landing folder, history and MLflow store live in a temp folder.

    The history starts from the sample minus its last two days; those arrive later as files.
    """
    root = tmp_path_factory.mktemp("e2e")
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-2].to_csv(root / "initial.csv", index=False)
    rows.iloc[-2:-1].to_csv(root / "2024-11-13.csv", index=False)
    config = root / "config.toml"
    config.write_text(
        f'output_dir = "{root / "out"}"\n'
        f'[data]\npath = "{root / "initial.csv"}"\n'
        "[model]\nepochs = 2\n[backtest]\ntest_days = 7\n"
        f'[mlflow]\nstore_dir = "{root / "mlruns"}"\nregistered_model = "{MODEL}"\n'
        f'[retrain]\nincoming_dir = "{root / "incoming"}"\nhistory_path = "{root / "history.db"}"\n'
        'cron = "30 5 * * *"\ntimezone = "Europe/Berlin"\n'
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\n"  # two epochs are far from good: let the first model through
    )
    return root, config


@pytest.fixture(scope="module")
def served(prefect_env, workspace):
    """`travel-forecast serve` running against the server until the module's tests end."""
    root, config = workspace
    process = start([*CLI, "serve", "--config", str(config)], prefect_env, root / "serve.log")
    api = prefect_env["PREFECT_API_URL"]
    try:
        deployment = wait_for_deployment(api, "retrain/daily", process)
        yield deployment
    finally:
        stop(process)


def prefect(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def summaries(api: str, deployment_id: str) -> list[str]:
    """Every version of the deployment's run summary artifact, oldest first (other tests share the server)."""
    runs = [r["id"] for r in flow_runs(api, deployment_id)]
    body = {"artifacts": {"key": {"any_": ["retrain-summary"]}, "flow_run_id": {"any_": runs}}, "sort": "CREATED_DESC"}
    return [a["data"] for a in prefect_api("POST", f"{api}/artifacts/filter", body)][::-1]


def registry(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def test_served_deployment_retrains_on_schedule_run_and_event(workspace, prefect_env, served):
    root, config = workspace
    api = prefect_env["PREFECT_API_URL"]
    # The deployment: daily cron in the configured timezone, trigger parameter, not paused.
    schedule = served["schedules"][0]
    assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("30 5 * * *", "Europe/Berlin")
    assert schedule["parameters"] == {"trigger": "schedule"} and served["paused"] is False
    assert served["global_concurrency_limit"]["limit"] == 1
    # Its parameters hold only what the config changes, so `prefect deployment run --watch` prints a short line.
    assert served["parameters"]["settings"]["model"] == {"epochs": 2} and "backtest" in served["parameters"]["settings"]

    # 1. First run, started by hand with init: the history store starts and the first model becomes champion.
    first = prefect(["deployment", "run", "retrain/daily", "--param", "init=true", "--watch"], prefect_env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    client = registry(root)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    assert champion.tags["decision"] == "promoted" and "first model" in champion.tags["decision_reason"]
    run = client.get_run(champion.run_id)
    assert run.data.tags["trigger"] == "manual" and run.data.tags["data_through"] == "2024-11-12"
    assert run.data.tags["champion"] == "true"
    assert "Backtest 2024-11-06 .. 2024-11-12: MAE" in client.get_model_version(MODEL, "1").description

    # 2. A new day's file arrives: `ingest` drops it and its event triggers a retrain.
    dropped = subprocess.run(
        [*CLI, "ingest", str(root / "2024-11-13.csv"), "--config", str(config)],
        cwd=ROOT,
        env=prefect_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dropped.returncode == 0 and "announced as travel-forecast.data.arrived" in dropped.stdout, dropped.stderr
    assert "Still processing items" not in dropped.stderr and "EventsWorker" not in dropped.stderr  # sent, then quiet
    by_event = wait_until(
        lambda: [
            r
            for r in flow_runs(api, served["id"])
            if r["parameters"].get("trigger") == "event" and r["state_type"] in {"COMPLETED", "FAILED", "CRASHED"}
        ],
        600,
        "the event-triggered retrain run",
    )
    assert by_event[0]["state_type"] == "COMPLETED"
    challenger = client.get_model_version(MODEL, "2")
    # One backtest day comes after v1's data: too few to compare on, so v1 stays, whatever the figures.
    assert challenger.tags["decision"] == "not promoted" and challenger.tags["unseen_days"] == "1"
    assert challenger.tags["decision_reason"].startswith("1 backtest day(s) after champion v1's data (2024-11-12), 7 needed")
    assert "challenger_mae" in challenger.tags and "champion_mae" not in challenger.tags
    assert client.get_run(challenger.run_id).data.tags["trigger"] == "event"
    assert client.get_run(challenger.run_id).data.tags["data_through"] == "2024-11-13"
    alias_now = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert alias_now == ("2" if challenger.tags["decision"] == "promoted" else "1")
    first_run_tag = client.get_run(champion.run_id).data.tags["champion"]
    assert first_run_tag == ("false (replaced by v2)" if alias_now == "2" else "true")
    assert client.get_run(challenger.run_id).info.run_name == "retrain-2024-11-13-event"
    assert challenger.tags["decision_reason"] in client.get_model_version(MODEL, "1").tags["last_challenge"]
    assert (root / "incoming" / "processed" / "2024-11-13.csv").exists()

    # 3. Nothing new: the run completes with "no new data" and registers nothing.
    third = prefect(["deployment", "run", "retrain/daily", "--watch"], prefect_env)
    assert third.returncode == 0, third.stdout[-2000:]
    assert sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")) == ["1", "2"]
    texts = summaries(api, served["id"])
    assert len(texts) == 3
    assert "No new data" in texts[-1]
    assert "Decision: promoted" in texts[0] and "| challenger v1 (lstm) |" in texts[0]
    assert re.search(r"The challenger's MAE is \d+\.\d{3}x the best peer's \(\w+\), \d+\.\d{3}x seasonal naive's", texts[0])
    assert "Champion v1 on the 1 backtest day(s) after its data ended (2024-11-12): MAE " in texts[1]
    assert "2024-11-13.csv | added" in texts[1]
    assert f"/#/models/{MODEL}/versions/2" in texts[1]


def test_predict_forecasts_tomorrow_with_the_champion(workspace, prefect_env, served):
    root, config = workspace
    result = subprocess.run(
        [*CLI, "predict", "--days", "3", "--config", str(config)],
        cwd=ROOT,
        env=prefect_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    forecast = pd.read_csv(next((root / "out").glob("forecast-*.csv")))
    assert forecast["date"].tolist() == ["2024-11-14", "2024-11-15", "2024-11-16"]
    champion = registry(root).get_model_version_by_alias(MODEL, "champion")
    assert (forecast["model_version"].astype(str) == str(champion.version)).all()
    assert forecast["forecast"].between(1e5, 2e7).all()
    # Intervals widen with the days ahead (sqrt of the steps). Seven backtest days calibrate an
    # 80% interval; a 95% one needs 19 or more (rank ceil(0.95 (n + 1)) <= n), so it is unbounded here.
    assert ((forecast["lower_95"] <= forecast["lower_80"]) & (forecast["upper_80"] <= forecast["upper_95"])).all()
    assert np.isinf(forecast["upper_95"]).all()
    width = forecast["upper_80"] / forecast["forecast"]
    assert width.iloc[2] > width.iloc[0]
    assert "lower_80" in result.stdout and "upper_95" in result.stdout


def test_mlflow_server_shows_the_runs_and_the_champion(workspace, served):
    root, _ = workspace
    port = free_port()
    server = start_mlflow_server(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", port, root / "mlflow.log")
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        alias = httpx.get(f"{base}/registered-models/alias", params={"name": MODEL, "alias": "champion"}, timeout=10).json()
        assert alias["model_version"]["name"] == MODEL and alias["model_version"]["tags"]
        experiment = httpx.get(
            f"{base}/experiments/get-by-name", params={"experiment_name": "travel-forecast"}, timeout=10
        ).json()
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = httpx.post(f"{base}/runs/search", json={"experiment_ids": [experiment_id], "max_results": 100}, timeout=10).json()[
            "runs"
        ]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        trainings = [r for r, t in zip(runs, tags, strict=True) if "mlflow.parentRunId" not in t]
        assert sorted(t["trigger"] for t in tags if "mlflow.parentRunId" not in t) == ["event", "manual"]
        # Each training run has a child run per compared forecaster (the default backtest.compare).
        children = {
            r["info"]["run_id"]: [t["forecaster"] for t in tags if t.get("mlflow.parentRunId") == r["info"]["run_id"]]
            for r in trainings
        }
        assert [sorted(kinds) for kinds in children.values()] == [
            ["auto_arima", "auto_ets", "auto_theta", "naive", "seasonal_naive"]
        ] * 2
        # The compare view: the LSTM and the peers it claims to beat, backtest_mae side by side under one name.
        latest = max(trainings, key=lambda r: r["info"]["start_time"])["info"]["run_id"]
        filtered = {"experiment_ids": [experiment_id], "filter": f"tags.mlflow.parentRunId = '{latest}'"}
        side_by_side = httpx.post(f"{base}/runs/search", json=filtered, timeout=10).json()["runs"]
        side_by_side.append(httpx.get(f"{base}/runs/get", params={"run_id": latest}, timeout=10).json()["run"])
        mae = {
            next(t["value"] for t in r["data"]["tags"] if t["key"] == "forecaster"): next(
                m["value"] for m in r["data"]["metrics"] if m["key"] == "backtest_mae"
            )
            for r in side_by_side
        }
        assert set(mae) == {"lstm", "auto_arima", "auto_ets", "auto_theta", "naive", "seasonal_naive"} and all(
            v > 0 for v in mae.values()
        )
        # Same metric and parameter names in every training run: the compare view lines them up. A champion's run
        # also holds its live metrics (v1's forecast of 2024-11-13 was scored when that day arrived).
        metric_names = [sorted(m["key"] for m in r["data"]["metrics"] if not m["key"].startswith("live_")) for r in trainings]
        param_names = [sorted(p["key"] for p in r["data"]["params"]) for r in trainings]
        assert metric_names[0] == metric_names[1] and "backtest_mase" in metric_names[0]
        live = {t["trigger"]: {m["key"] for m in r["data"]["metrics"]} for r, t in zip(runs, tags, strict=True) if r in trainings}
        assert "live_mae_7d" in live["manual"] and "live_mae_7d" not in live["event"]
        assert param_names[0] == param_names[1]
    finally:
        stop(server)


def test_prefect_yaml_deploys_the_same_deployment_to_a_process_pool(prefect_env, served):
    """The documented `prefect deploy` route: the same retrain/daily on a process work pool."""
    pool = prefect(["work-pool", "create", "travel-forecast", "--type", "process"], prefect_env)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deployed = prefect(["--no-prompt", "deploy", "--all"], prefect_env | {"PWD": str(ROOT)})
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    api = prefect_env["PREFECT_API_URL"]
    deployment = prefect_api("GET", f"{api}/deployments/name/retrain/daily")
    assert deployment["work_pool_name"] == "travel-forecast"
    assert deployment["entrypoint"] == "flows/retrain.py:retrain"
    schedule = deployment["schedules"][0]
    assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("0 6 * * *", "America/New_York")
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
