"""Re-take docs/mlflow-live-metrics.png (a champion's live metrics charted by the MLflow UI) and docs/live-report.png.

    .venv/bin/python docs/live_screenshot.py [DIR]   # ~5 minutes; needs Playwright (see docs/screenshots.py)

In a scratch folder (or DIR, reused on the next call): `retrain --init` on the sample minus its last
28 days with AutoETS as the model (so the replay takes minutes, not an hour), then those 28 days
one file a day through the landing folder, each followed by `retrain` and `predict`; travellers
x 0.6 on the last 10 (a level shift, which the champion's live error shows as drift). The picture
charts the live errors of the champion that drifted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import urllib.parse
from pathlib import Path

from screenshots import CHROMIUM, CHROMIUM_ARGS, DOCS, ROOT, SAMPLE, free_port, photograph, start_mlflow_ui, wait_for

DAYS, SHIFTED = 28, 10


def workspace(scratch: Path):
    """Settings whose data, history, landing folder and MLflow store are in the scratch folder."""
    from tasks.config import load_settings

    overrides = [f'data.path="{scratch / "initial.csv"}"', f'mlflow.store_dir="{scratch / "mlruns"}"']
    overrides += [f'output_dir="{scratch / "out"}"', f'retrain.incoming_dir="{scratch / "incoming"}"']
    overrides += [f'retrain.history_path="{scratch / "history.db"}"', 'model.kind="auto_ets"']
    return load_settings(None, overrides, root=ROOT)


def replay(scratch: Path) -> None:
    """The runs, in this process (Prefect's temporary server; the local MLflow store in the scratch folder)."""
    import pandas as pd

    from flows.predict import predict
    from flows.retrain import retrain
    from tasks.landing import drop_into_landing

    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-DAYS].to_csv(scratch / "initial.csv", index=False)
    settings = workspace(scratch)
    retrain(settings, init=True)
    for index in range(DAYS):
        day = rows.iloc[[len(rows) - DAYS + index]].copy()
        if index >= DAYS - SHIFTED:
            day["riders"] = (day["riders"].astype(int) * 0.6).round().astype(int).astype(str)
        day.to_csv(scratch / f"day-{index}.csv", index=False)
        drop_into_landing(scratch / f"day-{index}.csv", settings.retrain.incoming_dir)
        retrain(settings)
        predict(settings, days=1)


def main() -> None:
    from playwright.sync_api import sync_playwright

    kept = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    scratch = kept or Path(tempfile.mkdtemp(prefix="tf-live-"))
    scratch.mkdir(parents=True, exist_ok=True)
    store = scratch / "mlruns"
    if not (store / "mlflow.db").exists():
        replay(scratch)

    from tasks.live_tasks import live_report

    print(f"{live_report(workspace(scratch), DOCS / 'live-report.png').relative_to(ROOT)}: the one-page report")

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("travel-forecast").experiment_id
    versions = sorted(client.search_model_versions("name = 'travel-forecast'"), key=lambda v: int(v.version))
    shown = next((v for v in versions if "drift" in v.tags), versions[0]).run_id  # the champion that drifted
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    port = free_port()
    ui = start_mlflow_ui(store, port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health")
        keys = ["live_mae_7d", "live_mae_28d", "live_mae"]
        query = {
            "runs": json.dumps([shown]),
            "metric": json.dumps(keys[0]),
            "experiments": json.dumps([experiment]),
            "plot_metric_keys": json.dumps(keys),
            "x_axis": "step",
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 760})
            photograph(page, f"{base}/#/metric?{urllib.parse.urlencode(query)}", DOCS / "mlflow-live-metrics.png", "live_mae_7d")
            browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
        if kept is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
