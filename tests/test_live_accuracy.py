"""Live accuracy and the fair gate, replayed day by day through the retrain and predict flows (real Prefect server,
real MLflow store, SQLite history)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from servers import CLI

from schemas.daily import DATE, TARGET

pytestmark = pytest.mark.integration  # real servers or processes

ROWS = pd.read_csv(SAMPLE, dtype=str)
REPLAYED = 5  # the sample's last days, arriving one file a day


@pytest.fixture(scope="module")
def replay(prefect_server, tmp_path_factory):
    """AutoETS (fast) retrained on each arriving day, with `predict` after each; champions need 3 unseen days."""
    from tasks.config import load_settings

    root = tmp_path_factory.mktemp("live")
    ROWS.iloc[:-REPLAYED].to_csv(root / "initial.csv", index=False)
    return load_settings(None, workspace_overrides(root)), root


def workspace_overrides(root: Path) -> list[str]:
    return [
        f'data.path="{root / "initial.csv"}"',
        f'mlflow.store_dir="{root / "mlruns"}"',
        f'output_dir="{root / "out"}"',
        f'retrain.incoming_dir="{root / "incoming"}"',
        f'retrain.history_path="{root / "history.db"}"',
        'model.kind="auto_ets"',
        "backtest.test_days=7",
        "backtest.compare=[]",
        "retrain.max_peer_ratio=100.0",  # the gate's rule on unseen days is what is tested here, not the peer floor
        "retrain.min_unseen_days=3",
        "retrain.forecast_days=3",
    ]


def arrive(settings, index: int) -> None:
    """The sample's row `index` (from the end) lands as a file."""
    incoming = settings.retrain.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    ROWS.iloc[[len(ROWS) - REPLAYED + index]].to_csv(incoming / f"day-{index}.csv", index=False)


def test_forecasts_are_kept_scored_as_days_arrive_and_the_gate_waits_for_days_the_champion_never_saw(replay):
    from flows.predict import predict
    from flows.retrain import retrain
    from tasks.history_store import read_forecasts, read_history, read_live_scores
    from tasks.landing import open_history
    from tasks.registry import Registry

    settings, root = replay
    first = retrain(settings, init=True)
    assert first.status == "promoted" and first.model_version == "1"
    store = open_history(settings)[0]
    kept = read_forecasts(store)
    last = pd.Timestamp(ROWS[DATE].iloc[-REPLAYED - 1])
    assert kept[["model_version", "data_through", "made_by"]].drop_duplicates().values.tolist() == [["1", last, "retrain"]]
    assert kept[DATE].tolist() == list(pd.date_range(last + pd.Timedelta(days=1), periods=3))
    predict(settings, days=4)  # one day more than the retrain kept: only that one is new
    assert len(read_forecasts(store)) == 4 and read_forecasts(store)["made_by"].tolist()[-1] == "predict"

    # Forced on the same days, the challenger is compared with a champion fitted on every one of its backtest days:
    # none of them count (the gate used to score v1 on all 7).
    client, model = Registry(settings.mlflow).client, settings.mlflow.registered_model
    forced = retrain(settings, force=True)
    tags = client.get_model_version(model, "2").tags
    assert forced.status == "not promoted" and tags["unseen_days"] == "0"
    assert tags["decision_reason"].startswith(f"0 backtest day(s) after champion v1's data ({last:%Y-%m-%d}), 3 needed")

    outcomes = []
    for index in range(REPLAYED):
        arrive(settings, index)
        outcomes.append(retrain(settings))
        predict(settings, days=1)
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name = '{model}'")}

    # v3 and v4 had 1 and 2 days after v1's data to be compared on: v1 stayed, whatever the figures.
    for version, days in (("3", 1), ("4", 2)):
        assert tags[version]["decision"] == "not promoted" and tags[version]["unseen_days"] == str(days)
        assert tags[version]["decision_reason"].startswith(f"{days} backtest day(s) after champion v1's data ({last:%Y-%m-%d})")
    # v5 had 3: decided on those days' figures, which are on its run (and the challenger's from its backtest file).
    run = client.get_run(client.get_model_version(model, "5").run_id)
    assert tags["5"]["unseen_days"] == "3" and run.data.metrics["unseen_days"] == 3
    backtest = pd.read_csv(client.download_artifacts(run.info.run_id, "backtest.csv", str(root)))
    own = np.mean(np.abs(backtest["actual"] - backtest["auto_ets"]).tail(3))
    assert run.data.metrics["unseen_challenger_mae"] == pytest.approx(own)
    assert float(tags["5"]["champion_mae"]) == pytest.approx(run.data.metrics["unseen_champion_mae"], abs=0.1)
    assert ("beats the champion" in tags["5"]["decision_reason"]) is (outcomes[2].status == "promoted")

    # Every day that arrived scored v1's kept forecast for it: the live metrics on v1's run, one step per day.
    history = read_history(store).set_index(DATE)[TARGET]
    scored = read_live_scores(store)
    v1 = scored[scored["model_version"] == "1"]
    assert v1[DATE].tolist() == list(pd.date_range(last + pd.Timedelta(days=1), periods=len(v1)))
    steps = client.get_metric_history(run_id=client.get_model_version(model, "1").run_id, key="live_mae")
    assert [m.step for m in steps] == list(range(1, len(v1) + 1))
    first_day = v1[DATE].iloc[0]
    forecast = read_forecasts(store).set_index(["model_version", DATE]).loc[("1", first_day), "forecast"]
    assert steps[0].value == pytest.approx(abs(history[first_day] - forecast))
    assert steps[0].timestamp == int(first_day.timestamp() * 1000)
    assert len(scored) == len(scored.drop_duplicates(["model_version", DATE]))  # each version and day scored once

    # A champion whose model files are lost forecasts nothing; the retrain still decides (it stays) and completes.
    import shutil
    from urllib.parse import urlparse

    current = Registry(settings.mlflow).champion()
    shutil.rmtree(urlparse(client.get_model_version_download_uri(model, current.version)).path)
    kept_before = len(read_forecasts(store))
    lost = retrain(settings, force=True)
    assert lost.status == "not promoted" and len(read_forecasts(store)) == kept_before
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name = '{model}'")}

    # Each retrain that trained left the one-page report beside its run; `report` writes one on demand.
    assert len(list((root / "out").glob("retrain-*/live-report.png"))) == len(tags)
    overrides = [arg for override in workspace_overrides(root) for arg in ("--set", override)]
    report = subprocess.run([*CLI, "report", "--weeks", "2", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    written = Path(report.stdout.strip().removeprefix("written to "))
    assert written.parent == root / "out" and written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SHIFT = (40, 50)  # replayed days whose travellers are scaled by 0.6 (a strike, a new variant)


def test_sixty_days_replayed_raise_drift_within_a_week_of_a_level_shift_and_none_before(prefect_server, tmp_path):
    import httpx
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    from flows.predict import predict
    from flows.retrain import retrain
    from tasks.config import load_settings
    from tasks.history_store import read_live_scores
    from tasks.landing import drop_into_landing, open_history
    from tasks.live_tasks import EVENT_DRIFT
    from tasks.registry import Registry

    days = 60
    ROWS.iloc[:-days].to_csv(tmp_path / "initial.csv", index=False)
    settings = load_settings(
        None,
        [
            f'data.path="{tmp_path / "initial.csv"}"',
            f'mlflow.store_dir="{tmp_path / "mlruns"}"',
            f'output_dir="{tmp_path / "out"}"',
            f'retrain.incoming_dir="{tmp_path / "incoming"}"',
            f'retrain.history_path="{tmp_path / "history.db"}"',
            'mlflow.registered_model="drift"',
            'model.kind="auto_ets"',
            "backtest.compare=[]",
            "retrain.max_peer_ratio=100.0",
        ],
    )
    assert retrain(settings, init=True).status == "promoted"
    outcomes = []
    for index in range(days):
        row = ROWS.iloc[[len(ROWS) - days + index]].copy()
        if SHIFT[0] <= index < SHIFT[1]:
            row["riders"] = (row["riders"].astype(int) * 0.6).round().astype(int).astype(str)
        row.to_csv(tmp_path / f"day-{index}.csv", index=False)
        drop_into_landing(tmp_path / f"day-{index}.csv", settings.retrain.incoming_dir)  # as `ingest` lands it
        outcomes.append(retrain(settings))
        predict(settings, days=1)
    EventsWorker.drain_all(timeout=30)

    first_day = pd.Timestamp(ROWS[DATE].iloc[-days])
    shift_start = first_day + pd.Timedelta(days=SHIFT[0])

    def drift_events() -> list[dict]:
        body = {"filter": {"event": {"name": [EVENT_DRIFT]}}, "limit": 50}
        answer = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return [e for e in answer.json()["events"] if e["resource"]["prefect.resource.id"] == "travel-forecast.model.drift"]

    for _ in range(30):  # the server takes events in asynchronously
        if drift_events():
            break
        time.sleep(1)
    drifted = sorted(pd.Timestamp(event["payload"]["day"]) for event in drift_events())
    assert drifted and shift_start <= drifted[0] < shift_start + pd.Timedelta(days=7), drifted
    # The stale champion is replaced by the retrain of the day its drift shows, without waiting for unseen days.
    first = (drifted[0] - first_day).days
    assert outcomes[first].status == "promoted" and "drifts" in outcomes[first].reason, outcomes[first]
    stale = re.match(r"champion v(\d+) drifts", outcomes[first].reason).group(1)
    tag = Registry(settings.mlflow).client.get_model_version("drift", stale).tags["drift"]
    assert tag.startswith(f"{drifted[0]:%Y-%m-%d}: live MAE of the last 28 days")
    assert not any("drifts" in (outcome.reason or "") for outcome in outcomes[: SHIFT[0]])

    # Every replayed day was scored against the forecast the champion of the day before had kept for it.
    scored = read_live_scores(open_history(settings)[0])
    assert sorted(set(scored[DATE])) == list(pd.date_range(first_day, periods=days))
