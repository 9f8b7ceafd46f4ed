"""A fresh PostgreSQL schema in the local server (127.0.0.1:5432, database `test`, trust auth) to hold the
pipeline's state store for one test, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

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
