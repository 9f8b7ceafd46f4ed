"""A fresh PostgreSQL schema in the local server (127.0.0.1:5432, database `test`, trust auth) to hold the
pipeline's state store for one test, dropped afterwards; `backend` runs a test module on both stores;
`run_in_processes` runs concurrent writers."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@contextmanager
def postgres_state_url(password: str | None = None) -> Iterator[str]:
    """Yields a `LEARNING_PIPELINE_STATE_URL` whose tables land in a new schema. The server trusts loopback,
    so `password` is only carried in the URL (to check that it is never shown)."""
    from learning_pipeline.lib.storage.state_store import close_state_stores

    schema = f"lp_state_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        user = "postgres" + (f":{password}" if password else "")
        yield f"postgresql://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        close_state_stores()
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.fixture(autouse=True, params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, monkeypatch):
    """The state store of the test (and of the processes it spawns, through the environment): SQLite under the
    data directory, or a fresh PostgreSQL schema. Import it into a test module to run each test on both."""
    from learning_pipeline.lib.storage.state_store import STATE_URL_ENV, close_state_stores

    if request.param == "sqlite":
        monkeypatch.delenv(STATE_URL_ENV, raising=False)
        yield request.param
        close_state_stores()
        return
    with postgres_state_url() as url:
        monkeypatch.setenv(STATE_URL_ENV, url)
        yield request.param


def run_in_processes(target, args: list[tuple], timeout: float = 240) -> list:
    """`target(*a, queue)` in one spawned process per tuple `a`; each puts one list on the queue. Returns the
    lists' items and checks that every process exited cleanly."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args]
    for p in procs:
        p.start()
    items = [item for _ in procs for item in queue.get(timeout=timeout)]
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    return items
