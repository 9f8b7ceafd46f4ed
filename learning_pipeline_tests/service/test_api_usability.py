"""What a person meets first in the Learning API, over real HTTP: an index at /, /docs that works without
internet, 404 for a version that does not exist, 422 for an alert type that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from learning_pipeline_tests._servers import free_port, wait_for_http

TOKEN = "usability-token"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_usability")
    (root / "data").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEARNING_PIPELINE_"))}
    env |= {"LEARNING_PIPELINE_API_TOKEN": TOKEN, "LEARNING_PIPELINE_MLFLOW_UI_URL": "http://127.0.0.1:5999"}
    command = [sys.executable, "-m", "learning_pipeline.cli", "serve", "--data-dir", str(root / "data")]
    log = root / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/learning/alerts", proc, describe=lambda: log.read_text()[-3000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def get(url: str, body: dict | None = None) -> tuple[int, bytes, str]:
    headers = {"X-API-Token": TOKEN, "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")


def test_index_links_docs_status_and_both_uis(base):
    status, page, kind = get(base + "/")
    assert status == 200 and kind.startswith("text/html")
    text = page.decode()
    for link in ("/docs", "/api/learning/status", "http://127.0.0.1:3000", "http://127.0.0.1:5999"):
        assert f'href="{link}"' in text


def test_docs_load_their_assets_from_the_server_not_a_cdn(base):
    status, page, _ = get(base + "/docs")
    assert status == 200
    html = page.decode()
    assert "cdn." not in html and "https://" not in html
    scripts = [part.split('"')[0] for part in html.split('src="')[1:]]
    styles = [part.split('"')[0] for part in html.split('href="')[1:] if ".css" in part.split('"')[0]]
    assert any(s.endswith("swagger-ui-bundle.js") for s in scripts) and styles
    for asset in scripts + styles:
        status, content, _ = get(base + asset)
        assert status == 200 and len(content) > 10_000, asset


def test_unknown_alert_type_is_refused_naming_the_types(base):
    status, body, _ = get(base + "/api/learning/alerts?alert_type=FOO")
    assert status == 422
    assert "PERFORMANCE_DEGRADATION" in json.loads(body)["message"]
    assert get(base + "/api/learning/alerts?alert_type=ERROR")[0] == 200


def test_approving_a_version_that_does_not_exist_is_404(base):
    status, body, _ = get(base + "/api/learning/graduation/99/approve", {"by": "alice", "reason": "ship it"})
    assert status == 404
    assert "no version 99" in json.loads(body)["detail"]
