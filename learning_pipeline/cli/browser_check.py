"""What a person sees after `make demo`, checked in a real browser: the Dagster webserver and the MLflow UI on
loopback, opened in headless Chromium (Playwright driving the system's /usr/bin/chromium), with screenshots of
the learning summary, an asset with its plot, the run list and the registered model. Any uncaught error in a
page fails the check.

    python -m learning_pipeline.cli.browser_check --data-dir data --dagster-home .dagster_home --out docs/screenshots

Needs the test extra (playwright) and Chromium (`apt-get install chromium`); never downloads a browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from learning_pipeline.cli.code_location_runs import WORKSPACE_FILE
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
SHOTS = ("learning_summary", "asset_plot", "runs", "registered_model")


@dataclass
class CheckResult:
    screenshots: dict[str, Path] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with status {process.returncode} before serving {url}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@contextmanager
def served(
    command: list[str], env: dict[str, str], ready_url: str, log: Path, timeout: float
) -> Iterator[None]:
    """A server process for the block's duration, its output in `log`; stopped (SIGTERM, then SIGKILL) after."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_http(ready_url, timeout, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _bin(name: str) -> str:
    """A console script of this environment (beside the running interpreter), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def shrink(path: Path) -> Path:
    """The PNG in 256 colours (a UI screenshot keeps its look at a third of the size)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)
    return path


def take_screenshots(dagster_url: str, mlflow_url: str, out: Path) -> CheckResult:
    from playwright.sync_api import sync_playwright

    result = CheckResult()
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.on("pageerror", lambda error: result.page_errors.append(f"{page.url}: {error}"))

        def shot(name: str, url: str, ready_text: str, markdown: bool = False) -> None:
            page.goto(url)
            page.get_by_text(ready_text).first.wait_for(timeout=60_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community dialog
            if skip.count():
                skip.first.click()
            if markdown:  # the first markdown metadata of the latest event: the summary, the plot
                page.get_by_text("[Show Markdown]").first.click()
                page.get_by_role("dialog").wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let charts and images settle
            path = out / f"{name}.png"
            page.screenshot(path=str(path))
            result.screenshots[name] = shrink(path)

        events = "?view=events"
        shot("learning_summary", f"{dagster_url}/assets/learning_summary{events}", "Show Markdown", True)
        shot("asset_plot", f"{dagster_url}/assets/agent_posteriors{events}", "Show Markdown", True)
        shot("runs", f"{dagster_url}/runs", "learning_cycle_job")
        shot("registered_model", f"{mlflow_url}/#/models/agent-router", "Version 1")
        browser.close()
    return result


def run_check(data_dir: str, dagster_home: str, out: str, timeout: float = 300.0) -> CheckResult:
    data, home, shots = Path(data_dir).resolve(), Path(dagster_home).resolve(), Path(out).resolve()
    env = {**os.environ, "DAGSTER_HOME": str(home), DATA_DIR_ENV: str(data)}
    env.pop("MLFLOW_TRACKING_URI", None)
    dagster_port, mlflow_port = free_port(), free_port()
    dagster_url, mlflow_url = f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}"
    env["LEARNING_PIPELINE_MLFLOW_UI_URL"] = mlflow_url  # the links in asset metadata point at this UI
    logs = home / "browser_check"
    logs.mkdir(parents=True, exist_ok=True)
    webserver = [
        _bin("dagster-webserver"),
        "-h",
        "127.0.0.1",
        "-p",
        str(dagster_port),
        "-w",
        str(WORKSPACE_FILE),
    ]
    mlflow_ui = [
        _bin("mlflow"),
        "ui",
        "--backend-store-uri",
        f"sqlite:///{data / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(mlflow_port),
    ]
    with (
        served(webserver, env, f"{dagster_url}/server_info", logs / "webserver.log", timeout),
        served(mlflow_ui, env, f"{mlflow_url}/health", logs / "mlflow.log", timeout),
    ):
        return take_screenshots(dagster_url, mlflow_url, shots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dagster-home", default=".dagster_home")
    parser.add_argument("--out", default="docs/screenshots", help="where the PNG files go")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a server may take to answer")
    args = parser.parse_args(argv)
    result = run_check(args.data_dir, args.dagster_home, args.out, args.timeout)
    for name, path in result.screenshots.items():
        print(f"{name}: {path}")
    for error in result.page_errors:
        print(f"page error: {error}", file=sys.stderr)
    return 1 if result.page_errors or set(result.screenshots) != set(SHOTS) else 0


if __name__ == "__main__":
    sys.exit(main())
