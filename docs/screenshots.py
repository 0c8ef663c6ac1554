"""Re-take the README's screenshots: the MLflow UI after a first model and one retrain, and a served request.

    .venv/bin/pip install -e '.[docs]'           # once: Playwright's Python driver (no browser download)
    .venv/bin/python docs/screenshots.py [DIR]   # ~5 minutes; drives Debian's chromium (/usr/bin/chromium)

With DIR, the runs are made there once and reused on the next call (to re-frame the pictures).

In a scratch folder: `retrain --init` on the sample minus its last day (v1, champion), that day
through the landing folder and `retrain` (v2, logged with the champion's figures on its days),
then `make ui`'s server and `serve-model` on free ports, photographed by headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "flows.cli"]
SAMPLE = ROOT / "data" / "sample" / "nyc_subway_covid.csv"
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
# Without these Chromium keeps calling Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
CHROMIUM_ARGS += ["--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def run(args: list[str], env: dict) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def start_mlflow_ui(store: Path, port: int, env: dict) -> subprocess.Popen:
    """`make ui`'s server on the local store (its own session, so it can be stopped with its workers)."""
    ui_args = ["ui", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [str(BIN / "mlflow"), *ui_args, "--workers", "1"],
        env=env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def photograph(page, url: str, target: Path, ready: str, then=None) -> None:
    """Open `url`, wait for the text `ready`, close MLflow's assistant panel, run `then`, save the viewport."""
    page.goto(url)
    page.get_by_text(ready).first.wait_for(timeout=120_000)
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
    if then is not None:
        then(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(target))
    print(f"{target.relative_to(ROOT)}: {url}")


def main() -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("docs/screenshots.py needs Playwright: .venv/bin/pip install -e '.[docs]'") from None
    kept = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    scratch = kept or Path(tempfile.mkdtemp(prefix="tf-screenshots-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rows = SAMPLE.read_text().splitlines()
    (scratch / "initial.csv").write_text("\n".join(rows[:-1]) + "\n")
    last_day = scratch / f"{rows[-1].split(',')[0]}.csv"
    last_day.write_text(f"{rows[0]}\n{rows[-1]}\n")
    store = scratch / "mlruns"
    settings = ["--set", f'data.path="{scratch / "initial.csv"}"', "--set", f'mlflow.store_dir="{store}"']
    settings += ["--set", f'output_dir="{scratch / "out"}"', "--set", f'retrain.incoming_dir="{scratch / "incoming"}"']
    settings += ["--set", f'retrain.history_path="{scratch / "history.db"}"']
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    if not (store / "mlflow.db").exists():
        run([*CLI, "retrain", "--init", *settings], env)
        run([*CLI, "ingest", str(last_day), *settings], env)
        run([*CLI, "retrain", *settings], env)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("travel-forecast").experiment_id
    trained = [client.get_model_version("travel-forecast", v).run_id for v in ("1", "2")]
    ui_port, model_port = free_port(), free_port()
    ui = start_mlflow_ui(store, ui_port, env)
    served = subprocess.Popen(
        [*CLI, "serve-model", "--port", str(model_port), *settings],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{ui_port}"
        wait_for(f"{base}/health")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 520})
            photograph(
                page,
                f"{base}/#/experiments/{experiment}/runs?workflowType=machine_learning",
                DOCS / "mlflow-runs.png",
                "retrain-2024-11-14-manual",
            )
            runs = urllib.parse.quote(json.dumps(trained))
            page.set_viewport_size({"width": 1300, "height": 1250})
            photograph(
                page,
                f"{base}/#/compare-runs?runs={runs}&experiments={urllib.parse.quote(json.dumps([experiment]))}",
                DOCS / "mlflow-champion-compare.png",
                "unseen_champion_mae",
                show_champion_metrics,
            )
            wait_for(f"http://127.0.0.1:{model_port}/ping")
            page.set_viewport_size({"width": 1100, "height": 820})
            photograph(page, request_page(model_port, rows, scratch), DOCS / "served-request.png", "$ curl")
            browser.close()
    finally:
        for process in (ui, served):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        if kept is None:
            shutil.rmtree(scratch, ignore_errors=True)


def show_champion_metrics(page) -> None:
    """Unfold the compare view's metrics table (it scrolls inside a short box) and bring it to the top."""
    page.evaluate(
        """() => {
            const name = [...document.querySelectorAll('a, td, div')].find(e => e.textContent === 'unseen_champion_mae');
            const top = (name.closest('table') || name.parentElement.parentElement.parentElement).getBoundingClientRect().top;
            // the names and the values are two boxes scrolled together: unfold every short box from the table down
            for (const box of document.querySelectorAll('*')) {
                const folded = box.scrollHeight > box.clientHeight + 5 && box.scrollHeight < 2500;
                if (folded && getComputedStyle(box).overflowY !== 'visible' && box.getBoundingClientRect().top >= top - 50) {
                    box.style.maxHeight = 'none'; box.style.height = 'auto'; box.style.overflowY = 'visible';
                }
            }
        }"""
    )
    page.set_viewport_size({"width": 1300, "height": 1260})  # the table renders the rows that are now in view
    page.get_by_text("Show diff only").nth(1).evaluate("e => e.scrollIntoView({block: 'start'})")


def request_page(port: int, rows: list[str], scratch: Path) -> str:
    """The README's request to the served champion and its answer, as a terminal shows them; the page's URL."""
    header = rows[0].split(",")
    days = [[int(v) if v.isdigit() else v for v in row.split(",")] for row in rows[-70:]]
    body = {"dataframe_split": {"columns": header, "data": days}, "params": {"days": 3}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    shown = json.dumps(body | {"dataframe_split": {"columns": header, "data": [*days[:2], "...", days[-1]]}})
    screen = (
        f"$ curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d @request.json\n"
        f"# request.json ({len(days)} days): {shown}\n\n{json.dumps(answer, indent=1)}\n"
    )
    page = scratch / "request.html"
    page.write_text(
        "<html><body style='background:#1e1e1e;color:#ddd;margin:12px'>"
        f"<pre style='font:13px monospace;white-space:pre-wrap'>{html.escape(screen)}</pre></body></html>"
    )
    return page.as_uri()


if __name__ == "__main__":
    main()
