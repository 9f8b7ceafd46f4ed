"""What guards the Learning API: the write token, the request body limit, and the check that every
state-changing route asks for the token.

- `require_token` is the one dependency of every state-changing endpoint: the `X-API-Token` header must equal
  `$LEARNING_PIPELINE_API_TOKEN` (constant-time comparison). Without a token configured, writes are disabled
  (403); a missing or wrong header gets 401. Reads stay open.
- `BodySizeLimit` (ASGI middleware) refuses a request body over the limit with 413 before any of it is parsed:
  a declared Content-Length over the limit is refused without reading the body, and a streamed (chunked) body
  is counted as it arrives and refused as soon as it passes the limit. The connection is then closed.
- `check_writes_need_token` fails app creation when a POST/PUT/PATCH/DELETE route neither depends on
  `require_token` nor is marked read-only with `openapi_extra=READ_ONLY` (e.g. a prediction).
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException
from fastapi.routing import APIRoute

TOKEN_ENV = "LEARNING_PIPELINE_API_TOKEN"
TOKEN_HEADER = "X-API-Token"
MAX_BODY_ENV = "LEARNING_PIPELINE_API_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
READ_ONLY = {"x-read-only": True}  # openapi_extra of a POST that changes nothing
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def token_state(configured: str | None, given: str | None) -> str:
    """'disabled' (no token configured), 'missing', 'invalid' or 'ok'."""
    if not configured:
        return "disabled"
    if not given:
        return "missing"
    return "ok" if hmac.compare_digest(configured.encode(), given.encode()) else "invalid"


def writes_enabled() -> bool:
    return bool(os.environ.get(TOKEN_ENV))


def require_token(
    x_api_token: Annotated[
        str | None, Header(description=f"must equal ${TOKEN_ENV} on the server (state-changing endpoints)")
    ] = None,
) -> None:
    """The token check of every state-changing endpoint."""
    state = token_state(os.environ.get(TOKEN_ENV), x_api_token)
    if state == "disabled":
        raise HTTPException(
            403,
            f"state-changing endpoints (approvals, acknowledgements) are disabled: set {TOKEN_ENV} "
            "on the server to enable them",
        )
    if state != "ok":
        raise HTTPException(401, f"{TOKEN_HEADER} header {state}")


def _depends_on(dependant, call) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def check_writes_need_token(app: FastAPI) -> None:
    """Raise if a state-changing route is reachable without `require_token` (see module doc)."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not (route.methods & WRITE_METHODS):
            continue
        if (route.openapi_extra or {}).get("x-read-only"):
            continue
        if not _depends_on(route.dependant, require_token):
            raise RuntimeError(
                f"{sorted(route.methods)} {route.path} changes state but does not depend on require_token "
                "(add dependencies=[Depends(require_token)], or openapi_extra=READ_ONLY if it changes nothing)"
            )


def max_body_bytes(value: int | None = None) -> int:
    """The body limit: `value`, else `$LEARNING_PIPELINE_API_MAX_BODY_BYTES`, else 1 MiB."""
    if value is None:
        raw = os.environ.get(MAX_BODY_ENV)
        if not raw:
            return DEFAULT_MAX_BODY_BYTES
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{MAX_BODY_ENV} must be a whole number of bytes, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"the request body limit must be at least 1 byte, got {value}")
    return value


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes` (see module doc)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _refuse(self, send, status: int = 413, detail: str | None = None) -> None:
        detail = detail or f"request body larger than the limit of {self.max_bytes} bytes"
        body = json.dumps({"detail": detail, "message": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),  # the rest of the body is never read
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await self._refuse(send, 400, "invalid Content-Length header")
                if declared > self.max_bytes:
                    return await self._refuse(send)
        seen = 0
        over = False
        started = False

        async def counted_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if over:
                return  # whatever the app answers to the cut-off body, the client gets the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send)
