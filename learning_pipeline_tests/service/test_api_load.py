"""2,000 mixed requests at 50 concurrent against a real `learning-pipeline serve` on loopback, while another
process raises alerts (as the Dagster sensors do): no 5xx, every alert acknowledged exactly once, nothing lost
(issue 11, item 12). Once with the local SQLite state store, once with the local PostgreSQL server."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import STATE_URL_ENV, close_state_stores
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._postgres_state import postgres_state_url
from learning_pipeline_tests.service._client import PREDICT, TOKEN, Client, call, serve_process

pytestmark = pytest.mark.slow

REQUESTS, CONCURRENCY, ALERTS = 2000, 50, 120
BODY_LIMIT = 4096
MIX = {
    "list": 35,
    "list_all": 10,
    "ack": 20,
    "ack_unknown": 4,
    "ack_no_token": 3,
    "predict": 15,
    "too_large": 3,
    "metrics": 5,
    "performance": 5,
}
EXPECTED = {
    "list": {200},
    "list_all": {200},
    "ack": {200, 409},
    "ack_unknown": {404},
    "ack_no_token": {401},
    "predict": {200},
    "too_large": {413},
    "metrics": {200},
    "performance": {200},
}
PG_PASSWORD = "pg-pa55-unused"
AGENTS = ["coder_agent", "research_agent", "review_agent"]  # no model in the data directory: a cold start


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.delenv(STATE_URL_ENV, raising=False)
        yield None
        close_state_stores()
        return
    with postgres_state_url(password=PG_PASSWORD) as url:
        monkeypatch.setenv(STATE_URL_ENV, url)
        yield url


def test_2000_requests_at_50_concurrent_get_no_server_error(tmp_path, state_url):
    data = tmp_path / "data"
    paths = LakePaths.at(data)
    store = AlertStore(paths)
    ids = [
        store.raise_alert(Alert("ERROR", "WARNING", f"load {i}", "m", dedup_key=f"load-{i}"))["id"]
        for i in range(ALERTS)
    ]
    env = {STATE_URL_ENV: state_url} if state_url else {}
    args = ["--max-body-bytes", str(BODY_LIMIT)]
    with serve_process(data, tmp_path / "serve.log", env=env, args=args) as served:
        status, body = call(served.base, "/api/learning/status")
        assert status == 200
        if state_url:  # the API's alerts live in PostgreSQL, and /status does not show its password
            assert body["state_store"].startswith("postgresql://postgres:***@127.0.0.1:5432/test")
            assert PG_PASSWORD not in json.dumps(body)
        else:
            assert body["state_store"].endswith("autonomy/state.sqlite")

        client = Client(served.base)
        rng = random.Random(11)
        plan = rng.choices(list(MIX), weights=list(MIX.values()), k=REQUESTS)
        targets = [rng.choice(ids) for _ in plan]
        write = {"X-API-Token": TOKEN}

        def one(n: int) -> tuple[str, str | None, int]:
            kind, target = plan[n], targets[n]
            if kind == "list":
                return kind, None, client("/api/learning/alerts")[0]
            if kind == "list_all":
                return kind, None, client("/api/learning/alerts?include_acknowledged=true")[0]
            if kind == "ack":
                return kind, target, client(f"/api/learning/alerts/{target}/ack", {"by": f"u{n}"}, write)[0]
            if kind == "ack_unknown":
                return kind, None, client("/api/learning/alerts/no-such-alert/ack", {"by": "u"}, write)[0]
            if kind == "ack_no_token":
                return kind, target, client(f"/api/learning/alerts/{target}/ack", {"by": "u"})[0]
            if kind == "predict":
                return (
                    kind,
                    None,
                    client(
                        PREDICT,
                        {"task_type": "analysis", "context": {"c": "high"}, "candidate_agents": AGENTS},
                    )[0],
                )
            if kind == "too_large":
                body = {"task_type": "analysis", "context": {"pad": "x" * 200}, "candidate_agents": AGENTS}
                raw = json.dumps(body).encode()[:-1] + b" " * BODY_LIMIT + b"}"
                return kind, None, client(PREDICT, raw)[0]
            if kind == "metrics":
                return kind, None, client("/api/learning/metrics")[0]
            return kind, None, client("/api/learning/agents/performance")[0]

        # meanwhile this process raises alerts in the same store, as the Dagster sensors would
        stop = threading.Event()
        raised: list[str] = []

        def sensor() -> None:
            while not stop.is_set():
                row = store.raise_alert(Alert("MILESTONE", "INFO", "m", "m", dedup_key=f"side-{len(raised)}"))
                raised.append(row["id"])
                time.sleep(0.1)

        side = threading.Thread(target=sensor)
        side.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                results = list(pool.map(one, range(REQUESTS)))
        finally:
            stop.set()
            side.join(30)
        elapsed = time.monotonic() - started

        counts = collections.Counter((kind, status) for kind, _, status in results)
        server_errors = sum(n for (_, status), n in counts.items() if status >= 500)
        print(f"{REQUESTS} requests at {CONCURRENCY} concurrent in {elapsed:.1f} s: {dict(counts)}")
        assert server_errors == 0, (dict(counts), served.output()[-4000:])
        unexpected = {k: n for k, n in counts.items() if k[1] not in EXPECTED[k[0]]}
        assert not unexpected, unexpected
        assert counts[("too_large", 413)] > 0 and counts[("ack", 200)] > 0 and counts[("ack", 409)] > 0

        # every alert acknowledged at most once over HTTP, and exactly the ones that answered 200
        acked = collections.Counter(
            target for kind, target, status in results if kind == "ack" and status == 200
        )
        assert max(acked.values()) == 1
        conflicts = {target for kind, target, status in results if kind == "ack" and status == 409}
        assert conflicts <= set(acked)
        final = AlertStore(paths).list()
        assert set(final.loc[final["acknowledged"].astype(bool), "id"]) == set(acked)
        assert len(final) == ALERTS + len(raised) and len(raised) > 0
        status, listed = call(served.base, "/api/learning/alerts?include_acknowledged=true")
        assert status == 200 and len(listed) == len(final)
    with lake_connection(paths) as con:  # the lake snapshot ends up with every row
        assert con.execute("SELECT count(*) FROM agent_alerts").fetchone()[0] == len(final)
