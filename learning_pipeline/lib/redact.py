"""Credentials never leave through what the pipeline shows: URIs in answers, messages and logs are redacted.

`redact_uri` is the one rule: the password of a URI's user info becomes `***` (the user name stays, so people
can still tell which account is configured), and so does the value of every query parameter whose name
suggests a secret (password, token, secret, key, signature, credential, auth, ...).
`redact_text` applies it to every URI inside free text (error messages, tracebacks) and also hides libpq
`password=...` keywords. `install_log_redaction` makes every log record of the process pass through it.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

MASK = "***"
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|key|sig|credential|auth|session|private|access[-_]?id", re.IGNORECASE
)
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_USERINFO = re.compile(r"(//[^/@:\s]*):[^/@\s]*@")
_KEYWORD = re.compile(r"\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE)


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(_SECRET_PARAM.search(name) for name, _ in pairs):
        return query
    return "&".join(
        f"{quote(name, safe='')}={MASK if _SECRET_PARAM.search(name) else quote(value, safe='/:,-.')}"
        for name, value in pairs
    )


def redact_uri(uri: str | None) -> str | None:
    """`uri` with its password and secret query parameters replaced by `***`; anything else unchanged
    (a file path, `models:/name/1`, a URI without credentials)."""
    if not uri or "://" not in uri and "?" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        out = uri
        if "@" in parts.netloc:
            userinfo, _, host = parts.netloc.rpartition("@")
            if ":" in userinfo:
                out = out.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:{MASK}@{host}", 1)
        query = _redact_query(parts.query)
        if query != parts.query:
            out = out.replace("?" + parts.query, "?" + query, 1)
        return out
    except ValueError:  # not parseable as a URI: still never show user:password@
        return _USERINFO.sub(rf"\1:{MASK}@", uri)


def redact_text(text: Any) -> Any:
    """Every URI inside `text` through `redact_uri`, and `password=...` keywords masked; non-strings as is."""
    if not isinstance(text, str) or not text:
        return text
    text = _URI.sub(lambda m: redact_uri(m.group(0)), text)
    return _KEYWORD.sub(rf"\1\2{MASK}", text)


def redact_values(value: Any) -> Any:
    """`redact_text` over every string in a JSON-like structure (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a log record in place: its message arguments (or, failing that, its message), its traceback
    text and its stack text."""
    if isinstance(record.args, tuple) and record.args:
        args = []
        for arg in record.args:
            if isinstance(arg, str):
                arg = redact_text(arg)
            elif not isinstance(arg, (int, float)) and arg is not None:
                shown = str(arg)
                if redact_text(shown) != shown:
                    arg = redact_text(shown)  # e.g. an exception whose text names a URI with its password
            args.append(arg)
        record.args = tuple(args)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
    elif record.args:  # mapping-style arguments: redact the finished message
        message = record.getMessage()
        record.msg, record.args = redact_text(message), ()
    elif isinstance(record.msg, str):
        record.msg = redact_text(record.msg)
    else:
        shown = str(record.msg)
        if redact_text(shown) != shown:
            record.msg = redact_text(shown)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


def install_log_redaction() -> None:
    """Every log record created in this process from now on is redacted (whatever its logger or handler,
    including handlers that libraries configure later). Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "redacts", False):
        return

    def factory(*args, **kwargs):
        return redact_record(current(*args, **kwargs))

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
